"""The ``traefik`` and ``envoy`` targets: the files their watchers read, replaced atomically.

Neither proxy can be installed here, so these tests hold the documents to their exact text, check that
every file is replaced by a rename (a new inode; a reader never sees a partial file), that the same
material again changes nothing, and that a failed verification puts the previous files back.
"""

from __future__ import annotations

import asyncio
import json
import threading
import tomllib
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from certctl.agent.deploy.base import DeployResult, Material, Outcome
from certctl.agent.targets import TargetConfigError, parse_options
from certctl.agent.targets.common import TlsVerify
from certctl.agent.targets.proxies import ENVOY, HEADER, TRAEFIK, EnvoyOptions, TraefikOptions
from support.material import TestCa as DeployCa  # aliased: pytest would try to collect Test*

T = TypeVar("T")
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DeployCa:
    return DeployCa(tmp_path_factory.mktemp("proxies-ca"))


def closed_port_verify() -> dict[str, Any]:
    """Nothing listens there: the verification fails at once."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return TlsVerify(port=port, attempts=1, delay_seconds=0).model_dump()


def traefik(directory: Path, config_name: str = "certctl.yaml", **overrides: Any) -> TraefikOptions:
    options: dict[str, Any] = {
        "certificate_path": str(directory / "site.crt"),
        "key_path": str(directory / "site.key"),
        "dynamic_config_path": str(directory / config_name),
    }
    return TraefikOptions.model_validate(options | overrides)


def envoy(directory: Path, sds_name: str | None = "sds.json", **overrides: Any) -> EnvoyOptions:
    options: dict[str, Any] = {
        "certificate_path": str(directory / "tls" / "cert.pem"),
        "key_path": str(directory / "tls" / "key.pem"),
        "sds_path": str(directory / sds_name) if sds_name else None,
    }
    return EnvoyOptions.model_validate(options | overrides)


def deploy_traefik(options: TraefikOptions, state_dir: Path, material: Material) -> DeployResult:
    return run(TRAEFIK.build(options, state_dir).deploy(material))


def deploy_envoy(options: EnvoyOptions, state_dir: Path, material: Material) -> DeployResult:
    return run(ENVOY.build(options, state_dir).deploy(material))


@contextmanager
def watching(paths: list[Path]) -> Iterator[list[bytes]]:
    """Read the files in a loop while the block runs, as a watcher would; yields every read seen."""
    seen: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for path in paths:
                try:
                    seen.append(path.read_bytes())
                except FileNotFoundError:
                    seen.append(b"<missing>")

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def inodes(*paths: Path) -> list[int]:
    return [path.stat().st_ino for path in paths]


def test_traefik_yaml_document_is_exact(ca: DeployCa, tmp_path: Path) -> None:
    material = ca.material("proxy.example.test")
    options = traefik(tmp_path, stores=["default"])

    result = deploy_traefik(options, tmp_path / "state", material)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert (tmp_path / "certctl.yaml").read_text() == (
        f"{HEADER}\n"
        f"# certificate sha256 {material.fingerprint_sha256}\n"
        "{\n"
        '  "tls": {\n'
        '    "certificates": [\n'
        "      {\n"
        f'        "certFile": "{tmp_path}/site.crt",\n'
        f'        "keyFile": "{tmp_path}/site.key",\n'
        '        "stores": [\n'
        '          "default"\n'
        "        ]\n"
        "      }\n"
        "    ]\n"
        "  }\n"
        "}\n"
    )
    assert (tmp_path / "site.crt").read_text() == material.fullchain_pem
    assert (tmp_path / "site.key").read_text() == material.private_key_pem
    assert (tmp_path / "site.key").stat().st_mode & 0o777 == 0o600
    assert result.steps[1:] == (
        f"wrote {tmp_path}/site.crt",
        f"wrote {tmp_path}/site.key",
        f"wrote {tmp_path}/certctl.yaml",
    )  # the document naming the files is switched last


def test_traefik_yaml_parses_as_yaml(ca: DeployCa, tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    options = traefik(tmp_path, config_name="dynamic.yml")
    assert deploy_traefik(options, tmp_path / "state", ca.material("a.test")).outcome is Outcome.SUCCEEDED

    document = yaml.safe_load((tmp_path / "dynamic.yml").read_text())

    assert document == {
        "tls": {"certificates": [{"certFile": f"{tmp_path}/site.crt", "keyFile": f"{tmp_path}/site.key"}]}
    }


def test_traefik_toml_document(ca: DeployCa, tmp_path: Path) -> None:
    material = ca.material("proxy.example.test")
    options = traefik(tmp_path, config_name="certctl.toml", stores=["default", "internal"])

    assert deploy_traefik(options, tmp_path / "state", material).outcome is Outcome.SUCCEEDED

    text = (tmp_path / "certctl.toml").read_text()
    assert text == (
        f"{HEADER}\n"
        f"# certificate sha256 {material.fingerprint_sha256}\n"
        "\n"
        "[[tls.certificates]]\n"
        f'certFile = "{tmp_path}/site.crt"\n'
        f'keyFile = "{tmp_path}/site.key"\n'
        'stores = ["default", "internal"]\n'
    )
    assert tomllib.loads(text) == {
        "tls": {
            "certificates": [
                {
                    "certFile": f"{tmp_path}/site.crt",
                    "keyFile": f"{tmp_path}/site.key",
                    "stores": ["default", "internal"],
                }
            ]
        }
    }


def test_traefik_renewal_replaces_every_file_by_rename(ca: DeployCa, tmp_path: Path) -> None:
    options = traefik(tmp_path)
    files = [tmp_path / "site.crt", tmp_path / "site.key", tmp_path / "certctl.yaml"]
    first, second = ca.material("proxy.example.test"), ca.material("proxy.example.test")
    assert deploy_traefik(options, tmp_path / "state", first).outcome is Outcome.SUCCEEDED
    old_contents = {path: path.read_bytes() for path in files}
    old_inodes = inodes(*files)

    with watching(files) as seen:
        result = deploy_traefik(options, tmp_path / "state", second)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    new_contents = {path: path.read_bytes() for path in files}
    assert all(old_contents[path] != new_contents[path] for path in files)
    assert all(before != after for before, after in zip(old_inodes, inodes(*files), strict=True))
    whole = set(old_contents.values()) | set(new_contents.values())
    assert seen and set(seen) <= whole  # every read saw a complete old or new file
    assert second.fingerprint_sha256 in (tmp_path / "certctl.yaml").read_text()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "certctl.yaml",
        "site.crt",
        "site.key",
        "state",
    ]


def test_traefik_same_material_is_unchanged(ca: DeployCa, tmp_path: Path) -> None:
    material = ca.material("proxy.example.test")
    options = traefik(tmp_path)
    files = [tmp_path / "site.crt", tmp_path / "site.key", tmp_path / "certctl.yaml"]
    assert deploy_traefik(options, tmp_path / "state", material).outcome is Outcome.SUCCEEDED
    before = inodes(*files)

    again = deploy_traefik(options, tmp_path / "state", material)

    assert again.outcome is Outcome.UNCHANGED
    assert inodes(*files) == before


def test_traefik_failed_verification_restores_the_previous_files(ca: DeployCa, tmp_path: Path) -> None:
    files = [tmp_path / "site.crt", tmp_path / "site.key", tmp_path / "certctl.yaml"]
    assert (
        deploy_traefik(traefik(tmp_path), tmp_path / "state", ca.material("a.test")).outcome
        is Outcome.SUCCEEDED
    )
    previous = [path.read_bytes() for path in files]

    result = deploy_traefik(
        traefik(tmp_path, verify=closed_port_verify()), tmp_path / "state", ca.material("a.test")
    )

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert result.message.startswith("verification failed: endpoint 127.0.0.1:")
    assert [path.read_bytes() for path in files] == previous


def test_traefik_first_deployment_rolled_back_leaves_no_files(ca: DeployCa, tmp_path: Path) -> None:
    result = deploy_traefik(
        traefik(tmp_path, verify=closed_port_verify()), tmp_path / "state", ca.material("a.test")
    )

    assert result.outcome is Outcome.ROLLED_BACK
    assert sorted(path.name for path in tmp_path.iterdir()) == ["state"]


def test_envoy_sds_document_is_exact(ca: DeployCa, tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    material = ca.material("proxy.example.test")
    options = envoy(tmp_path, resource_name="server_cert", watched_directory=str(tmp_path / "tls"))

    result = deploy_envoy(options, tmp_path / "state", material)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    text = (tmp_path / "sds.json").read_text()
    assert json.loads(text) == {
        "resources": [
            {
                "@type": SECRET_TYPE,
                "name": "server_cert",
                "tls_certificate": {
                    "certificate_chain": {"filename": f"{tmp_path}/tls/cert.pem"},
                    "private_key": {"filename": f"{tmp_path}/tls/key.pem"},
                    "watched_directory": {"path": f"{tmp_path}/tls"},
                },
            }
        ]
    }
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
    assert (tmp_path / "tls" / "cert.pem").read_text() == material.fullchain_pem
    assert (tmp_path / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
    assert result.steps[-1] == f"wrote {tmp_path}/sds.json"


def test_envoy_yaml_sds_file_is_json(ca: DeployCa, tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    assert deploy_envoy(envoy(tmp_path, "sds.yaml"), tmp_path / "state", ca.material("a.test")).ok

    document = json.loads((tmp_path / "sds.yaml").read_text())

    assert document["resources"][0]["name"] == "certctl"
    assert "watched_directory" not in document["resources"][0]["tls_certificate"]
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load((tmp_path / "sds.yaml").read_text()) == document


def test_envoy_renewal_moves_the_files_and_keeps_the_sds_file(ca: DeployCa, tmp_path: Path) -> None:
    """After a renewal the SDS file names the same files (its text stays); Envoy sees the moved pair."""
    (tmp_path / "tls").mkdir()
    options = envoy(tmp_path)
    pair = [tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"]
    sds = tmp_path / "sds.json"
    assert deploy_envoy(options, tmp_path / "state", ca.material("a.test")).outcome is Outcome.SUCCEEDED
    pair_inodes, sds_document = inodes(*pair), sds.read_bytes()
    old = {path.read_bytes() for path in pair}
    renewed = ca.material("a.test")

    with watching(pair) as seen:
        result = deploy_envoy(options, tmp_path / "state", renewed)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert all(before != after for before, after in zip(pair_inodes, inodes(*pair), strict=True))
    assert set(seen) <= old | {path.read_bytes() for path in pair}
    assert sds.read_bytes() == sds_document
    assert pair[0].read_text() == renewed.fullchain_pem
    assert sorted(path.name for path in (tmp_path / "tls").iterdir()) == ["cert.pem", "key.pem"]

    assert deploy_envoy(options, tmp_path / "state", renewed).outcome is Outcome.UNCHANGED
    sds_inode = sds.stat().st_ino
    assert deploy_envoy(envoy(tmp_path, resource_name="other"), tmp_path / "state", renewed).ok
    assert json.loads(sds.read_text())["resources"][0]["name"] == "other"
    assert sds.stat().st_ino != sds_inode  # a changed SDS file is moved into place as a whole


def test_envoy_without_sds_writes_the_pair_and_runs_the_reload(ca: DeployCa, tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    marker = tmp_path / "restarted"
    options = envoy(tmp_path, None, reload_command=["touch", str(marker)])

    result = deploy_envoy(options, tmp_path / "state", ca.material("a.test"))

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert marker.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["restarted", "state", "tls"]


def test_envoy_failed_verification_restores_the_previous_files(ca: DeployCa, tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    files = [tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem", tmp_path / "sds.json"]
    assert (
        deploy_envoy(envoy(tmp_path), tmp_path / "state", ca.material("a.test")).outcome is Outcome.SUCCEEDED
    )
    previous = [path.read_bytes() for path in files]

    result = deploy_envoy(
        envoy(tmp_path, resource_name="renamed", verify=closed_port_verify()),
        tmp_path / "state",
        ca.material("a"),
    )

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert [path.read_bytes() for path in files] == previous


@pytest.mark.parametrize(
    ("type_name", "options", "problem"),
    [
        ("traefik", {"dynamic_config_path": "/etc/traefik/dynamic/certctl.json"}, r"\.yaml, \.yml, \.toml"),
        ("traefik", {"dynamic_config_path": "/etc/traefik/site.crt"}, r"\.yaml"),
        ("traefik", {"dynamic_config_path": "/etc/traefik/x.yaml", "stores": ["bad store"]}, "pattern"),
        ("envoy", {"sds_path": "/etc/envoy/sds.txt"}, r"\.json, \.yaml, \.yml"),
        ("envoy", {"watched_directory": "/etc/envoy"}, "set sds_path too"),
        (
            "envoy",
            {"sds_path": "/etc/traefik/site.key.json", "key_path": "/etc/traefik/site.key.json"},
            "same file",
        ),
        ("envoy", {"resource_name": "has space"}, "pattern"),
    ],
)
def test_options_are_validated(type_name: str, options: dict[str, Any], problem: str) -> None:
    base: dict[str, Any] = {"certificate_path": "/etc/traefik/site.crt", "key_path": "/etc/traefik/site.key"}
    if type_name == "traefik":
        base["dynamic_config_path"] = "/etc/traefik/dynamic/certctl.yaml"
    with pytest.raises(TargetConfigError, match=problem):
        parse_options(type_name, base | options)
