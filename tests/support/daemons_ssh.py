"""A real OpenSSH server and a real nginx on loopback, for the agentless SSH target's tests.

The "remote" host is this machine: sshd accepts a client key made for the test, and nginx serves the
certificate files whose paths the SSH target writes over SFTP. Both are stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from certctl.agent.deploy.base import Material
from certctl.agent.deploy.verify import served_fingerprint

SSHD = "/usr/sbin/sshd"
NGINX = "/usr/sbin/nginx"
_START_ATTEMPTS = 200
_POLL_SECONDS = 0.05


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class SshServer:
    """``sshd`` on 127.0.0.1:``port``; ``client_key`` is authorized for root, ``stranger_key`` is not."""

    port: int
    host_key_line: str
    client_key: str = field(repr=False)
    stranger_key: str = field(repr=False)
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        _stop(self.process)


def start_sshd(directory: Path) -> SshServer:
    """Start sshd with its own host key, authorized keys file and pid file under ``directory``."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key", "stranger_key"):
        _keygen(directory / name, f"certctl-test-{name}")
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"HostKey {directory / 'host_key'}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    port = free_port()
    log = directory / "sshd.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config), "-p", str(port)], stdout=sink, stderr=subprocess.STDOUT
        )
    server = SshServer(
        port=port,
        host_key_line=(directory / "host_key.pub").read_text().strip(),
        client_key=(directory / "client_key").read_text(),
        stranger_key=(directory / "stranger_key").read_text(),
        process=process,
        log=log,
    )
    for _ in range(_START_ATTEMPTS):
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
            if probe.recv(64).startswith(b"SSH-2.0"):
                return server
        time.sleep(_POLL_SECONDS)
    server.stop()
    raise RuntimeError(f"sshd did not start: {log.read_text()[-2000:]}")


@dataclass
class Nginx:
    """nginx serving TLS on 127.0.0.1:``port`` from ``certificate`` and ``key``."""

    port: int
    conf: Path
    certificate: Path
    key: Path
    process: subprocess.Popen[bytes]

    @property
    def test_argv(self) -> list[str]:
        return [NGINX, "-c", str(self.conf), "-t"]

    @property
    def reload_argv(self) -> list[str]:
        return [NGINX, "-c", str(self.conf), "-s", "reload"]

    def serves(self) -> str:
        """The SHA-256 fingerprint of the leaf nginx serves now."""
        return asyncio.run(served_fingerprint(host="127.0.0.1", port=self.port))

    def wait_until_serving(self, fingerprint: str) -> str:
        """Poll until nginx serves ``fingerprint`` (a reload takes effect a moment later); returns the
        last fingerprint seen, so the caller's assertion shows what was served instead."""
        served = ""
        for _ in range(_START_ATTEMPTS):
            with contextlib.suppress(OSError, TimeoutError):
                served = self.serves()
                if served == fingerprint:
                    return served
            time.sleep(_POLL_SECONDS)
        return served

    def install(self, material: Material) -> None:
        """Put ``material`` in place directly (not over SSH) and reload: the starting state of a test."""
        self.certificate.write_text(material.fullchain_pem)
        self.key.write_text(material.private_key_pem)
        self.key.chmod(0o600)
        subprocess.run(self.reload_argv, check=True, capture_output=True)
        if self.wait_until_serving(material.fingerprint_sha256) != material.fingerprint_sha256:
            raise RuntimeError("nginx did not pick up the installed certificate")

    def stop(self) -> None:
        _stop(self.process)


def start_nginx(directory: Path, material: Material) -> Nginx:
    """Start nginx in the foreground with its own pid, log and temp paths, serving ``material``."""
    (directory / "temp").mkdir(parents=True, exist_ok=True)
    tls = directory / "tls"
    tls.mkdir(exist_ok=True)
    certificate, key = tls / "site.crt", tls / "site.key"
    certificate.write_text(material.fullchain_pem)
    key.write_text(material.private_key_pem)
    key.chmod(0o600)
    port = free_port()
    temp = directory / "temp"
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""daemon off;
user root;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        return 200 "ok\\n";
    }}
}}
"""
    )
    with (directory / "nginx.out").open("wb") as sink:
        process = subprocess.Popen([NGINX, "-c", str(conf)], stdout=sink, stderr=subprocess.STDOUT)
    nginx = Nginx(port=port, conf=conf, certificate=certificate, key=key, process=process)
    if nginx.wait_until_serving(material.fingerprint_sha256) != material.fingerprint_sha256:
        nginx.stop()
        raise RuntimeError(f"nginx did not start: {(directory / 'error.log').read_text()[-2000:]}")
    return nginx
