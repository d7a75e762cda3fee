"""``certctl server`` as a real process on free loopback ports, for CLI, browser and bench-like tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2

from support.seed import DEFAULT_RULES


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    http_url: str
    admin_key: str
    ca_bundle: Path
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_file: Path

    def client(self, key: str | None = None) -> httpx2.Client:
        return httpx2.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=str(self.ca_bundle)),
            headers={"Authorization": f"Bearer {key or self.admin_key}"},
            timeout=30,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def certctl_command() -> list[str]:
    return [sys.executable, "-m", "certctl.cli.main"]


def start_live_server(workdir: Path, *, extra_env: dict[str, str] | None = None) -> LiveServer:
    data_dir = workdir / "data"
    https_port, http_port = free_port(), free_port()
    env = os.environ | {
        "CERTCTL_DATA_DIR": str(data_dir),
        "CERTCTL_LISTEN": f"127.0.0.1:{https_port}",
        "CERTCTL_HTTP_LISTEN": f"127.0.0.1:{http_port}",
    }
    env.pop("CERTCTL_DATABASE_URL", None)
    env |= extra_env or {}
    admin_key = subprocess.run(
        [*certctl_command(), "admin", "create-key", "--name", "live-admin", "--role", "admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    log_file = workdir / "server.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [*certctl_command(), "server"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = LiveServer(
        url=f"https://127.0.0.1:{https_port}",
        http_url=f"http://127.0.0.1:{http_port}",
        admin_key=admin_key,
        ca_bundle=data_dir / "tls" / "ca.crt",
        data_dir=data_dir,
        process=process,
        log_file=log_file,
    )
    _wait_healthy(server)
    _seed(server)
    return server


def _wait_healthy(server: LiveServer) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"certctl server exited early:\n{server.log_file.read_text()[-4000:]}")
        if server.ca_bundle.exists():
            try:
                with server.client() as client:
                    if client.get("/health").status_code == 200:
                        return
            except httpx2.TransportError:
                pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"certctl server did not become healthy:\n{server.log_file.read_text()[-4000:]}")


def _seed(server: LiveServer) -> None:
    with server.client() as client:
        root = client.post(
            "/api/v1/intermediates", json={"name": "Test Root", "subject": {"common_name": "Test Root"}}
        ).json()
        issuing = client.post(
            "/api/v1/intermediates",
            json={
                "name": "Test Issuing",
                "parent": root["id"],
                "subject": {"common_name": "Test Issuing"},
                "validity_days": 1825,
                "path_length": 0,
            },
        ).json()
        client.post("/api/v1/profiles", json={"name": "default", "rules": DEFAULT_RULES}).raise_for_status()
        client.post(
            "/api/v1/issuers", json={"name": "local", "type": "local", "options": {"ca": issuing["id"]}}
        ).raise_for_status()
