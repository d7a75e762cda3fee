"""The acceptance flow with real processes for every target type that has a real peer here.

Per case: a ``certctl server`` (one for the module; names get a random suffix), a ``certctl agent``
process per step and the real program behind the target. Create the target and a certificate mapped
to it -> ``agent run --once`` -> the endpoint serves the current version -> renew -> the new version is
served -> the target is changed so its reload (or HAProxy's runtime API update, or the TLS check)
fails -> renew -> the agent exits 1, the deployment is ``rolled_back`` and the endpoint still serves
the previous version.

"Served" is what the program itself shows: ``openssl s_client`` (with STARTTLS for mail), ``keytool
-list -v`` for keystores, and for file-watching proxies (Traefik, Envoy: not installable here) the
certificate file that the dynamic configuration or SDS file names. nginx has its own test
(``test_agent_nginx.py``), which also covers the failure alert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from certctl.agent.targets import registry
from support.agent_flow import (
    current_fingerprint,
    enrol_agent,
    file_fingerprint,
    history,
    keystore_fingerprints,
    named_file_fingerprint,
    served_fingerprint,
    settled,
    short_directory,
    unique_suffix,
)
from support.daemons_caddy import start_caddy
from support.daemons_mail import start_dovecot, start_postfix
from support.daemons_ssh import start_nginx as start_remote_nginx
from support.daemons_ssh import start_sshd
from support.daemons_web import STARTERS, FlakyAdminSocket, fail_once_command, free_port
from support.live import LiveServer, start_live_server
from support.material import TestCa

SERVER_NAME = "site.example.test"
SANS = [SERVER_NAME, "127.0.0.1"]
KEYSTORE_PASSWORD = "keystore-password-for-e2e"
RELOAD_REFUSED = "reload refused"  # what fail_once_command prints on its failing run
VERIFICATION_FAILED = "verification failed: endpoint 127.0.0.1:"


@dataclass
class Endpoint:
    """One configured peer: the target that deploys to it and how to see what it serves."""

    type: str
    options: dict[str, Any]
    served: Callable[[], str]
    """The SHA-256 of the leaf the peer serves (or holds) now; "" when none."""
    breaks_once: Callable[[], dict[str, Any]]
    """Options to PATCH into the target so that its next deployment fails after the switch."""
    failure: str
    """What the rolled-back deployment's message says."""
    proxy: bool = False
    """Served by a proxy agent (agentless targets)."""
    agent_environment: dict[str, str] | None = field(default=None, repr=False)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    """Secret options (name -> value) that the API must never show."""
    settle_in_a_row: int = 3
    """How many probes in a row must agree: signal-driven reloads let an old worker answer once more."""


Starter = Callable[[Path, TestCa, ExitStack], Endpoint]


def verify(port: int, **extra: Any) -> dict[str, Any]:
    """A TLS check with retries (a reload takes effect a moment after its command returns)."""
    return {"port": port, "attempts": 40, "delay_seconds": 0.25, **extra}


def closed_port_verify() -> dict[str, Any]:
    """A TLS check of a port nothing listens on: it fails at once, so the deployment rolls back."""
    return {"port": free_port(), "attempts": 1, "delay_seconds": 0, "timeout_seconds": 2}


def start_web(kind: str) -> Starter:
    """Apache or HAProxy from support.daemons_web; HAProxy's runtime API fails through a flaky socket."""

    def start(test_directory: Path, ca: TestCa, cleanup: ExitStack) -> Endpoint:
        directory = short_directory(cleanup)  # holds HAProxy's sockets
        daemon = STARTERS[kind](directory / kind, ca.material(*SANS))
        cleanup.callback(daemon.stop)
        runtime_api = daemon.options.get("mode") == "runtime_api"

        def breaks_once() -> dict[str, Any]:
            if runtime_api:
                proxy = FlakyAdminSocket(Path(daemon.options["runtime_socket"]), directory / "flaky.sock")
                cleanup.callback(proxy.close)
                return {"runtime_socket": str(proxy.path)}
            return {"reload_command": fail_once_command(directory, daemon.reload_argv)}

        return Endpoint(
            type=daemon.target_type,
            options=daemon.target_options(verify=verify(daemon.port, server_name=SERVER_NAME)),
            served=lambda: served_fingerprint(daemon.port, server_name=SERVER_NAME),
            breaks_once=breaks_once,
            failure="refused for the test" if runtime_api else RELOAD_REFUSED,
        )

    return start


def start_caddy_endpoint(mode: Literal["file", "admin_api"]) -> Starter:
    """Caddy reloaded by ``caddy reload --force`` (fails once), or through its admin API (the TLS check
    fails: admin API mode has no command to break)."""

    def start(directory: Path, ca: TestCa, cleanup: ExitStack) -> Endpoint:
        caddy = start_caddy(directory / "caddy", ca.material(*SANS))
        cleanup.callback(caddy.stop)
        options: dict[str, Any] = {
            "mode": mode,
            "certificate_path": str(caddy.certificate),
            "key_path": str(caddy.key),
            "verify": verify(caddy.https_port),
        }
        if mode == "admin_api":
            options["admin_url"] = caddy.admin_url
            breaks_once: Callable[[], dict[str, Any]] = lambda: {"verify": closed_port_verify()}  # noqa: E731
        else:
            options |= {"validate_command": caddy.validate_argv, "reload_command": caddy.reload_argv}
            breaks_once = lambda: {"reload_command": fail_once_command(directory, caddy.reload_argv)}  # noqa: E731
        return Endpoint(
            type="caddy",
            options=options,
            served=lambda: served_fingerprint(caddy.https_port),
            breaks_once=breaks_once,
            failure=RELOAD_REFUSED if mode == "file" else VERIFICATION_FAILED,
            agent_environment=caddy.environment(),  # caddy's commands keep HOME and XDG in the test folder
        )

    return start


def start_postfix_endpoint(directory: Path, ca: TestCa, cleanup: ExitStack) -> Endpoint:
    postfix = start_postfix(ca.material(*SANS))
    cleanup.callback(postfix.stop)
    return Endpoint(
        type="postfix",
        options={
            "certificate_path": str(postfix.certificate),
            "key_path": str(postfix.key),
            "test_command": postfix.check_argv,
            "reload_command": postfix.reload_argv,
            "verify": verify(postfix.port, starttls="smtp"),
        },
        served=lambda: served_fingerprint(postfix.port, starttls="smtp"),
        breaks_once=lambda: {"reload_command": fail_once_command(directory, postfix.reload_argv)},
        failure=RELOAD_REFUSED,
    )


def start_dovecot_endpoint(directory: Path, ca: TestCa, cleanup: ExitStack) -> Endpoint:
    dovecot = start_dovecot(ca.material(*SANS))
    cleanup.callback(dovecot.stop)
    return Endpoint(
        type="dovecot",
        options={
            "certificate_path": str(dovecot.certificate),
            "key_path": str(dovecot.key),
            "test_command": dovecot.test_argv,
            "reload_command": dovecot.reload_argv,
            "verify": verify(dovecot.imap_port, starttls="imap"),
        },
        served=lambda: served_fingerprint(dovecot.imap_port, starttls="imap"),
        breaks_once=lambda: {"reload_command": fail_once_command(directory, dovecot.reload_argv)},
        failure=RELOAD_REFUSED,
    )


def start_keystore(store_format: Literal["pkcs12", "jks"]) -> Starter:
    """A keystore file; "served" is the alias's fingerprint as keytool lists it."""

    def start(directory: Path, ca: TestCa, cleanup: ExitStack) -> Endpoint:
        store = directory / "keystore" / f"server.{store_format}"
        store.parent.mkdir()

        def served() -> str:
            listed = keystore_fingerprints(store, store_format=store_format, password=KEYSTORE_PASSWORD)
            return listed.get("web", "")

        return Endpoint(
            type="keystore",
            options={
                "path": str(store),
                "format": store_format,
                "password": KEYSTORE_PASSWORD,
                "alias": "web",
            },
            served=served,
            breaks_once=lambda: {"reload_command": fail_once_command(directory, ["true"])},
            failure=RELOAD_REFUSED,
            secrets={"password": KEYSTORE_PASSWORD},
            settle_in_a_row=1,
        )

    return start


def start_files(directory: Path, ca: TestCa, cleanup: ExitStack) -> Endpoint:
    out = directory / "files"
    out.mkdir()
    return Endpoint(
        type="files",
        options={"fullchain_path": str(out / "fullchain.pem"), "key_path": str(out / "key.pem")},
        served=lambda: file_fingerprint(out / "fullchain.pem"),
        breaks_once=lambda: {"reload_command": fail_once_command(directory, ["true"])},
        failure=RELOAD_REFUSED,
        settle_in_a_row=1,
    )


def start_ssh(directory: Path, ca: TestCa, cleanup: ExitStack) -> Endpoint:
    """sshd and nginx on loopback: the "remote" host a proxy agent deploys to over SFTP."""
    sshd = start_sshd(directory / "sshd")
    cleanup.callback(sshd.stop)
    nginx = start_remote_nginx(directory / "nginx", ca.material(*SANS))
    cleanup.callback(nginx.stop)
    return Endpoint(
        type="ssh",
        options={
            "host": "127.0.0.1",
            "port": sshd.port,
            "username": "root",
            "private_key": sshd.client_key,
            "known_host_key": sshd.host_key_line,
            "certificate_path": str(nginx.certificate),
            "key_path": str(nginx.key),
            "test_command": nginx.test_argv,
            "reload_command": nginx.reload_argv,
            "verify": verify(nginx.port),
            "connect_timeout_seconds": 10,
        },
        served=lambda: served_fingerprint(nginx.port),
        breaks_once=lambda: {"reload_command": fail_once_command(directory, nginx.reload_argv)},
        failure=RELOAD_REFUSED,
        proxy=True,
        secrets={"private_key": sshd.client_key},
    )


def start_traefik(directory: Path, ca: TestCa, cleanup: ExitStack) -> Endpoint:
    """Traefik's file provider: no command to break, so the TLS check (at a closed port) fails."""
    out = directory / "traefik"
    out.mkdir()
    config = out / "certctl.yaml"
    return Endpoint(
        type="traefik",
        options={
            "certificate_path": str(out / "site.crt"),
            "key_path": str(out / "site.key"),
            "dynamic_config_path": str(config),
        },
        served=lambda: named_file_fingerprint(config, lambda doc: doc["tls"]["certificates"][0]["certFile"]),
        breaks_once=lambda: {"verify": closed_port_verify()},
        failure=VERIFICATION_FAILED,
        settle_in_a_row=1,
    )


def start_envoy(directory: Path, ca: TestCa, cleanup: ExitStack) -> Endpoint:
    """Envoy's file-based SDS; its optional reload (for static listeners) is the command that fails."""
    out = directory / "envoy"
    (out / "tls").mkdir(parents=True)
    sds = out / "sds.json"
    return Endpoint(
        type="envoy",
        options={
            "certificate_path": str(out / "tls" / "cert.pem"),
            "key_path": str(out / "tls" / "key.pem"),
            "sds_path": str(sds),
        },
        served=lambda: named_file_fingerprint(
            sds, lambda doc: doc["resources"][0]["tls_certificate"]["certificate_chain"]["filename"]
        ),
        breaks_once=lambda: {"reload_command": fail_once_command(directory, ["true"])},
        failure=RELOAD_REFUSED,
        settle_in_a_row=1,
    )


def case(name: str, starter: Starter, *peers: str) -> Any:
    return pytest.param(
        name, starter, id=name, marks=[pytest.mark.peer(peer) for peer in (*peers, "openssl")]
    )


CASES = [
    case("apache", start_web("apache"), "apache2"),
    case("haproxy-reload", start_web("haproxy-reload"), "haproxy"),
    case("haproxy-runtime", start_web("haproxy-runtime"), "haproxy"),
    case("caddy-file", start_caddy_endpoint("file"), "caddy"),
    case("caddy-admin", start_caddy_endpoint("admin_api"), "caddy"),
    case("postfix", start_postfix_endpoint, "postfix"),
    case("dovecot", start_dovecot_endpoint, "dovecot"),
    case("keystore-pkcs12", start_keystore("pkcs12"), "keytool"),
    case("keystore-jks", start_keystore("jks"), "keytool"),
    case("files", start_files),
    case("ssh", start_ssh, "sshd", "nginx"),
    case("traefik", start_traefik),
    case("envoy", start_envoy),
]


def test_every_target_type_has_a_case() -> None:
    covered = {"nginx"} | {name.split("-")[0] for name, *_ in (param.values for param in CASES)}
    loaded, broken = registry()
    assert not broken
    assert set(loaded) == covered


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server for this module alone. The session's ``live_server`` is not used: a notification rule
    made there also gets the events of the last two minutes (the audit scan's overlap window), so the
    rolled-back deployments of these cases would reach the alert that the nginx test waits for."""
    server = start_live_server(tmp_path_factory.mktemp("targets-live"))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(("name", "starter"), CASES)
def test_agent_deploys_renews_and_rolls_back(
    own_server: LiveServer, name: str, starter: Starter, tmp_path: Path
) -> None:
    suffix = unique_suffix()
    with ExitStack() as cleanup, own_server.client() as client:
        endpoint = starter(tmp_path, TestCa(tmp_path / "ca"), cleanup)
        agent = enrol_agent(
            own_server,
            client,
            tmp_path / "agent",
            name=f"{name}-{suffix}",
            proxy=endpoint.proxy,
            environment=endpoint.agent_environment,
        )
        target = client.post(
            "/api/v1/targets",
            json={
                "name": f"{name}-{suffix}",
                "type": endpoint.type,
                "agent": agent.name,
                "options": endpoint.options,
            },
        )
        assert target.status_code == 201, target.text
        target_id = target.json()["id"]
        shown = client.get(f"/api/v1/targets/{target_id}")
        assert sorted(shown.json()["secrets_set"]) == sorted(endpoint.secrets)
        for option, secret in endpoint.secrets.items():
            assert option not in shown.json()["options"]
            assert all(line not in shown.text for line in secret.splitlines() if len(line) > 8)

        created = client.post(
            "/api/v1/certificates",
            json={
                "name": f"{name}-{suffix}",
                "issuer": "local",
                "profile": "default",
                "sans": SANS,
                "targets": [target_id],
            },
        )
        assert created.status_code == 202, created.text
        certificate_id = created.json()["id"]

        def served_after(expected: str) -> str:
            return settled(endpoint.served, expected, in_a_row=endpoint.settle_in_a_row)

        first = agent.run_once()
        assert first.returncode == 0, first.stdout + first.stderr
        first_fp = current_fingerprint(client, certificate_id)
        assert served_after(first_fp) == first_fp

        # The target is tested again at the next poll, now that the files exist.
        assert client.post(f"/api/v1/targets/{target_id}/test").status_code == 200
        assert client.post(f"/api/v1/certificates/{certificate_id}/renew").status_code == 202
        second = agent.run_once()
        assert second.returncode == 0, second.stdout + second.stderr
        second_fp = current_fingerprint(client, certificate_id)
        assert second_fp != first_fp
        assert served_after(second_fp) == second_fp
        last_check = client.get(f"/api/v1/targets/{target_id}").json()["last_check"]
        assert last_check["ok"] is True, last_check

        patched = client.patch(f"/api/v1/targets/{target_id}", json={"options": endpoint.breaks_once()})
        assert patched.status_code == 200, patched.text
        assert client.post(f"/api/v1/certificates/{certificate_id}/renew").status_code == 202
        third = agent.run_once()
        assert third.returncode == 1, third.stdout + third.stderr
        assert "rolled_back" in third.stdout
        assert current_fingerprint(client, certificate_id) not in (first_fp, second_fp)
        assert served_after(second_fp) == second_fp, "the peer still serves the previous version"
        deployments = history(client, certificate_id)
        assert deployments[0]["status"] == "rolled_back"
        assert endpoint.failure in deployments[0]["message"]
        assert [d["status"] for d in deployments[1:3]] == ["succeeded", "succeeded"]
        if "verify" in endpoint.options:  # the agent's own TLS check saw each version served
            assert [d["served_fingerprint"] for d in deployments[1:3]] == [second_fp, first_fp]
