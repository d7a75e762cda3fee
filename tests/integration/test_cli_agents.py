"""``certctl agents``, ``certctl targets`` and the deployment verbs of ``certctl certs`` against a live
server, on SQLite and on PostgreSQL. Agents are enrolled through the API with the token the CLI made, and
play their part (work, CSR, outcome, target check) through their own routes with their credential."""

from __future__ import annotations

import json
import os
import pty
import ssl
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from support.cli import CERTCTL, ok, ok_json, one_error_line, run
from support.csrs import csr_pem
from support.databases import database_url_for, drop_database
from support.live import LiveServer, start_live_server

PG_URL = os.environ.get("CERTCTL_TEST_DATABASE_URL")
REQUIRE_PEERS = os.environ.get("CERTCTL_REQUIRE_PEERS") == "1"
KEYSTORE_PASSWORD = "ks-Secret-4711-do-not-print"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
ISSUE = "certs issue --issuer local --profile default"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The shared live server (SQLite), or one of this module's own over a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield request.getfixturevalue("live_server")
        return
    if not PG_URL:
        if REQUIRE_PEERS:
            pytest.fail("CERTCTL_REQUIRE_PEERS=1 but CERTCTL_TEST_DATABASE_URL is not set")
        pytest.skip("no PostgreSQL (set CERTCTL_TEST_DATABASE_URL)")
    workdir = tmp_path_factory.mktemp("live-pg")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    url = database_url_for("postgresql", workdir, PG_URL, worker=worker)
    try:
        live = start_live_server(workdir, extra_env={"CERTCTL_DATABASE_URL": url})
        try:
            yield live
        finally:
            live.stop()
    finally:
        drop_database(url)


def _public(live: LiveServer) -> httpx2.Client:
    return httpx2.Client(
        base_url=live.url, verify=ssl.create_default_context(cafile=str(live.ca_bundle)), timeout=30
    )


def _enrol(live: LiveServer, token: str) -> dict[str, Any]:
    with _public(live) as client:
        answer = client.post(
            "/api/v1/agents/enrol",
            json={"token": token, "hostname": "cli-host", "os": "linux", "arch": "x86_64", "version": "1"},
        )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _agent(live: LiveServer, cwd: Path, name: str, *, proxy: bool = False) -> dict[str, Any]:
    """A token from the CLI, spent through the API as a host would."""
    token_file = cwd / f"{name}.token"
    extra = ["--proxy"] if proxy else []
    ok(
        live,
        cwd,
        "agents",
        "enrolment-token",
        "create",
        "--name",
        name,
        "--output-file",
        str(token_file),
        *extra,
    )
    return _enrol(live, token_file.read_text().strip())


def _as_agent(live: LiveServer, agent: dict[str, Any]) -> httpx2.Client:
    return live.client(key=str(agent["credential"]))


def _run_with_stdin(live: LiveServer, cwd: Path, stdin: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTCTL_")}
    env |= {
        "CERTCTL_SERVER": live.url,
        "CERTCTL_API_KEY": live.admin_key,
        "CERTCTL_CA_BUNDLE": str(live.ca_bundle),
    }
    return subprocess.run(
        [*CERTCTL, *args], env=env, cwd=cwd, stdin=stdin, capture_output=True, text=True, timeout=120
    )


def _answer_at_terminal(
    live: LiveServer, cwd: Path, answer: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run with a pseudo-terminal as stdin on which ``answer`` has already been typed."""
    leader, follower = pty.openpty()
    try:
        os.write(leader, answer.encode())
        return _run_with_stdin(live, cwd, follower, *args)
    finally:
        os.close(follower)
        os.close(leader)


@dataclass(frozen=True)
class Cli:
    """``certctl`` against one server from one folder. Each call takes the command as one string (split
    on spaces) followed by arguments passed as they are (paths, values with spaces)."""

    live: LiveServer
    cwd: Path

    def ok(self, command: str, *args: str) -> str:
        return ok(self.live, self.cwd, *command.split(), *args)

    def json(self, command: str, *args: str) -> Any:
        return ok_json(self.live, self.cwd, *command.split(), *args)

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self.live, self.cwd, *command.split(), *args)

    def error(self, command: str, *args: str, exit_code: int = 1) -> str:
        return one_error_line(self.run(command, *args), exit_code)


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_enrolment_tokens_and_agents(server: LiveServer, tmp_path: Path) -> None:
    cli = Cli(server, tmp_path)
    token_file = tmp_path / "web.token"
    created = cli.json("agents enrolment-token create --name cli-ag-web --output-file", str(token_file))
    token = token_file.read_text().strip()
    assert token.startswith("cce_") and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert created["name"] == "cli-ag-web" and "token" not in created
    assert "already exists" in cli.error(
        "agents enrolment-token create --name x --output-file", str(token_file)
    )

    printed = cli.run("agents enrolment-token create --name cli-ag-proxy --proxy --ttl-hours 2")
    assert printed.returncode == 0, printed.stderr
    proxy_token = printed.stdout.strip()
    assert proxy_token.startswith("cce_") and printed.stdout == proxy_token + "\n"
    assert "shown only once" in printed.stderr
    spare = cli.json("agents enrolment-token create --name cli-ag-spare")
    assert spare["token"].startswith("cce_") and spare["proxy"] is False

    listed = cli.ok("agents enrolment-token list")
    assert "cli-ag-web" in listed and "cli-ag-proxy" in listed
    assert token not in listed and proxy_token not in listed
    assert all("token" not in item for item in cli.json("agents enrolment-token list")["items"])

    web, proxy = _enrol(server, token), _enrol(server, proxy_token)
    table = cli.ok("agents list")
    assert "cli-ag-web" in table and "cli-host" in table and "linux/x86_64" in table
    active = cli.json("agents list --status active")["items"]
    assert {"cli-ag-web", "cli-ag-proxy"} <= {a["name"] for a in active}
    got = cli.json("agents get cli-ag-web")
    assert got["id"] == web["id"] and "credential" not in got
    assert web["credential"] not in cli.ok("agents get", web["id"])
    assert cli.error("agents list --status sleeping").startswith("error: 422")

    unconfirmed = _run_with_stdin(server, tmp_path, subprocess.DEVNULL, "agents", "retire", "cli-ag-proxy")
    assert "--yes" in one_error_line(unconfirmed, exit_code=2)
    declined = _answer_at_terminal(server, tmp_path, "n\n", "agents", "retire", "cli-ag-proxy")
    assert declined.returncode == 1, declined.stderr
    assert "Retire agent 'cli-ag-proxy'" in declined.stderr
    assert declined.stderr.strip().splitlines()[-1] == "error: agent cli-ag-proxy was not retired"
    retired = cli.json("agents retire cli-ag-proxy --yes")
    assert retired["status"] == "retired" and retired["id"] == proxy["id"]
    assert cli.error("agents retire --yes", proxy["id"]).startswith("error: 409")
    with _as_agent(server, proxy) as client:
        assert client.post(f"/api/v1/agents/{proxy['id']}/heartbeat", json={}).status_code == 410


def test_targets_with_secret_files(server: LiveServer, tmp_path: Path) -> None:
    cli = Cli(server, tmp_path)
    agent = _agent(server, tmp_path, "cli-tg-host")
    types = cli.ok("targets types")
    assert "nginx" in types and "keystore" in types
    schema = {t["name"]: t for t in cli.json("targets types")["items"]}
    assert schema["ssh"]["agentless"] is True and "password" in schema["keystore"]["secrets"]
    assert "properties" in schema["nginx"]["options_schema"]

    nginx = {"certificate_path": "/etc/nginx/tls/a.crt", "key_path": "/etc/nginx/tls/a.key"}
    nginx_file = _write_json(tmp_path / "nginx.json", nginx)
    site = cli.json("targets create --name cli-tg-nginx --type nginx --agent cli-tg-host --options-file",
                    str(nginx_file), "--description", "front door")  # fmt: skip
    assert site["agent_id"] == agent["id"] and site["options"]["key_path"] == "/etc/nginx/tls/a.key"
    password = tmp_path / "ks.pass"
    password.write_text(KEYSTORE_PASSWORD + "\n")
    store_file = _write_json(tmp_path / "ks.json", {"path": "/srv/app/keystore.p12", "format": "pkcs12"})
    store = cli.json("targets create --name cli-tg-store --type keystore --agent", agent["id"],
                     "--options-file", str(store_file), "--secret-file", f"password={password}")  # fmt: skip
    assert store["secrets_set"] == ["password"] and KEYSTORE_PASSWORD not in json.dumps(store)
    for shown in (cli.ok("targets list"), cli.ok("targets get -o json", store["id"])):
        assert KEYSTORE_PASSWORD not in shown and "cli-tg-store" in shown
    only = cli.json("targets list --agent cli-tg-host --type keystore")["items"]
    assert [t["name"] for t in only] == ["cli-tg-store"]
    assert _checks(server, agent)[store["id"]]["options"]["password"] == KEYSTORE_PASSWORD

    password.write_text("rotated-" + KEYSTORE_PASSWORD)
    updated = cli.json("targets update cli-tg-store --secret-file", f"password={password}",
                       "--description", "app keystore")  # fmt: skip
    assert updated["description"] == "app keystore" and updated["options"]["format"] == "pkcs12"
    assert "rotated-" not in json.dumps(updated)
    assert "nothing to change" in cli.error("targets update cli-tg-store", exit_code=2)

    assert cli.json("targets test cli-tg-nginx")["check_requested_at"] is not None
    checks = _checks(server, agent)
    assert checks[store["id"]]["options"]["password"] == "rotated-" + KEYSTORE_PASSWORD
    with _as_agent(server, agent) as client:
        reported = client.post(f"/api/v1/agents/{agent['id']}/targets/{site['id']}/check",
                               json={"ok": True, "message": "nginx -t passed"})  # fmt: skip
        assert reported.status_code == 204, reported.text
    assert "ok (" in cli.ok("targets list --type nginx")
    assert "nginx -t passed" in cli.ok("targets get cli-tg-nginx")

    create = f"targets create --name cli-tg-bad --type nginx --agent {agent['id']} --options-file"
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    assert "not valid JSON" in cli.error(create, str(bad_json))
    relative = _write_json(tmp_path / "rel.json", nginx | {"certificate_path": "a.crt"})
    refused = cli.error(create, str(relative))
    assert refused.startswith("error: 422") and "absolute" in refused
    twice = cli.error(create, str(nginx_file), "--secret-file", f"key_path={password}", exit_code=2)
    assert "both in the options file and with --secret-file" in twice
    ssh = {"host": "127.0.0.1", "username": "deploy", "known_host_key": HOST_KEY} | nginx
    ssh_file = _write_json(tmp_path / "ssh.json", ssh)
    ssh_create = f"targets create --name cli-tg-ssh --type ssh --agent {agent['id']} --options-file"
    agentless = cli.error(ssh_create, str(ssh_file), "--secret-file", f"password={password}")
    assert "proxy agent" in agentless

    cli.ok("targets delete cli-tg-store")
    assert cli.error("targets get cli-tg-store").startswith("error: 404")


def _checks(live: LiveServer, agent: dict[str, Any]) -> dict[str, Any]:
    """The targets the agent is asked to test, by id, with the options (secrets included) it receives."""
    with _as_agent(live, agent) as client:
        work = client.get(f"/api/v1/agents/{agent['id']}/work")
    assert work.status_code == 200, work.text
    return {check["target"]["id"]: check["target"] for check in work.json()["checks"]}


def test_certificate_targets_and_deployments(server: LiveServer, tmp_path: Path) -> None:
    cli = Cli(server, tmp_path)
    agent = _agent(server, tmp_path, "cli-dp-host")
    _agent(server, tmp_path, "cli-dp-elsewhere")
    with server.client() as admin:
        for target, host in (("a", "cli-dp-host"), ("b", "cli-dp-host"), ("far", "cli-dp-elsewhere")):
            paths = {"certificate_path": f"/tls/{target}.crt", "key_path": f"/tls/{target}.key"}
            body = {"name": f"cli-dp-{target}", "type": "nginx", "agent": host, "options": paths}
            assert admin.post("/api/v1/targets", json=body).status_code == 201
    name = "cli-dp.example.test"
    issue = f"{ISSUE} --name {name} --cn {name} --target cli-dp-a"
    with_key = cli.error(issue, "--key-out", str(tmp_path / "k.pem"), exit_code=2)
    assert "--key-out do not apply" in with_key
    created = cli.json(issue)
    assert created["status"] == "Pending" and created["key_agent_id"] == agent["id"]
    early = cli.error(f"certs deploy {name}")
    assert early.startswith("error: 409") and "no certificate yet" in early
    assert [t["name"] for t in cli.json(f"certs targets {name}")["items"]] == ["cli-dp-a"]
    assert "cli-dp-a" in cli.ok("certs targets", created["id"])

    base = f"/api/v1/agents/{agent['id']}"
    with _as_agent(server, agent) as client:
        [item] = client.get(f"{base}/work").json()["items"]
        assert item["action"] == "enrol"
        issued = client.post(f"{base}/certificates/{created['id']}/csr", json={"csr": csr_pem(name)})
        assert issued.status_code == 200, issued.text
        done = client.post(f"{base}/deployments/{item['deployments'][0]['id']}/result",
                           json={"outcome": "succeeded", "message": "nginx serves it"})  # fmt: skip
        assert done.status_code == 200, done.text
    history = cli.json(f"certs deployments {name}")["items"]
    assert history[0]["status"] == "succeeded" and history[0]["message"] == "nginx serves it"
    table = cli.ok(f"certs deployments {name}")
    assert "succeeded" in table and "cli-dp-a" in table and "nginx serves it" in table

    mapped = cli.json(f"certs map {name} cli-dp-b")
    assert mapped["status"] == "pending" and mapped["version_id"] == issued.json()["version"]["id"]
    assert {t["name"] for t in cli.json(f"certs targets {name}")["items"]} == {"cli-dp-a", "cli-dp-b"}
    elsewhere = cli.error(f"certs map {name} cli-dp-far")
    assert elsewhere.startswith("error: 409") and "held by agent" in elsewhere
    deployed = cli.json(f"certs deploy {name} --target cli-dp-b")["items"]
    assert [d["target_id"] for d in deployed] == [mapped["target_id"]] and deployed[0]["reason"] == "manual"
    every = cli.ok(f"certs deploy {name}")
    assert "cli-dp-a" in every and "cli-dp-b" in every and "pending" in every

    in_use = cli.error("targets delete cli-dp-b")
    assert in_use.startswith("error: 409") and "unmap them first" in in_use
    cli.ok(f"certs unmap {name} cli-dp-b")
    assert cli.error(f"certs unmap {name} cli-dp-b").startswith("error: 404")
    assert "deleted target cli-dp-b" in cli.run("targets delete cli-dp-b").stderr
