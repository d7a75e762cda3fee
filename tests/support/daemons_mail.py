"""A private Postfix and a private Dovecot on loopback, for the mail targets' tests.

Both drop privileges to their own system users (``postfix``; ``dovecot``/``dovenull``), which must be able
to walk to their working folders: those are made under the system temp folder with mode 0755 instead of
pytest's private (0700) folders, and removed when the daemon stops. Each daemon is stopped by PID.

Postfix: a minimal ``main.cf`` and ``master.cf`` in its own config directory (``postfix -c <dir>``), its
own queue and data directories, ``maillog_file = /dev/stdout`` (a regular file there made ``postfix
check`` fail silently), and two smtpd listeners: one reading ``smtpd_tls_cert_file``/``key_file``, one
reading a combined ``smtpd_tls_chain_files`` file. Dovecot: ``dovecot -c <conf> -F`` with ``base_dir``
and ``state_dir`` in its folder, IMAP (STARTTLS) and IMAPS listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from certctl.agent.deploy.base import Material, StepFailed
from certctl.agent.deploy.verify import served_fingerprint

POSTFIX = "/usr/sbin/postfix"
DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
DOVECONF = "/usr/bin/doveconf"
_ATTEMPTS = 200
_POLL_SECONDS = 0.05

_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def shared_directory(prefix: str) -> Path:
    """A fresh folder that the daemons' unprivileged users can walk into."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    return directory


def serves(port: int, starttls: Literal["smtp", "imap"] | None = None) -> str:
    return asyncio.run(served_fingerprint(host="127.0.0.1", port=port, starttls=starttls))


def wait_until_serving(
    port: int, fingerprint: str, *, starttls: Literal["smtp", "imap"] | None, process: subprocess.Popen[bytes]
) -> str:
    """Poll until ``port`` serves ``fingerprint``; returns the last fingerprint seen."""
    served = ""
    for _ in range(_ATTEMPTS):
        if process.poll() is not None:
            return served
        with contextlib.suppress(OSError, TimeoutError, StepFailed):
            served = serves(port, starttls)
            if served == fingerprint:
                return served
        time.sleep(_POLL_SECONDS)
    return served


def _write_pair(certificate: Path, key: Path, material: Material) -> None:
    certificate.write_text(material.fullchain_pem)
    key.write_text(material.private_key_pem)
    key.chmod(0o600)


def _terminate(pid: int, process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        process.kill()
        process.wait()


@dataclass
class Postfix:
    """``postfix start-fg``: smtpd on ``port`` (cert + key files) and ``combined_port`` (chain file)."""

    directory: Path
    config_dir: Path
    port: int
    combined_port: int
    certificate: Path
    key: Path
    chain_file: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def check_argv(self) -> list[str]:
        return [POSTFIX, "-c", str(self.config_dir), "check"]

    @property
    def reload_argv(self) -> list[str]:
        return [POSTFIX, "-c", str(self.config_dir), "reload"]

    def serves(self, port: int | None = None) -> str:
        return serves(port or self.port, "smtp")

    def wait_until_serving(self, fingerprint: str, port: int | None = None) -> str:
        return wait_until_serving(port or self.port, fingerprint, starttls="smtp", process=self.process)

    def install(self, material: Material) -> None:
        """Put ``material`` in both layouts directly and reload: the starting state of a test."""
        _write_pair(self.certificate, self.key, material)
        self.chain_file.write_text(material.private_key_pem + material.fullchain_pem)
        subprocess.run(self.reload_argv, check=True, capture_output=True)
        for port in (self.port, self.combined_port):
            if self.wait_until_serving(material.fingerprint_sha256, port) != material.fingerprint_sha256:
                raise RuntimeError("postfix did not pick up the installed certificate")

    def stop(self) -> None:
        try:
            master = int((self.directory / "queue" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            master = self.process.pid
        _terminate(master, self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postfix(material: Material) -> Postfix:
    """Start a private Postfix serving ``material`` over STARTTLS on two loopback ports."""
    directory = shared_directory("certctl-postfix-")
    config_dir, queue, data, tls = (directory / name for name in ("conf", "queue", "data", "tls"))
    for folder in (config_dir, queue, data, tls):
        folder.mkdir()
    shutil.chown(data, user="postfix")
    certificate, key, chain_file = tls / "smtpd.crt", tls / "smtpd.key", tls / "smtpd-chain.pem"
    _write_pair(certificate, key, material)
    chain_file.write_text(material.private_key_pem + material.fullchain_pem)
    chain_file.chmod(0o600)
    port, combined_port = free_port(), free_port()
    (config_dir / "main.cf").write_text(
        f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
maillog_file = /dev/stdout
myhostname = mail.certctl.test
mydestination =
smtpd_tls_security_level = may
smtpd_tls_cert_file = {certificate}
smtpd_tls_key_file = {key}
"""
    )
    (config_dir / "master.cf").write_text(
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        f"127.0.0.1:{combined_port} inet n - n - - smtpd -o smtpd_tls_chain_files={chain_file}\n"
        + _MASTER_SERVICES
    )
    log = directory / "postfix.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [POSTFIX, "-c", str(config_dir), "start-fg"], stdout=sink, stderr=subprocess.STDOUT
        )
    postfix = Postfix(directory, config_dir, port, combined_port, certificate, key, chain_file, process, log)
    for listener in (port, combined_port):
        if postfix.wait_until_serving(material.fingerprint_sha256, listener) != material.fingerprint_sha256:
            output = log.read_text()[-2000:]
            postfix.stop()
            raise RuntimeError(f"postfix did not start: {output}")
    return postfix


@dataclass
class Dovecot:
    """``dovecot -F``: IMAP with STARTTLS on ``imap_port``, IMAPS on ``imaps_port``."""

    directory: Path
    conf: Path
    imap_port: int
    imaps_port: int
    certificate: Path
    key: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def test_argv(self) -> list[str]:
        return [DOVECONF, "-c", str(self.conf), "-n"]

    @property
    def reload_argv(self) -> list[str]:
        return [DOVEADM, "-c", str(self.conf), "reload"]

    def serves_imap(self) -> str:
        return serves(self.imap_port, "imap")

    def serves_imaps(self) -> str:
        return serves(self.imaps_port)

    def wait_until_serving(self, fingerprint: str) -> tuple[str, str]:
        """Poll both listeners until they serve ``fingerprint``; returns what each served last."""
        imap = wait_until_serving(self.imap_port, fingerprint, starttls="imap", process=self.process)
        imaps = wait_until_serving(self.imaps_port, fingerprint, starttls=None, process=self.process)
        return imap, imaps

    def install(self, material: Material) -> None:
        _write_pair(self.certificate, self.key, material)
        subprocess.run(self.reload_argv, check=True, capture_output=True)
        expected = (material.fingerprint_sha256, material.fingerprint_sha256)
        if self.wait_until_serving(material.fingerprint_sha256) != expected:
            raise RuntimeError("dovecot did not pick up the installed certificate")

    def stop(self) -> None:
        _terminate(self.process.pid, self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_dovecot(material: Material) -> Dovecot:
    """Start a private Dovecot serving ``material`` on an IMAP and an IMAPS loopback port."""
    directory = shared_directory("certctl-dovecot-")
    run, state, tls = directory / "run", directory / "state", directory / "tls"
    for folder in (run, state, tls):
        folder.mkdir()
    certificate, key = tls / "imap.crt", tls / "imap.key"
    _write_pair(certificate, key, material)
    imap_port, imaps_port = free_port(), free_port()
    conf = directory / "dovecot.conf"
    conf.write_text(
        f"""base_dir = {run}
state_dir = {state}
protocols = imap
listen = 127.0.0.1
log_path = /dev/stderr
ssl = yes
ssl_cert = <{certificate}
ssl_key = <{key}
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:{directory}/mail/%u
passdb {{
  driver = static
  args = password=unused-test-password
}}
userdb {{
  driver = static
  args = uid=root gid=root home={directory}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
"""
    )
    log = directory / "dovecot.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([DOVECOT, "-c", str(conf), "-F"], stdout=sink, stderr=subprocess.STDOUT)
    dovecot = Dovecot(directory, conf, imap_port, imaps_port, certificate, key, process, log)
    expected = (material.fingerprint_sha256, material.fingerprint_sha256)
    if dovecot.wait_until_serving(material.fingerprint_sha256) != expected:
        output = log.read_text()[-2000:]
        dovecot.stop()
        raise RuntimeError(f"dovecot did not start: {output}")
    return dovecot
