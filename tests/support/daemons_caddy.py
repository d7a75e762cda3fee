"""A real Caddy 2 on loopback for the caddy target's tests.

Caddy serves one https site on 127.0.0.1 from two files (``tls <cert> <key>`` in its Caddyfile), with
its admin endpoint on a loopback port or a unix socket, and its storage, HOME and XDG directories inside
the test's folder so nothing lands in the real home. Stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from certctl.agent.deploy.base import Material
from certctl.agent.deploy.verify import served_fingerprint

CADDY = "/usr/bin/caddy"
_ATTEMPTS = 200
_POLL_SECONDS = 0.05


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Caddy:
    """``caddy run`` serving https on 127.0.0.1:``https_port`` from ``certificate`` and ``key``."""

    directory: Path
    caddyfile: Path
    admin_url: str
    """As the caddy target takes it: ``http://127.0.0.1:<port>`` or ``unix//path``."""
    https_port: int
    certificate: Path
    key: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def validate_argv(self) -> list[str]:
        return [CADDY, "validate", "--config", str(self.caddyfile)]

    @property
    def reload_argv(self) -> list[str]:
        return [CADDY, "reload", "--config", str(self.caddyfile), "--force"]

    def serves(self, server_name: str | None = None) -> str:
        return asyncio.run(
            served_fingerprint(host="127.0.0.1", port=self.https_port, server_name=server_name)
        )

    def wait_until_serving(self, fingerprint: str, server_name: str | None = None) -> str:
        """Poll until Caddy serves ``fingerprint``; returns the last fingerprint seen."""
        served = ""
        for _ in range(_ATTEMPTS):
            if self.process.poll() is not None:
                raise RuntimeError(f"caddy exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError, TimeoutError):
                served = self.serves(server_name)
                if served == fingerprint:
                    return served
            time.sleep(_POLL_SECONDS)
        return served

    def install(self, material: Material) -> None:
        """Put ``material`` in place directly and reload: the starting state of a test."""
        self.certificate.write_text(material.fullchain_pem)
        self.key.write_text(material.private_key_pem)
        subprocess.run(self.reload_argv, check=True, capture_output=True, env=self.environment())
        if self.wait_until_serving(material.fingerprint_sha256) != material.fingerprint_sha256:
            raise RuntimeError("caddy did not pick up the installed certificate")

    def environment(self) -> dict[str, str]:
        return caddy_environment(self.directory)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def caddy_environment(directory: Path) -> dict[str, str]:
    """HOME and XDG folders inside ``directory``: Caddy writes its autosave and data there."""
    home = directory / "home"
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }


def start_caddy(directory: Path, material: Material, *, admin_socket: bool = False) -> Caddy:
    """Start Caddy serving ``material``; its admin endpoint on a free port, or a unix socket."""
    directory.mkdir(parents=True, exist_ok=True)
    tls = directory / "tls"
    tls.mkdir(exist_ok=True)
    certificate, key = tls / "site.crt", tls / "site.key"
    certificate.write_text(material.fullchain_pem)
    key.write_text(material.private_key_pem)
    key.chmod(0o600)
    if admin_socket:
        admin_address = f"unix/{directory / 'admin.sock'}"
        admin_url = admin_address
    else:
        admin_address = f"127.0.0.1:{free_port()}"
        admin_url = f"http://{admin_address}"
    https_port = free_port()
    caddyfile = directory / "Caddyfile"
    caddyfile.write_text(
        f"""{{
\tadmin {admin_address}
\thttp_port {free_port()}
\thttps_port {https_port}
\tauto_https disable_redirects
\tstorage file_system {directory / "storage"}
}}

https://127.0.0.1:{https_port} {{
\tbind 127.0.0.1
\ttls {certificate} {key}
\trespond "certctl test site"
}}
"""
    )
    log = directory / "caddy.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [CADDY, "run", "--config", str(caddyfile)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=caddy_environment(directory),
        )
    caddy = Caddy(
        directory=directory,
        caddyfile=caddyfile,
        admin_url=admin_url,
        https_port=https_port,
        certificate=certificate,
        key=key,
        process=process,
        log=log,
    )
    try:
        served = caddy.wait_until_serving(material.fingerprint_sha256)
    except RuntimeError:
        caddy.stop()
        raise
    if served != material.fingerprint_sha256:
        caddy.stop()
        raise RuntimeError(f"caddy did not start: {log.read_text()[-2000:]}")
    return caddy
