"""nginx, Apache and HAProxy (reload and runtime API) targets against the real daemons on loopback.

Each daemon starts serving material A. The scenario then deploys B (the endpoint must serve B, seen by
our TLS check and by ``openssl s_client``), deploys B again (unchanged), and makes two deployments of C
fail, once in the reload and once in the config test: both roll back and the daemon keeps serving B.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from certctl.agent.deploy.base import Deployer, DeployResult, Material, Outcome
from certctl.agent.deploy.verify import served_fingerprint
from certctl.agent.targets import TargetConfigError, build_deployer, parse_options
from support.daemons_web import STARTERS, FlakyAdminSocket, WebDaemon, fail_once_command, free_port
from support.material import TestCa

SERVER_NAME = "site.example.test"
DAEMONS = [
    pytest.param("nginx", marks=pytest.mark.peer("nginx")),
    pytest.param("apache", marks=pytest.mark.peer("apache2")),
    pytest.param("haproxy-reload", marks=pytest.mark.peer("haproxy")),
    pytest.param("haproxy-runtime", marks=pytest.mark.peer("haproxy")),
]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("web-ca"))


@pytest.fixture(scope="module", params=DAEMONS)
def daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, ca: TestCa
) -> Iterator[WebDaemon]:
    started = STARTERS[request.param](
        tmp_path_factory.mktemp(request.param), ca.material("127.0.0.1", SERVER_NAME)
    )
    try:
        yield started
    finally:
        started.stop()


def deployer_for(daemon: WebDaemon, state: Path, **overrides: Any) -> Deployer:
    verify = {"port": daemon.port, "server_name": SERVER_NAME, "attempts": 40, "delay_seconds": 0.25}
    options = parse_options(daemon.target_type, daemon.target_options(verify=verify, **overrides))
    return build_deployer(daemon.target_type, options, state_dir=state)


def deploy(deployer: Deployer, material: Material) -> DeployResult:
    return asyncio.run(deployer.deploy(material))


def served(daemon: WebDaemon) -> str:
    return asyncio.run(served_fingerprint(host="127.0.0.1", port=daemon.port, server_name=SERVER_NAME))


def settles_on(daemon: WebDaemon, fingerprint: str) -> bool:
    """Whether the daemon comes to serve ``fingerprint`` on every connection. A reload is a signal: a
    retiring worker may still take a connection for a moment after the command (and our check) returned."""
    in_a_row = 0
    for _ in range(400):
        in_a_row = in_a_row + 1 if served(daemon) == fingerprint else 0
        if in_a_row == 10:
            return True
        time.sleep(0.05)
    return False


def openssl_sees(port: int, fingerprint: str) -> bool:
    """OpenSSL's client reports ``fingerprint`` (a few tries, for the same reason as settles_on)."""
    return any(openssl_fingerprint(port) == fingerprint for _ in range(5))


def openssl_fingerprint(port: int) -> str:
    """The served leaf's SHA-256, as OpenSSL's own client and x509 tool see it."""
    handshake = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", SERVER_NAME],
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )
    fingerprint = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
        input=handshake.stdout,
        capture_output=True,
        timeout=30,
        check=True,
    )
    return fingerprint.stdout.decode().split("=", 1)[1].strip().replace(":", "").lower()


def installed(daemon: WebDaemon) -> dict[str, str]:
    paths = {key: value for key, value in daemon.options.items() if key.endswith("_path")}
    return {key: Path(value).read_text() for key, value in paths.items()}


def failing_reload(daemon: WebDaemon, directory: Path, cleanup: ExitStack) -> dict[str, Any]:
    """Options whose reload (or runtime API update) fails once, then works for the rollback."""
    if daemon.options.get("mode") == "runtime_api":
        proxy = FlakyAdminSocket(Path(daemon.options["runtime_socket"]), directory / "flaky.sock")
        cleanup.callback(proxy.close)
        return {"runtime_socket": str(proxy.path)}
    return {"reload_command": fail_once_command(directory, daemon.reload_argv)}


@pytest.mark.peer("openssl")
def test_deploy_skip_and_roll_back_on_the_real_daemon(daemon: WebDaemon, ca: TestCa, tmp_path: Path) -> None:
    state = tmp_path / "state"
    new, failing = ca.material("127.0.0.1", SERVER_NAME), ca.material("127.0.0.1", SERVER_NAME)

    result = deploy(deployer_for(daemon, state), new)
    assert result.outcome is Outcome.SUCCEEDED, (result, daemon.log_tail())
    assert result.served_fingerprint == new.fingerprint_sha256
    assert settles_on(daemon, new.fingerprint_sha256)
    assert openssl_sees(daemon.port, new.fingerprint_sha256)
    serving_new = installed(daemon)

    assert deploy(deployer_for(daemon, state), new).outcome is Outcome.UNCHANGED

    with ExitStack() as cleanup:
        result = deploy(deployer_for(daemon, state, **failing_reload(daemon, tmp_path, cleanup)), failing)
    assert result.outcome is Outcome.ROLLED_BACK, (result, daemon.log_tail())
    assert result.message.startswith("reload failed: ")
    assert installed(daemon) == serving_new
    assert settles_on(daemon, new.fingerprint_sha256)

    result = deploy(deployer_for(daemon, state, test_command=["false"]), failing)
    assert (result.outcome, result.message) == (
        Outcome.ROLLED_BACK,
        "config test failed: false exited 1: (no output); previous files restored",
    )
    assert installed(daemon) == serving_new
    assert settles_on(daemon, new.fingerprint_sha256)
    assert openssl_sees(daemon.port, new.fingerprint_sha256)


@pytest.mark.peer("openssl")
def test_failed_verification_puts_the_previous_certificate_back_into_the_daemon(
    daemon: WebDaemon, ca: TestCa, tmp_path: Path
) -> None:
    previous = ca.material("127.0.0.1", SERVER_NAME)
    assert deploy(deployer_for(daemon, tmp_path / "state"), previous).outcome is Outcome.SUCCEEDED
    serving_previous = installed(daemon)
    # The daemon really picks up the new certificate; only the check (aimed at a closed port) fails.
    closed = {"port": free_port(), "attempts": 1, "timeout_seconds": 2}
    options = parse_options(daemon.target_type, daemon.target_options(verify=closed))
    deployer = build_deployer(daemon.target_type, options, state_dir=tmp_path / "state")
    result = deploy(deployer, ca.material("127.0.0.1", SERVER_NAME))
    assert result.outcome is Outcome.ROLLED_BACK, (result, daemon.log_tail())
    assert result.message.startswith(f"verification failed: endpoint 127.0.0.1:{closed['port']} unreachable")
    assert installed(daemon) == serving_previous
    assert settles_on(daemon, previous.fingerprint_sha256)  # reloaded (or swapped) back, not just files
    assert openssl_sees(daemon.port, previous.fingerprint_sha256)


def test_check_runs_the_config_test_and_reaches_the_endpoint(daemon: WebDaemon, tmp_path: Path) -> None:
    summary = asyncio.run(deployer_for(daemon, tmp_path / "state").check())
    assert summary.startswith(f"{daemon.target_type}: directories present; ")
    assert f"127.0.0.1:{daemon.port} serves {served(daemon)[:16]}..." in summary


def test_dry_run_leaves_the_daemon_alone(daemon: WebDaemon, ca: TestCa, tmp_path: Path) -> None:
    before = installed(daemon)
    result = asyncio.run(
        deployer_for(daemon, tmp_path / "state").deploy(ca.material(SERVER_NAME), dry_run=True)
    )
    assert result.outcome is Outcome.DRY_RUN
    assert installed(daemon) == before
    assert any(line.startswith("would run ") for line in result.steps)


@pytest.mark.parametrize(
    ("type_name", "options", "message"),
    [
        (
            "nginx",
            {"certificate_path": "relative.crt", "key_path": "/k"},
            "'relative.crt' is not an absolute path",
        ),
        (
            "nginx",
            {"certificate_path": "/a", "key_path": "/a"},
            "key_path and certificate_path name the same file /a",
        ),
        (
            "apache",
            {"certificate_path": "/c", "key_path": "/k", "reload_command": ["apachectl", "graceful;", "rm"]},
            "command item 'graceful;' contains a shell metacharacter",
        ),
        ("haproxy", {"pem_path": "/p.pem", "mode": "runtime_api"}, "runtime_api mode needs runtime_socket"),
        ("haproxy", {"pem_path": "/p.pem", "mode": "restart"}, "Input should be 'reload' or 'runtime_api'"),
    ],
)
def test_bad_options_are_refused(type_name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(TargetConfigError) as caught:
        parse_options(type_name, options)
    assert message in str(caught.value)


def test_defaults_use_the_packaged_commands() -> None:
    nginx = parse_options("nginx", {"certificate_path": "/c", "key_path": "/k"})
    assert (nginx.test_command, nginx.reload_command) == (["nginx", "-t"], ["nginx", "-s", "reload"])  # type: ignore[attr-defined]
    apache = parse_options("apache", {"certificate_path": "/c", "key_path": "/k"})
    assert apache.reload_command == ["apachectl", "graceful"]  # type: ignore[attr-defined]
    haproxy = parse_options("haproxy", {"pem_path": "/p.pem"})
    assert haproxy.reload_command == ["systemctl", "reload", "haproxy"]  # type: ignore[attr-defined]
