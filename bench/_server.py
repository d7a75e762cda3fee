"""Start ``certctl server`` for a bench, on SQLite or on a fresh PostgreSQL database, and seed it."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import psycopg
from sqlalchemy.engine import make_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BenchServer:
    url: str
    key: str
    ca: Path
    pid: int
    env: dict[str, str]

    def verify_audit(self) -> str:
        """``certctl admin audit verify``: seals what is pending and checks every row and the chain."""
        result = subprocess.run(
            [sys.executable, "-m", "certctl.cli.main", "admin", "audit", "verify"],
            env=self.env, capture_output=True, text=True,
        )  # fmt: skip
        return (result.stdout + result.stderr).strip().replace("\n", "; ")


def fresh_postgres(base_url: str, name: str) -> str:
    admin = make_url(base_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        connection.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return make_url(base_url).set(drivername="postgresql+psycopg", database=name).render_as_string(False)


@contextmanager
def running_server(workdir: Path, *, database_url: str | None, workers: int) -> Iterator[BenchServer]:
    data = workdir / "data"
    port, http_port = free_port(), free_port()
    env = os.environ | {
        "CERTCTL_DATA_DIR": str(data),
        "CERTCTL_LISTEN": f"127.0.0.1:{port}",
        "CERTCTL_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "CERTCTL_WORKERS": str(workers),
        "CERTCTL_LOG_LEVEL": "warning",
    }
    env.pop("CERTCTL_DATABASE_URL", None)
    if database_url:
        env["CERTCTL_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "certctl.cli.main"]
    key = subprocess.run(
        [*command, "admin", "create-key", "--name", "bench", "--role", "admin"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)  # PostgreSQL: nothing else creates it
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen([*command, "server"], env=env, stdout=log, stderr=subprocess.STDOUT)
    server = BenchServer(
        url=f"https://127.0.0.1:{port}", key=key, ca=data / "tls" / "ca.crt", pid=process.pid, env=env
    )
    try:
        _wait(server, process)
        _seed(server)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def client(server: BenchServer) -> httpx2.Client:
    return httpx2.Client(
        base_url=server.url,
        verify=ssl.create_default_context(cafile=str(server.ca)),
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=60,
    )


def _wait(server: BenchServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited during start-up")
        if server.ca.exists():
            try:
                with client(server) as c:
                    if c.get("/health").status_code == 200:
                        return
            except httpx2.TransportError:
                pass
        time.sleep(0.2)
    raise SystemExit("the server did not start")


def _seed(server: BenchServer) -> None:
    with client(server) as c:
        root = c.post(
            "/api/v1/intermediates", json={"name": "Bench Root", "subject": {"common_name": "Bench Root"}}
        )
        issuing = c.post(
            "/api/v1/intermediates",
            json={"name": "Bench Issuing", "parent": root.json()["id"], "validity_days": 1825,
                  "subject": {"common_name": "Bench Issuing"}, "path_length": 0},
        )  # fmt: skip
        c.post("/api/v1/profiles", json={"name": "bench"}).raise_for_status()
        c.post(
            "/api/v1/issuers",
            json={"name": "bench", "type": "local", "options": {"ca": issuing.json()["id"]}},
        ).raise_for_status()
