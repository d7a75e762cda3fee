"""The ``caddy`` target type: certificate files that a running Caddy 2 serves, reloaded two ways.

``mode: file`` writes the full chain and the key through the file primitive, runs ``caddy validate``
(which loads the certificate files, so a bad pair fails before the reload) and then
``caddy reload --force``. ``--force`` matters: ``caddy reload`` posts the adapted config to the admin
API, and Caddy skips a reload whose config is unchanged, which it always is when only the files changed.

``mode: admin_api`` writes the same files, then talks to Caddy's admin endpoint directly, without a
restart: its config test reads the running config (``GET /config/``); its reload makes sure that
``apps.tls.certificates.load_files`` names the two files (adding an entry tagged ``certctl`` when the
config does not mention them yet) and posts the result to ``POST /load`` with ``Cache-Control:
must-revalidate``, which makes Caddy 2.6 provision the config again even when it is unchanged, and so
re-read the files. Caddy applies a load atomically: when the new config fails to provision it keeps the
old one and answers with an error. On rollback the previous files are restored and the config read
before the deployment is loaded again the same way (unless no load took effect: then Caddy still runs
what it ran). The admin endpoint must be on loopback (``http://127.0.0.1:2019``, ``http://localhost:…``,
``http://[::1]:…``) or a unix socket written as Caddy writes it (``unix//run/caddy/admin.sock``); over a
unix socket Caddy accepts only an empty ``Host`` header, which is what is sent.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx2
from pydantic import AfterValidator, Field, model_validator

from certctl.agent.deploy.base import Deployer, DeployResult, Material, Step, StepFailed
from certctl.agent.deploy.commands import command_step
from certctl.agent.deploy.primitive import FileSpec
from certctl.agent.targets import TargetType
from certctl.agent.targets.common import AbsolutePath, Argv, FileMode, Snapshots, TargetOptions, TlsVerify
from certctl.agent.targets.filebased import FileTarget, parent_directories, require_distinct, text_file

DEFAULT_CADDYFILE = "/etc/caddy/Caddyfile"
LOAD_FILES_TAG = "certctl"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_UNIX_PREFIX = "unix/"
_ERROR_LIMIT = 300
ADMIN_TIMEOUT_SECONDS = 30.0
"""Per admin request: a load provisions the whole config, which can take a moment on a large one."""


def _admin_url(value: str) -> str:
    if value.startswith(_UNIX_PREFIX):
        socket_path = value.removeprefix(_UNIX_PREFIX)
        if not socket_path.startswith("/") or "\x00" in socket_path or ".." in socket_path.split("/"):
            raise ValueError("a unix socket admin address is written unix//absolute/path.sock")
        return value
    parts = urlsplit(value)
    if parts.scheme != "http" or parts.hostname not in _LOOPBACK_HOSTS:
        raise ValueError("the admin endpoint must be http:// on loopback (127.0.0.1, localhost, ::1)")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ValueError("the admin endpoint is a bare address such as http://127.0.0.1:2019")
    _ = parts.port  # raises ValueError for a port out of range
    return value.rstrip("/")


AdminUrl = Annotated[str, AfterValidator(_admin_url)]


class CaddyOptions(TargetOptions):
    """Where the files go and how the running Caddy picks them up."""

    mode: Literal["file", "admin_api"] = "file"
    certificate_path: AbsolutePath
    """Full chain: the leaf followed by the issuing CAs."""
    key_path: AbsolutePath
    certificate_file_mode: FileMode = FileMode()
    key_file_mode: FileMode = FileMode()
    validate_command: Argv | None = Field(
        default_factory=lambda: ["caddy", "validate", "--config", DEFAULT_CADDYFILE]
    )
    """File mode: the config test run after the switch (loads the new files); null to skip."""
    reload_command: Argv = Field(
        default_factory=lambda: ["caddy", "reload", "--config", DEFAULT_CADDYFILE, "--force"]
    )
    """File mode: keep ``--force``, see the module docstring."""
    admin_url: AdminUrl = "http://127.0.0.1:2019"
    """Admin API mode: the loopback address or unix socket of Caddy's admin endpoint."""
    verify: TlsVerify | None = None
    snapshots: Snapshots = Snapshots()

    @model_validator(mode="after")
    def _consistent(self) -> CaddyOptions:
        """Refuse a setting the chosen mode would ignore (defaults are fine: they round-trip)."""
        require_distinct(certificate_path=self.certificate_path, key_path=self.key_path)
        defaults = CaddyOptions.model_fields
        if self.mode == "admin_api":
            ignored = [
                name
                for name in ("validate_command", "reload_command")
                if getattr(self, name) != defaults[name].get_default(call_default_factory=True)
            ]
            if ignored:
                raise ValueError(f"{', '.join(ignored)}: only used in file mode")
        elif self.admin_url != defaults["admin_url"].default:
            raise ValueError("admin_url: only used in admin_api mode (file mode reloads with reload_command)")
        return self


@dataclass(frozen=True)
class AdminEndpoint:
    """How to reach Caddy's admin API: a loopback base URL or a unix socket path."""

    url: str

    @property
    def socket_path(self) -> str | None:
        return self.url.removeprefix(_UNIX_PREFIX) if self.url.startswith(_UNIX_PREFIX) else None

    def client(self, *, timeout: float) -> httpx2.AsyncClient:
        socket_path = self.socket_path
        if socket_path is None:
            return httpx2.AsyncClient(base_url=self.url, timeout=timeout, trust_env=False)
        return httpx2.AsyncClient(
            base_url="http://localhost",
            transport=httpx2.AsyncHTTPTransport(uds=socket_path),
            headers={"Host": ""},
            timeout=timeout,
            trust_env=False,
        )


class AdminRefused(StepFailed):
    """Caddy answered with an error: for ``POST /load`` it kept running the config it had."""


async def read_config(http: httpx2.AsyncClient) -> Any:
    """The running config as JSON (``null`` when Caddy runs without one)."""
    response = await _send(http, "GET", "/config/")
    try:
        return response.json()
    except ValueError:
        raise StepFailed("caddy admin API: GET /config/ did not answer JSON") from None


async def load_config(http: httpx2.AsyncClient, config: Any) -> None:
    """Replace the running config, forcing a reload even when it is unchanged (re-reads the files)."""
    body = json.dumps(config).encode()
    headers = {"Content-Type": "application/json", "Cache-Control": "must-revalidate"}
    await _send(http, "POST", "/load", content=body, headers=headers)


async def _send(
    http: httpx2.AsyncClient,
    method: str,
    path: str,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    try:
        response = await http.request(method, path, content=content, headers=headers)
    except httpx2.HTTPError as exc:
        raise StepFailed(f"caddy admin API unreachable: {type(exc).__name__}: {exc}") from None
    if not response.is_success:
        raise AdminRefused(
            f"caddy admin API: {method} {path} answered {response.status_code}: {_error(response)}"
        )
    return response


def _error(response: httpx2.Response) -> str:
    try:
        message = str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        message = response.text
    message = " ".join(message.split()) or "(no message)"
    return message if len(message) <= _ERROR_LIMIT else message[: _ERROR_LIMIT - 3] + "..."


def with_certificate_files(config: Any, *, certificate_path: str, key_path: str) -> dict[str, Any]:
    """A copy of ``config`` whose ``apps.tls.certificates.load_files`` names this certificate and key."""
    result: dict[str, Any] = copy.deepcopy(config) if isinstance(config, dict) else {}
    certificates = result.setdefault("apps", {}).setdefault("tls", {}).setdefault("certificates", {})
    load_files: list[dict[str, Any]] = certificates.setdefault("load_files", [])
    for entry in load_files:
        if entry.get("certificate") == certificate_path and entry.get("key") == key_path:
            return result
    load_files.append({"certificate": certificate_path, "key": key_path, "tags": [LOAD_FILES_TAG]})
    return result


@dataclass
class AdminSession:
    """One deployment's exchange with Caddy's admin API, as two steps of the primitive.

    ``read`` (the config test, after the switch) remembers the running config. ``load`` (the reload)
    loads that config with the certificate files named, forcing Caddy to read them. When the primitive
    calls ``load`` again to roll back, after putting the previous files back, it loads the remembered
    config, so Caddy re-reads the previous files. If no load reached Caddy, or Caddy refused it, Caddy
    still runs the previous config with the previous certificates in memory, and nothing is sent.
    A session is used for one deployment only: a fresh one is made for each.
    """

    endpoint: AdminEndpoint
    certificate_path: str
    key_path: str
    state: Literal["new", "read", "maybe loaded", "untouched"] = "new"
    previous: Any = field(default=None, repr=False)
    """The running config as read; it may hold credentials (DNS provider tokens), so it is not shown."""

    async def read(self) -> None:
        async with self.endpoint.client(timeout=ADMIN_TIMEOUT_SECONDS) as http:
            self.previous = await read_config(http)
        self.state = "read"

    async def load(self) -> None:
        if self.state == "read":
            desired = with_certificate_files(
                self.previous, certificate_path=self.certificate_path, key_path=self.key_path
            )
            await self._load(desired)
        elif self.state == "maybe loaded":
            await self._load(self.previous)

    async def _load(self, config: Any) -> None:
        self.state = "maybe loaded"
        try:
            async with self.endpoint.client(timeout=ADMIN_TIMEOUT_SECONDS) as http:
                await load_config(http, config)
        except AdminRefused:
            self.state = "untouched"  # Caddy keeps the config it runs when it refuses a load
            raise


@dataclass(frozen=True)
class AdminStep:
    """A step of an :class:`AdminSession`, named in the deployment's trail."""

    description: str
    action: Callable[[], Awaitable[None]]

    async def __call__(self) -> None:
        await self.action()


def _files(options: CaddyOptions, material: Material) -> list[FileSpec]:
    return [
        text_file(options.certificate_path, material.fullchain_pem, options.certificate_file_mode),
        text_file(options.key_path, material.private_key_pem, options.key_file_mode, secret=True),
    ]


def _file_target(options: CaddyOptions, state_dir: Path, *, check: Step | None, reload: Step) -> FileTarget:
    return FileTarget(
        type_name="caddy",
        files=lambda material: _files(options, material),
        directories=parent_directories(options.certificate_path, options.key_path),
        state_dir=state_dir,
        snapshots=options.snapshots,
        check_step=check,
        reload_step=reload,
        verify=options.verify,
    )


@dataclass(frozen=True)
class CaddyAdminTarget:
    """Admin API mode: each deployment gets its own :class:`AdminSession`."""

    options: CaddyOptions
    state_dir: Path

    def _target(self) -> FileTarget:
        session = AdminSession(
            AdminEndpoint(self.options.admin_url), self.options.certificate_path, self.options.key_path
        )
        read = AdminStep("caddy admin API: GET /config/", session.read)
        load = AdminStep("caddy admin API: POST /load (forced)", session.load)
        return _file_target(self.options, self.state_dir, check=read, reload=load)

    async def deploy(self, material: Material, *, dry_run: bool = False) -> DeployResult:
        return await self._target().deploy(material, dry_run=dry_run)

    async def check(self) -> str:
        return await self._target().check()


def build(options: CaddyOptions, state_dir: Path) -> Deployer:
    if options.mode == "admin_api":
        return CaddyAdminTarget(options, state_dir)
    check = command_step(options.validate_command) if options.validate_command is not None else None
    return _file_target(options, state_dir, check=check, reload=command_step(options.reload_command))


CADDY = TargetType(
    name="caddy",
    description="Caddy 2: certificate files reloaded with `caddy reload --force` or through the admin API",
    options_model=CaddyOptions,
    build=build,
)
