"""Real ACME clients obtain certificates from an ACME directory: Pebble (the reference CA) and certctl.

Every client solves http-01 (RFC 8555 §8.3) through the loopback validation port, downloads the chain
(RFC 8555 §7.4.2), and the chain must verify under the directory's roots for TLS server use. Caddy and
Apache mod_md must also serve what they obtained. Pebble runs whenever it is installed and proves the
harness itself; the certctl run needs the ACME server in the product.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from support.acme_peers import CLIENTS, AcmeOrder
from support.acme_testbed import (
    ChallengeDns,
    ChallengeResponder,
    pem_certificates,
    served_leaf_pem,
    start_challenge_dns,
    start_challenge_responder,
    start_pebble,
)
from support.live import LiveServer, start_live_server

pytestmark = [pytest.mark.peer("pebble-challtestsrv"), pytest.mark.peer("openssl")]

ACME_SERVER_PRESENT = importlib.util.find_spec("certctl.protocols.acme") is not None
NO_ACME_SERVER = "ACME server not present"
CERTCTL_DIRECTORY_PATHS = ("/acme/default/directory", "/acme/directory")

SERVERS = [
    pytest.param("pebble", marks=pytest.mark.peer("pebble")),
    pytest.param("certctl", marks=pytest.mark.skipif(not ACME_SERVER_PRESENT, reason=NO_ACME_SERVER)),
]

CLIENT_PROGRAMS = {
    "certbot": "certbot",
    "dehydrated": "dehydrated",
    "acme-tiny": "acme-tiny",
    "uacme": "uacme",
    "caddy": "caddy",
    "apache-md": "apache2",
}


@dataclass(frozen=True)
class AcmeDirectory:
    """The directory under test: its URL, the CA its TLS listener uses, and the roots it issues under."""

    url: str
    ca_bundle: Path
    roots: Path


@pytest.fixture(scope="module")
def challenges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallengeResponder]:
    responder = start_challenge_responder(tmp_path_factory.mktemp("webroot"))
    try:
        yield responder
    finally:
        responder.stop()


@pytest.fixture(scope="module")
def challenge_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallengeDns]:
    dns = start_challenge_dns(tmp_path_factory.mktemp("dns"))
    try:
        yield dns
    finally:
        dns.stop()


@pytest.fixture(scope="module", params=SERVERS)
def acme_directory(
    request: pytest.FixtureRequest,
    challenges: ChallengeResponder,
    challenge_dns: ChallengeDns,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AcmeDirectory]:
    workdir = tmp_path_factory.mktemp(str(request.param))
    if request.param == "pebble":
        pebble = start_pebble(workdir, http01_port=challenges.port, dns=challenge_dns)
        try:
            yield AcmeDirectory(url=pebble.directory_url, ca_bundle=pebble.ca_bundle, roots=pebble.roots)
        finally:
            pebble.stop()
        return
    env = {
        "CERTCTL_ACME_HTTP01_PORT": str(challenges.port),
        "CERTCTL_ACME_DNS_RESOLVER": challenge_dns.resolver,
    }
    server = start_live_server(workdir, extra_env=env)
    try:
        yield _certctl_directory(server, workdir)
    finally:
        server.stop()


def _certctl_directory(server: LiveServer, workdir: Path) -> AcmeDirectory:
    """The live server's ACME directory, with its self-signed CAs as the roots to verify against."""
    with server.client() as client:
        path = next((p for p in CERTCTL_DIRECTORY_PATHS if client.get(p).status_code == 200), None)
        if path is None:
            pytest.skip(NO_ACME_SERVER)
        response = client.get("/api/v1/intermediates")
        response.raise_for_status()
    roots = []
    for item in response.json()["items"]:
        certificate = x509.load_pem_x509_certificate(item["cert_pem"].encode())
        if certificate.issuer == certificate.subject:
            roots.append(item["cert_pem"].strip() + "\n")
    roots_file = workdir / "roots.pem"
    roots_file.write_text("".join(roots))
    return AcmeDirectory(url=server.url + path, ca_bundle=server.ca_bundle, roots=roots_file)


def _verify_chain(certificate: Path, *, roots: Path, workdir: Path) -> None:
    """``openssl verify`` of the leaf, with the rest of the delivered chain as untrusted intermediates."""
    leaf, *intermediates = pem_certificates(certificate)
    (workdir / "leaf.pem").write_text(leaf)
    argv = ["openssl", "verify", "-purpose", "sslserver", "-CAfile", str(roots)]
    if intermediates:
        (workdir / "intermediates.pem").write_text("".join(intermediates))
        argv += ["-untrusted", str(workdir / "intermediates.pem")]
    result = subprocess.run(
        [*argv, str(workdir / "leaf.pem")], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


@pytest.mark.parametrize(
    "client",
    [pytest.param(name, marks=pytest.mark.peer(program)) for name, program in CLIENT_PROGRAMS.items()],
)
def test_client_obtains_certificate(
    client: str, acme_directory: AcmeDirectory, challenges: ChallengeResponder, tmp_path: Path
) -> None:
    name = f"site-{secrets.token_hex(4)}.example.test"
    order = AcmeOrder(
        directory_url=acme_directory.url,
        ca_bundle=acme_directory.ca_bundle,
        challenges=challenges,
        workdir=tmp_path / client,
        name=name,
    )
    order.workdir.mkdir()
    with CLIENTS[client](order=order) as obtained:
        _verify_chain(obtained.certificate, roots=acme_directory.roots, workdir=tmp_path)
        leaf_pem = pem_certificates(obtained.certificate)[0]
        leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [name]
        if obtained.https_port is not None:
            served = served_leaf_pem(port=obtained.https_port, server_name=name)
            assert served is not None
            assert x509.load_pem_x509_certificate(served.encode()) == leaf


@pytest.mark.peer("certbot")
@pytest.mark.parametrize("acme_directory", ["certctl"], indirect=True)
def test_certbot_obtains_an_ip_address_certificate(
    acme_directory: AcmeDirectory, challenges: ChallengeResponder, tmp_path: Path
) -> None:
    """RFC 8738 with a real client: certbot's ``--ip-address`` orders an ``ip`` identifier, proves it
    with http-01 on that address (webroot), and gets a certificate naming only the address. (Against
    Pebble certbot fails after issuance: Pebble's certificate also names the address as a DNS name,
    which certbot refuses to store.)"""
    base = ["certbot", "--non-interactive", "--config-dir", str(tmp_path / "config")]
    base += ["--work-dir", str(tmp_path / "work"), "--logs-dir", str(tmp_path / "logs")]
    argv = [*base, "certonly", "--webroot", "-w", str(challenges.webroot), "--ip-address", "127.0.0.1"]
    argv += ["--cert-name", "by-address", "--server", acme_directory.url]
    argv += ["--register-unsafely-without-email", "--agree-tos"]
    env = os.environ | {"REQUESTS_CA_BUNDLE": str(acme_directory.ca_bundle)}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    chain = tmp_path / "config" / "live" / "by-address" / "fullchain.pem"
    _verify_chain(chain, roots=acme_directory.roots, workdir=tmp_path)
    leaf = x509.load_pem_x509_certificate(pem_certificates(chain)[0].encode())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(address) for address in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == []
