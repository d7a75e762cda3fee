"""Real ACME clients against a real ``certctl server`` process with dns-01 and tls-alpn-01.

The server resolves names (A and TXT) through pebble-challtestsrv; the clients publish their TXT records
through its management API from hook scripts (lego's ``exec`` DNS provider, certbot's manual hooks).
lego answers tls-alpn-01 itself on the port the server is configured to validate on; for an IP address
(RFC 8738, which the Debian lego does not send) uacme orders and its ualpn server answers.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from support.acme_testbed import free_port, spawn, stop_process, system_trust, wait_until
from support.live import LiveServer, start_live_server
from support.seed import DEFAULT_RULES

pytestmark = pytest.mark.peer("pebble-challtestsrv")
WILD_BASE = "wild.example.test"
CLIENT_SECONDS = 180

LEGO_HOOK = """#!/bin/sh
# lego's exec DNS provider: $1 = present|cleanup|timeout, $2 = record FQDN, $3 = TXT value
case "$1" in
  present) path=set-txt ;;
  cleanup) path=clear-txt ;;
  *) exit 0 ;;
esac
exec curl -sf -X POST -d "{\\"host\\": \\"$2\\", \\"value\\": \\"$3\\"}" "http://127.0.0.1:@MGMT@/$path"
"""

CERTBOT_HOOK = """#!/bin/sh
# certbot manual hook (run as "<script> set-txt" or "<script> clear-txt"): CERTBOT_DOMAIN, CERTBOT_VALIDATION
path="$1"
exec curl -sf -X POST \\
  -d "{\\"host\\": \\"_acme-challenge.$CERTBOT_DOMAIN.\\", \\"value\\": \\"$CERTBOT_VALIDATION\\"}" \\
  "http://127.0.0.1:@MGMT@/$path"
"""


@dataclass
class Bed:
    server: LiveServer
    dns_port: int
    tls_port: int
    lego_hook: Path
    certbot_hook: Path


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _script(path: Path, text: str, management: int) -> Path:
    path.write_text(text.replace("@MGMT@", str(management)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    work = tmp_path_factory.mktemp("acme-dns-tls")
    dns_port, management, tls_port = free_port(), free_port(), free_port()
    argv = ["pebble-challtestsrv", "-http01", "", "-https01", "", "-tlsalpn01", ""]
    argv += ["-dns01", f"127.0.0.1:{dns_port}", "-management", f"127.0.0.1:{management}"]
    argv += ["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]
    log = work / "challtestsrv.log"
    dns = spawn(argv, log=log)
    try:
        wait_until(lambda: _accepts(dns_port) and _accepts(management), what="dns", process=dns, log=log)
        server = start_live_server(
            work / "server",
            extra_env={
                "CERTCTL_ACME_DNS_RESOLVER": f"127.0.0.1:{dns_port}",
                "CERTCTL_ACME_TLSALPN01_PORT": str(tls_port),
                "CERTCTL_ACME_HTTP01_PORT": str(free_port()),
            },
        )
        try:
            rules = DEFAULT_RULES | {"san_patterns": [f"*.{WILD_BASE}"], "acme": {"allow_wildcards": True}}
            with server.client() as client:
                client.post("/api/v1/profiles", json={"name": "wild", "rules": rules}).raise_for_status()
            yield Bed(
                server=server,
                dns_port=dns_port,
                tls_port=tls_port,
                lego_hook=_script(work / "lego-hook.sh", LEGO_HOOK, management),
                certbot_hook=_script(work / "certbot-hook.sh", CERTBOT_HOOK, management),
            )
        finally:
            server.stop()
    finally:
        stop_process(dns)


def _run(argv: list[str], env: dict[str, str], server: LiveServer) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=CLIENT_SECONDS)
    output = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, output + server.log_file.read_text()[-3000:]


def _lego(bed: Bed, path: Path, name: str, *challenge: str, profile: str = "default") -> x509.Certificate:
    argv = ["lego", "--server", f"{bed.server.url}/acme/{profile}/directory", "--email", "a@example.com"]
    argv += ["--accept-tos", "--domains", name, "--path", str(path), *challenge, "run"]
    env = os.environ | {"LEGO_CA_CERTIFICATES": str(bed.server.ca_bundle), "EXEC_PATH": str(bed.lego_hook)}
    _run(argv, env, bed.server)
    stored = name.replace("*", "_")
    return x509.load_pem_x509_certificates((path / "certificates" / f"{stored}.crt").read_bytes())[0]


def _dns_names(certificate: x509.Certificate) -> list[str]:
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(sans.get_values_for_type(x509.DNSName))


def _lego_dns(bed: Bed) -> list[str]:
    return ["--dns", "exec", "--dns.resolvers", f"127.0.0.1:{bed.dns_port}", "--dns.disable-cp"]


@pytest.mark.peer("lego")
def test_lego_dns01(bed: Bed, tmp_path: Path) -> None:
    name = f"lego-dns-{secrets.token_hex(4)}.example.test"
    assert _dns_names(_lego(bed, tmp_path, name, *_lego_dns(bed))) == [name]


@pytest.mark.peer("lego")
def test_lego_wildcard_dns01(bed: Bed, tmp_path: Path) -> None:
    name = f"*.{WILD_BASE}"
    assert _dns_names(_lego(bed, tmp_path, name, *_lego_dns(bed), profile="wild")) == [name]


@pytest.mark.peer("lego")
def test_lego_tls_alpn01(bed: Bed, tmp_path: Path) -> None:
    name = f"lego-alpn-{secrets.token_hex(4)}.example.test"
    certificate = _lego(bed, tmp_path, name, "--tls", "--tls.port", f"127.0.0.1:{bed.tls_port}")
    assert _dns_names(certificate) == [name]


UALPN_HOOK = """#!/bin/sh
# uacme hook ($1 = begin|done|failed, $2 = type, $3 = identifier, $4 = token, $5 = key authorization):
# hands tls-alpn-01 authorizations to the ualpn server on its socket, declines every other type
[ "$2" = "tls-alpn-01" ] || exit 1
case "$1" in
  begin) reply=$(echo "auth $3 $5" | ualpn --sock @SOCK@) ;;
  *) reply=$(echo "unauth $3" | ualpn --sock @SOCK@) ;;
esac
[ "$reply" = "OK" ]
"""


@pytest.mark.peer("uacme")
def test_uacme_ualpn_tls_alpn01_for_an_ip_address(bed: Bed, tmp_path: Path) -> None:
    """RFC 8738 §6 with real peers: uacme orders an ``ip`` identifier, its ualpn server answers the
    validation's handshake (SNI = 1.0.0.127.in-addr.arpa) with an iPAddress challenge certificate."""
    sock = tmp_path / "ualpn.sock"
    hook = _script(tmp_path / "ualpn-hook.sh", UALPN_HOOK.replace("@SOCK@", str(sock)), 0)
    log = tmp_path / "ualpn.log"
    argv = ["ualpn", "--bind", f"127.0.0.1@{bed.tls_port}", "--connect", f"127.0.0.1@{free_port()}"]
    argv += ["--sock", str(sock)]
    argv += ["--pidfile", str(tmp_path / "ualpn.pid"), "--logfile", str(log), "--verbose"]
    ualpn = spawn(argv, log=tmp_path / "ualpn.out")  # other connections would go to --connect: none come
    try:
        wait_until(lambda: sock.exists() and _accepts(bed.tls_port), what="ualpn", process=ualpn, log=log)
        base = ["uacme", "--confdir", str(tmp_path / "uacme"), "--type", "EC"]
        base += ["--acme-url", f"{bed.server.url}/acme/directory"]
        with system_trust(bed.server.ca_bundle):
            _run([*base, "--yes", "new"], os.environ, bed.server)
            _run([*base, "--hook", str(hook), "issue", "127.0.0.1"], os.environ, bed.server)
    finally:
        stop_process(ualpn)
    pem = (tmp_path / "uacme" / "127.0.0.1" / "cert.pem").read_bytes()
    sans = x509.load_pem_x509_certificates(pem)[0].extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert [str(address) for address in sans.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.value.get_values_for_type(x509.DNSName) == []


@pytest.mark.peer("certbot")
def test_certbot_dns01(bed: Bed, tmp_path: Path) -> None:
    name = f"certbot-dns-{secrets.token_hex(4)}.example.test"
    argv = ["certbot", "--non-interactive", "--config-dir", str(tmp_path / "config")]
    argv += ["--work-dir", str(tmp_path / "work"), "--logs-dir", str(tmp_path / "logs"), "certonly"]
    argv += ["--manual", "--preferred-challenges", "dns"]
    argv += ["--manual-auth-hook", f"{bed.certbot_hook} set-txt"]
    argv += ["--manual-cleanup-hook", f"{bed.certbot_hook} clear-txt", "-d", name]
    argv += ["--server", f"{bed.server.url}/acme/directory", "--register-unsafely-without-email"]
    argv += ["--agree-tos"]
    _run(argv, os.environ | {"REQUESTS_CA_BUNDLE": str(bed.server.ca_bundle)}, bed.server)
    leaf = tmp_path / "config" / "live" / name / "cert.pem"
    assert _dns_names(x509.load_pem_x509_certificate(leaf.read_bytes())) == [name]
