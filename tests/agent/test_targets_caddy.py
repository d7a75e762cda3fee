"""The ``caddy`` target against a real Caddy 2 on loopback, in file mode and in admin API mode."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest

from certctl.agent.deploy.base import DeployResult, Material, Outcome
from certctl.agent.targets import TargetConfigError, parse_options
from certctl.agent.targets.caddy import CADDY, LOAD_FILES_TAG, CaddyOptions, with_certificate_files
from certctl.agent.targets.common import TlsVerify
from support.daemons_caddy import Caddy, caddy_environment, free_port, start_caddy
from support.material import TestCa as DeployCa  # aliased: pytest would try to collect Test*

T = TypeVar("T")
pytestmark = pytest.mark.peer("caddy")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DeployCa:
    return DeployCa(tmp_path_factory.mktemp("caddy-ca"))


@pytest.fixture(scope="module")
def caddy(tmp_path_factory: pytest.TempPathFactory, ca: DeployCa) -> Iterator[Caddy]:
    server = start_caddy(tmp_path_factory.mktemp("caddy"), ca.material("127.0.0.1"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def caddy_env(caddy: Caddy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployer's ``caddy validate``/``reload`` inherit the agent's environment: keep them in the
    test's folder."""
    for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, caddy_environment(caddy.directory)[name])


def verify_of(caddy: Caddy, **overrides: Any) -> TlsVerify:
    return TlsVerify(port=caddy.https_port, attempts=40, delay_seconds=0.05, **overrides)


def file_mode(caddy: Caddy, **overrides: Any) -> CaddyOptions:
    options: dict[str, Any] = {
        "certificate_path": str(caddy.certificate),
        "key_path": str(caddy.key),
        "validate_command": caddy.validate_argv,
        "reload_command": caddy.reload_argv,
        "verify": verify_of(caddy).model_dump(),
    }
    return CaddyOptions.model_validate(options | overrides)


def admin_mode(caddy: Caddy, **overrides: Any) -> CaddyOptions:
    options: dict[str, Any] = {
        "mode": "admin_api",
        "admin_url": caddy.admin_url,
        "certificate_path": str(caddy.certificate),
        "key_path": str(caddy.key),
        "verify": verify_of(caddy).model_dump(),
    }
    return CaddyOptions.model_validate(options | overrides)


def deploy(
    options: CaddyOptions, state_dir: Path, material: Material, *, dry_run: bool = False
) -> DeployResult:
    return run(CADDY.build(options, state_dir).deploy(material, dry_run=dry_run))


def admin_get(caddy: Caddy, path: str) -> Any:
    with httpx2.Client(base_url=caddy.admin_url, timeout=10, trust_env=False) as http:
        response = http.get(path)
        response.raise_for_status()
        return response.json()


@pytest.mark.usefixtures("caddy_env")
def test_file_mode_installs_reloads_and_verifies(caddy: Caddy, ca: DeployCa, tmp_path: Path) -> None:
    material = ca.material("127.0.0.1")
    options = file_mode(caddy)

    result = deploy(options, tmp_path, material)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert result.served_fingerprint == material.fingerprint_sha256
    assert caddy.serves() == material.fingerprint_sha256
    assert caddy.certificate.read_text() == material.fullchain_pem
    assert caddy.key.read_text() == material.private_key_pem
    assert caddy.key.stat().st_mode & 0o777 == 0o600
    assert any("validate" in step and step.endswith(": ok") for step in result.steps)
    assert any("reload" in step and step.endswith(": ok") for step in result.steps)

    again = deploy(options, tmp_path, material)
    assert again.outcome is Outcome.UNCHANGED
    assert "ok" in run(CADDY.build(options, tmp_path).check())


@pytest.mark.usefixtures("caddy_env")
def test_file_mode_failing_validation_restores_the_previous_files(
    caddy: Caddy, ca: DeployCa, tmp_path: Path
) -> None:
    before = ca.material("127.0.0.1")
    caddy.install(before)
    previous_key = caddy.key.read_bytes()
    failing = ["caddy", "validate", "--config", str(tmp_path / "missing.Caddyfile")]

    result = deploy(file_mode(caddy, validate_command=failing), tmp_path, ca.material("127.0.0.1"))

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert result.message.startswith("config test failed: caddy exited 1")
    assert caddy.certificate.read_text() == before.fullchain_pem
    assert caddy.key.read_bytes() == previous_key
    assert caddy.serves() == before.fingerprint_sha256


@pytest.mark.usefixtures("caddy_env")
def test_file_mode_verification_failure_rolls_back_and_reloads_the_old_files(
    caddy: Caddy, ca: DeployCa, tmp_path: Path
) -> None:
    before = ca.material("127.0.0.1")
    caddy.install(before)
    closed = TlsVerify(port=free_port(), attempts=1, delay_seconds=0)

    result = deploy(file_mode(caddy, verify=closed.model_dump()), tmp_path, ca.material("127.0.0.1"))

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert caddy.certificate.read_text() == before.fullchain_pem
    assert caddy.wait_until_serving(before.fingerprint_sha256) == before.fingerprint_sha256


def test_admin_api_mode_loads_the_files_without_a_restart(caddy: Caddy, ca: DeployCa, tmp_path: Path) -> None:
    material = ca.material("127.0.0.1")
    pid = caddy.process.pid

    result = deploy(admin_mode(caddy), tmp_path, material)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert caddy.serves() == material.fingerprint_sha256
    assert caddy.process.pid == pid and caddy.process.poll() is None
    assert any(
        step.startswith("caddy admin API: POST /load") and step.endswith("ok") for step in result.steps
    )
    load_files = admin_get(caddy, "/config/apps/tls/certificates/load_files")
    assert [(entry["certificate"], entry["key"]) for entry in load_files] == [
        (str(caddy.certificate), str(caddy.key))
    ]  # the Caddyfile already names the files: nothing added

    assert deploy(admin_mode(caddy), tmp_path, material).outcome is Outcome.UNCHANGED
    assert "caddy admin API: GET /config/: ok" in run(CADDY.build(admin_mode(caddy), tmp_path).check())


def test_admin_api_mode_adds_files_the_config_does_not_name_yet(
    caddy: Caddy, ca: DeployCa, tmp_path: Path
) -> None:
    extra = caddy.directory / "extra"
    extra.mkdir(exist_ok=True)
    material = ca.material("extra.test")
    options = admin_mode(
        caddy,
        certificate_path=str(extra / "extra.crt"),
        key_path=str(extra / "extra.key"),
        verify=verify_of(caddy, server_name="extra.test").model_dump(),
    )

    result = deploy(options, tmp_path, material)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    load_files = admin_get(caddy, "/config/apps/tls/certificates/load_files")
    assert {
        "certificate": str(extra / "extra.crt"),
        "key": str(extra / "extra.key"),
        "tags": [LOAD_FILES_TAG],
    } in load_files
    assert caddy.serves("extra.test") == material.fingerprint_sha256
    caddy.install(ca.material("127.0.0.1"))  # back to the Caddyfile's own config for the other tests


def test_admin_api_mode_rollback_loads_the_previous_config_and_files(
    caddy: Caddy, ca: DeployCa, tmp_path: Path
) -> None:
    before = ca.material("127.0.0.1")
    caddy.install(before)
    config_before = admin_get(caddy, "/config/")
    closed = TlsVerify(port=free_port(), attempts=1, delay_seconds=0)
    options = admin_mode(caddy, verify=closed.model_dump())

    result = deploy(options, tmp_path, ca.material("127.0.0.1"))

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert any("(previous files): ok" in step for step in result.steps)
    assert caddy.certificate.read_text() == before.fullchain_pem
    assert caddy.serves() == before.fingerprint_sha256
    assert admin_get(caddy, "/config/") == config_before


def test_admin_api_mode_rollback_drops_an_entry_it_added(caddy: Caddy, ca: DeployCa, tmp_path: Path) -> None:
    caddy.install(ca.material("127.0.0.1"))
    config_before = admin_get(caddy, "/config/")
    extra = caddy.directory / "rollback-extra"
    extra.mkdir(exist_ok=True)
    closed = TlsVerify(port=free_port(), attempts=1, delay_seconds=0)
    options = admin_mode(
        caddy,
        certificate_path=str(extra / "new.crt"),
        key_path=str(extra / "new.key"),
        verify=closed.model_dump(),
    )

    result = deploy(options, tmp_path, ca.material("new.test"))

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert sorted(extra.iterdir()) == []  # the files did not exist before: removed again
    assert admin_get(caddy, "/config/") == config_before


def test_one_admin_api_deployer_deploys_again(caddy: Caddy, ca: DeployCa, tmp_path: Path) -> None:
    """Each deployment talks to Caddy afresh: the second one does not reuse the first one's config."""
    deployer = CADDY.build(admin_mode(caddy), tmp_path)
    for _ in range(2):
        material = ca.material("127.0.0.1")
        result = run(deployer.deploy(material))
        assert result.outcome is Outcome.SUCCEEDED, result.message
        assert caddy.serves() == material.fingerprint_sha256


def test_admin_api_mode_unreachable_endpoint_rolls_back_the_files(
    caddy: Caddy, ca: DeployCa, tmp_path: Path
) -> None:
    """No load reached Caddy, so it still runs the previous certificate: restoring the files is all."""
    before = ca.material("127.0.0.1")
    caddy.install(before)
    options = admin_mode(caddy, admin_url=f"http://127.0.0.1:{free_port()}")

    result = deploy(options, tmp_path, ca.material("127.0.0.1"))

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert "caddy admin API unreachable" in result.message
    assert caddy.certificate.read_text() == before.fullchain_pem
    assert caddy.serves() == before.fingerprint_sha256


def test_admin_api_over_a_unix_socket(tmp_path_factory: pytest.TempPathFactory, ca: DeployCa) -> None:
    first = ca.material("127.0.0.1")
    server = start_caddy(tmp_path_factory.mktemp("caddy-unix"), first, admin_socket=True)
    try:
        material = ca.material("127.0.0.1")
        options = admin_mode(server)
        assert options.admin_url.startswith("unix//")

        result = deploy(options, tmp_path_factory.mktemp("caddy-unix-state"), material)

        assert result.outcome is Outcome.SUCCEEDED, result.message
        assert server.serves() == material.fingerprint_sha256
    finally:
        server.stop()


def test_dry_run_changes_nothing(caddy: Caddy, ca: DeployCa, tmp_path: Path) -> None:
    before = caddy.certificate.read_bytes()

    result = deploy(admin_mode(caddy), tmp_path, ca.material("127.0.0.1"), dry_run=True)

    assert result.outcome is Outcome.DRY_RUN
    assert any(step.startswith("would run caddy admin API: POST /load") for step in result.steps)
    assert caddy.certificate.read_bytes() == before


def test_with_certificate_files_keeps_the_rest_of_the_config() -> None:
    config: dict[str, Any] = {
        "apps": {"http": {"servers": {}}, "tls": {"certificates": {"load_files": [{"certificate": "/a"}]}}}
    }

    updated = with_certificate_files(config, certificate_path="/c.crt", key_path="/c.key")

    assert updated["apps"]["http"] == {"servers": {}}
    assert updated["apps"]["tls"]["certificates"]["load_files"] == [
        {"certificate": "/a"},
        {"certificate": "/c.crt", "key": "/c.key", "tags": [LOAD_FILES_TAG]},
    ]
    assert config["apps"]["tls"]["certificates"]["load_files"] == [{"certificate": "/a"}]  # not mutated
    assert with_certificate_files(updated, certificate_path="/c.crt", key_path="/c.key") == updated
    assert with_certificate_files(None, certificate_path="/c.crt", key_path="/c.key") == {
        "apps": {
            "tls": {"certificates": {"load_files": [updated["apps"]["tls"]["certificates"]["load_files"][1]]}}
        }
    }


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"mode": "admin_api", "admin_url": "http://10.0.0.5:2019"}, "loopback"),
        ({"mode": "admin_api", "admin_url": "https://127.0.0.1:2019"}, "loopback"),
        ({"mode": "admin_api", "admin_url": "http://127.0.0.1:2019/load"}, "bare address"),
        ({"mode": "admin_api", "admin_url": "unix/relative.sock"}, "unix//absolute"),
        ({"mode": "admin_api", "reload_command": ["caddy", "reload"]}, "only used in file mode"),
        ({"admin_url": "http://127.0.0.1:2020"}, "only used in admin_api mode"),
        ({"key_path": "/etc/caddy/site.crt"}, "same file"),
        ({"reload_command": ["caddy", "reload", "$(id)"]}, "shell metacharacter"),
    ],
)
def test_options_are_validated(options: dict[str, Any], problem: str) -> None:
    base = {"certificate_path": "/etc/caddy/site.crt", "key_path": "/etc/caddy/site.key"}
    with pytest.raises(TargetConfigError, match=problem):
        parse_options("caddy", base | options)


def test_defaults_force_the_reload_and_schema_names_the_modes() -> None:
    options = CaddyOptions(certificate_path="/etc/caddy/site.crt", key_path="/etc/caddy/site.key")
    assert options.reload_command == ["caddy", "reload", "--config", "/etc/caddy/Caddyfile", "--force"]
    assert options.validate_command == ["caddy", "validate", "--config", "/etc/caddy/Caddyfile"]
    schema = json.dumps(CaddyOptions.model_json_schema())
    assert "admin_api" in schema
    assert parse_options(
        "caddy", {"mode": "admin_api", **options.model_dump(include={"certificate_path", "key_path"})}
    )


@pytest.mark.parametrize("mode", ["file", "admin_api"])
def test_options_round_trip_through_their_json(mode: str) -> None:
    """What the server stores (every field, defaults included) validates again on the agent."""
    options = CaddyOptions(mode=mode, certificate_path="/etc/caddy/a.crt", key_path="/etc/caddy/a.key")
    assert parse_options("caddy", options.model_dump(mode="json")) == options
