"""The ``traefik`` and ``envoy`` target types: proxies that watch files and reload by themselves.

Neither needs a command: both notice a file moved into place. Every file is written to a temporary file
in its directory and renamed over the old one (see :mod:`certctl.agent.deploy.primitive`), so a watcher
never reads half a file, and the files are switched in the order listed here, the documents that name
the certificate and key last, after the files they name.

Traefik (file provider): ``certificate_path``, ``key_path`` and a dynamic configuration file with one
``tls.certificates`` entry naming them. Traefik reads the certificate files when it reloads that
configuration, and it reloads when the watched file changes; the file therefore names the leaf's SHA-256
in a comment, so every new certificate changes it. The format follows the extension: ``.toml``, or
``.yaml``/``.yml`` written as JSON, which is valid YAML (and needs no YAML library). The file is this
target's alone; point Traefik's ``providers.file.directory`` at its directory to combine it with others.

Envoy: ``certificate_path``, ``key_path`` and, with ``sds_path``, a file-based SDS resource file
(``resources`` holding one ``envoy.extensions.transport_sockets.tls.v3.Secret`` named ``resource_name``
whose ``tls_certificate`` names the two files), the file a ``path_config_source`` points at. Envoy
watches that file for moves, and the directories of the files it names (or ``watched_directory``) for
moves of new certificate files. Written as JSON for ``.json``, ``.yaml`` and ``.yml`` alike. Listeners
configured with static certificates reload only on a restart: ``reload_command`` can run one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from certctl.agent.deploy.base import Deployer, Material
from certctl.agent.deploy.commands import command_step
from certctl.agent.deploy.primitive import FileSpec
from certctl.agent.targets import TargetType
from certctl.agent.targets.common import AbsolutePath, Argv, FileMode, Snapshots, TargetOptions, TlsVerify
from certctl.agent.targets.filebased import FileTarget, parent_directories, require_distinct, text_file

ENVOY_TLS_RESOURCE_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
HEADER = "# Managed by certctl; changes here are overwritten at the next deployment."


def _extension(*allowed: str) -> AfterValidator:
    def check(value: str) -> str:
        if Path(value).suffix.lower() not in allowed:
            raise ValueError(f"{value!r} must end in {', '.join(allowed)} (the format follows the extension)")
        return value

    return AfterValidator(check)


TraefikConfigPath = Annotated[AbsolutePath, _extension(".yaml", ".yml", ".toml")]
SdsPath = Annotated[AbsolutePath, _extension(".json", ".yaml", ".yml")]


class TraefikOptions(TargetOptions):
    certificate_path: AbsolutePath
    """Full chain: the leaf followed by the issuing CAs."""
    key_path: AbsolutePath
    dynamic_config_path: TraefikConfigPath
    """The dynamic configuration file Traefik's file provider watches (``.yaml``, ``.yml``, ``.toml``)."""
    stores: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")], ...] = ()
    """TLS stores the certificate belongs to (``stores`` of the entry); empty: left out."""
    certificate_file_mode: FileMode = FileMode()
    key_file_mode: FileMode = FileMode()
    dynamic_config_file_mode: FileMode = FileMode()
    verify: TlsVerify | None = None
    snapshots: Snapshots = Snapshots()

    @model_validator(mode="after")
    def _distinct_paths(self) -> TraefikOptions:
        require_distinct(
            certificate_path=self.certificate_path,
            key_path=self.key_path,
            dynamic_config_path=self.dynamic_config_path,
        )
        return self


class EnvoyOptions(TargetOptions):
    certificate_path: AbsolutePath
    """Full chain: the leaf followed by the issuing CAs."""
    key_path: AbsolutePath
    sds_path: SdsPath | None = None
    """The SDS resource file of a ``path_config_source`` (``.json``, ``.yaml``, ``.yml``); unset: none."""
    resource_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")] = "certctl"
    """The SDS secret's name: what the listener's ``sds_config`` asks for."""
    watched_directory: AbsolutePath | None = None
    """Written as the secret's ``watched_directory``: Envoy re-reads the pair on a move in it."""
    certificate_file_mode: FileMode = FileMode()
    key_file_mode: FileMode = FileMode()
    sds_file_mode: FileMode = FileMode()
    reload_command: Argv | None = None
    """For certificates configured statically, which Envoy reads only on a (hot) restart."""
    verify: TlsVerify | None = None
    snapshots: Snapshots = Snapshots()

    @model_validator(mode="after")
    def _consistent(self) -> EnvoyOptions:
        require_distinct(
            certificate_path=self.certificate_path, key_path=self.key_path, sds_path=self.sds_path
        )
        if self.watched_directory is not None and self.sds_path is None:
            raise ValueError("watched_directory is written into the SDS file: set sds_path too")
        return self


def traefik_document(options: TraefikOptions, fingerprint: str) -> str:
    """The dynamic configuration: one ``tls.certificates`` entry, in the format of the extension."""
    entry: dict[str, Any] = {"certFile": options.certificate_path, "keyFile": options.key_path}
    if options.stores:
        entry["stores"] = list(options.stores)
    header = f"{HEADER}\n# certificate sha256 {fingerprint}\n"
    if Path(options.dynamic_config_path).suffix.lower() != ".toml":
        return header + json.dumps({"tls": {"certificates": [entry]}}, indent=2) + "\n"
    lines = [header, "[[tls.certificates]]"]
    # A JSON string of a str is a valid TOML basic string (same escapes, \uXXXX included).
    lines += [f"{key} = {json.dumps(value)}" for key, value in entry.items()]
    return "\n".join(lines) + "\n"


def envoy_sds_document(options: EnvoyOptions) -> str:
    """The SDS ``DiscoveryResponse``-shaped file with one TLS certificate secret naming the files."""
    certificate: dict[str, Any] = {
        "certificate_chain": {"filename": options.certificate_path},
        "private_key": {"filename": options.key_path},
    }
    if options.watched_directory is not None:
        certificate["watched_directory"] = {"path": options.watched_directory}
    secret = {"@type": ENVOY_TLS_RESOURCE_TYPE, "name": options.resource_name, "tls_certificate": certificate}
    return json.dumps({"resources": [secret]}, indent=2) + "\n"


def traefik_files(options: TraefikOptions, material: Material) -> list[FileSpec]:
    return [
        text_file(options.certificate_path, material.fullchain_pem, options.certificate_file_mode),
        text_file(options.key_path, material.private_key_pem, options.key_file_mode, secret=True),
        text_file(
            options.dynamic_config_path,
            traefik_document(options, material.fingerprint_sha256),
            options.dynamic_config_file_mode,
        ),
    ]


def envoy_files(options: EnvoyOptions, material: Material) -> list[FileSpec]:
    files = [
        text_file(options.certificate_path, material.fullchain_pem, options.certificate_file_mode),
        text_file(options.key_path, material.private_key_pem, options.key_file_mode, secret=True),
    ]
    if options.sds_path is not None:
        files.append(text_file(options.sds_path, envoy_sds_document(options), options.sds_file_mode))
    return files


def build_traefik(options: TraefikOptions, state_dir: Path) -> Deployer:
    return FileTarget(
        type_name="traefik",
        files=lambda material: traefik_files(options, material),
        directories=parent_directories(
            options.certificate_path, options.key_path, options.dynamic_config_path
        ),
        state_dir=state_dir,
        snapshots=options.snapshots,
        verify=options.verify,
    )


def build_envoy(options: EnvoyOptions, state_dir: Path) -> Deployer:
    return FileTarget(
        type_name="envoy",
        files=lambda material: envoy_files(options, material),
        directories=parent_directories(options.certificate_path, options.key_path, options.sds_path),
        state_dir=state_dir,
        snapshots=options.snapshots,
        reload_step=command_step(options.reload_command) if options.reload_command else None,
        verify=options.verify,
    )


TRAEFIK = TargetType(
    name="traefik",
    description="Traefik file provider: certificate, key and a dynamic configuration naming them",
    options_model=TraefikOptions,
    build=build_traefik,
)

ENVOY = TargetType(
    name="envoy",
    description="Envoy: certificate and key files, optionally a file-based SDS secret naming them",
    options_model=EnvoyOptions,
    build=build_envoy,
)
