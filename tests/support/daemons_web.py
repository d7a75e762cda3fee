"""Real nginx, Apache httpd and HAProxy on free loopback ports, each in its own temporary directory.

Each helper writes the initial certificate files for a :class:`Material`, a minimal configuration
serving TLS on ``127.0.0.1:<port>``, starts the daemon in the foreground as a child process, waits until
it answers TLS, and returns a :class:`WebDaemon` that knows the target options (paths, config test and
reload commands) to deploy to it. ``stop()`` ends the daemon by PID.

- nginx: ``daemon off;``, own pid and temp paths; ``nginx -e stderr -c <conf> -t`` / ``-s reload``.
- Apache: own ``ServerRoot``, ``PidFile`` and mutex directory, ``-DFOREGROUND``; workers run as
  ``www-data`` (Apache refuses ``User root``), which is fine because the parent reads the key; graceful
  restart with ``apache2 -f <conf> -k graceful`` (it signals the PID in ``PidFile`` with SIGUSR1).
- HAProxy: master-worker mode ``-W -db`` with a master CLI socket (``-S``); reload with ``kill -USR2
  <master pid>``, waiting on the master socket until it is done; admin socket for the runtime API.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certctl.agent.deploy.base import Material

APACHE_MODULES = Path("/usr/lib/apache2/modules")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WebDaemon:
    target_type: str
    """The target type that deploys to this daemon: nginx, apache or haproxy."""
    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    log: Path
    options: dict[str, Any]
    """Target options (paths and commands) that deploy to this daemon."""
    reload_argv: list[str] = field(default_factory=list)
    """The real reload command (empty for HAProxy's runtime API mode)."""

    def target_options(self, **overrides: Any) -> dict[str, Any]:
        return {**self.options, **overrides}

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _write_material(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    os.chmod(path, mode)


def _launch(
    target_type: str,
    argv: list[str],
    directory: Path,
    port: int,
    options: dict[str, Any],
    reload_argv: list[str],
) -> WebDaemon:
    log = directory / "daemon.log"
    with log.open("wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    daemon = WebDaemon(target_type, port, directory, process, log, options, reload_argv)
    try:
        _wait_for_tls(daemon)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def _wait_for_tls(daemon: WebDaemon, seconds: float = 30.0) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise RuntimeError(
                f"{daemon.target_type} exited {daemon.process.returncode}:\n{daemon.log_tail()}"
            )
        try:
            with (
                socket.create_connection(("127.0.0.1", daemon.port), timeout=2) as raw,
                context.wrap_socket(raw) as tls,
            ):
                tls.getpeercert(binary_form=True)
                return
        except (OSError, ssl.SSLError):
            time.sleep(0.1)
    raise RuntimeError(f"{daemon.target_type} did not answer TLS on port {daemon.port}:\n{daemon.log_tail()}")


def start_nginx(directory: Path, material: Material) -> WebDaemon:
    port = free_port()
    tls = directory / "tls"
    (directory / "temp").mkdir(parents=True)
    tls.mkdir()
    _write_material(tls / "site.crt", material.fullchain_pem)
    _write_material(tls / "site.key", material.private_key_pem, 0o600)
    temp = directory / "temp"
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""daemon off;
user root;
pid {directory}/nginx.pid;
error_log stderr;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {temp};
  proxy_temp_path {temp};
  fastcgi_temp_path {temp};
  uwsgi_temp_path {temp};
  scgi_temp_path {temp};
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name site.example.test;
    ssl_certificate {tls}/site.crt;
    ssl_certificate_key {tls}/site.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    return 200 "ok\\n";
  }}
}}
"""
    )
    base = ["nginx", "-e", "stderr", "-c", str(conf)]
    options = {
        "certificate_path": str(tls / "site.crt"),
        "key_path": str(tls / "site.key"),
        "test_command": [*base, "-t"],
        "reload_command": [*base, "-s", "reload"],
    }
    return _launch("nginx", base, directory, port, options, [*base, "-s", "reload"])


def start_apache(directory: Path, material: Material) -> WebDaemon:
    port = free_port()
    tls = directory / "tls"
    tls.mkdir(parents=True)
    _write_material(tls / "site.crt", material.certificate_pem)
    _write_material(tls / "chain.crt", material.chain_pem)
    _write_material(tls / "site.key", material.private_key_pem, 0o600)
    conf = directory / "httpd.conf"
    modules = ["mpm_event", "authz_core", "socache_shmcb", "ssl"]
    loads = "\n".join(f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so" for name in modules)
    conf.write_text(
        f"""ServerRoot {directory}
PidFile {directory}/httpd.pid
DefaultRuntimeDir {directory}
Mutex file:{directory} default
ErrorLog {directory}/error.log
LogLevel warn
{loads}
User www-data
Group www-data
ServerName site.example.test
Listen 127.0.0.1:{port} https
SSLSessionCache none
<VirtualHost 127.0.0.1:{port}>
  ServerName site.example.test
  SSLEngine on
  SSLCertificateFile {tls}/site.crt
  SSLCertificateChainFile {tls}/chain.crt
  SSLCertificateKeyFile {tls}/site.key
</VirtualHost>
"""
    )
    base = ["apache2", "-f", str(conf)]
    options = {
        "certificate_path": str(tls / "site.crt"),
        "key_path": str(tls / "site.key"),
        "chain_path": str(tls / "chain.crt"),
        "test_command": [*base, "-t"],
        "reload_command": [*base, "-k", "graceful"],
    }
    return _launch("apache", [*base, "-DFOREGROUND"], directory, port, options, [*base, "-k", "graceful"])


def start_haproxy(directory: Path, material: Material, *, runtime_api: bool) -> WebDaemon:
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    pem = directory / "site.pem"
    _write_material(pem, material.fullchain_pem + material.private_key_pem, 0o600)
    socket_path = directory / "admin.sock"
    conf = directory / "haproxy.cfg"
    conf.write_text(
        f"""global
  stats socket {socket_path} mode 600 level admin
defaults
  mode http
  timeout connect 5s
  timeout client 5s
  timeout server 5s
frontend site
  bind 127.0.0.1:{port} ssl crt {pem}
  http-request return status 200 content-type text/plain string ok
"""
    )
    master_socket = directory / "master.sock"
    argv = ["haproxy", "-W", "-db", "-S", str(master_socket), "-f", str(conf)]
    options: dict[str, Any] = {"pem_path": str(pem), "test_command": ["haproxy", "-c", "-f", str(conf)]}
    if runtime_api:
        options |= {"mode": "runtime_api", "runtime_socket": str(socket_path)}
        return _launch("haproxy", argv, directory, port, options, [])
    daemon = _launch("haproxy", argv, directory, port, options, [])
    daemon.reload_argv = ["kill", "-USR2", str(daemon.process.pid)]
    daemon.options |= {"reload_command": daemon.reload_argv, "master_socket": str(master_socket)}
    return daemon


STARTERS: dict[str, Callable[[Path, Material], WebDaemon]] = {
    "nginx": start_nginx,
    "apache": start_apache,
    "haproxy-reload": lambda directory, material: start_haproxy(directory, material, runtime_api=False),
    "haproxy-runtime": lambda directory, material: start_haproxy(directory, material, runtime_api=True),
}


def fail_once_command(directory: Path, argv: list[str]) -> list[str]:
    """An argv that fails on its first run ("reload refused") and runs ``argv`` on every later run."""
    script = directory / "fail-once"
    marker = directory / "fail-once.done"
    script.write_text(
        f"""#!/bin/sh
if [ ! -e {marker} ]; then
  touch {marker}
  echo "reload refused" >&2
  exit 1
fi
exec "$@"
"""
    )
    os.chmod(script, 0o755)
    return [str(script), *argv]


class FlakyAdminSocket:
    """A UNIX socket in front of HAProxy's admin socket that refuses the first command it is sent and
    relays every later connection to the real socket: a runtime API update that fails once."""

    def __init__(self, real: Path, path: Path) -> None:
        self.real, self.path = real, path
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(8)
        self._refused = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with client:
            if not self._refused:
                self._refused = True
                client.recv(65536)
                client.sendall(b"Can't update: refused for the test\n\n")
                return
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
                upstream.connect(str(self.real))
                _relay(client, upstream)

    def close(self) -> None:
        self._listener.close()
        self.path.unlink(missing_ok=True)


def _relay(first: socket.socket, second: socket.socket) -> None:
    peers = {first: second, second: first}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 10)
        if not readable:
            return
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            peers[source].sendall(data)
