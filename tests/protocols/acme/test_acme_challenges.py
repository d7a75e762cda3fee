"""dns-01, tls-alpn-01 and wildcard orders in-process on both databases.

The server resolves through pebble-challtestsrv, whose management API publishes the TXT records the
dns-01 tests need; tls-alpn-01 is answered by a TLS responder of the test's own (ALPN acme-tls/1, a
self-signed certificate per SNI name carrying the acmeIdentifier extension).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import secrets
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier
from starlette.testclient import TestClient

from certctl.api.app import create_app
from certctl.keys.envelope import MasterKey
from certctl.services.acme import AcmeConfig
from certctl.services.audit import SYSTEM
from certctl.services.container import build_services
from certctl.store.db import make_engine
from support.acme_client import AcmeTestClient, b64url
from support.acme_testbed import free_port, spawn, stop_process, wait_until
from support.csrs import csr_pem
from support.seed import DEFAULT_RULES, seed_minimal

pytestmark = pytest.mark.peer("pebble-challtestsrv")
ERR = "urn:ietf:params:acme:error:"
ACME_IDENTIFIER = ObjectIdentifier("1.3.6.1.5.5.7.1.31")


class ChallengeDns:
    """pebble-challtestsrv: every name is 127.0.0.1; TXT records are set through its management API."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.management = free_port(), free_port()
        argv = ["pebble-challtestsrv", "-http01", "", "-https01", "", "-tlsalpn01", ""]
        argv += ["-dns01", f"127.0.0.1:{self.port}", "-management", f"127.0.0.1:{self.management}"]
        argv += ["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]
        log = workdir / "challtestsrv.log"
        self.process = spawn(argv, log=log)
        wait_until(self._up, what="challtestsrv", process=self.process, log=log)

    def _up(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.management), 1):
            return True
        return False

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_txt(self, host: str, value: str) -> None:
        self._post("set-txt", {"host": host, "value": value})

    def clear_txt(self, host: str) -> None:
        self._post("clear-txt", {"host": host})

    def _post(self, path: str, body: dict[str, str]) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.management}/{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def stop(self) -> None:
        stop_process(self.process)


class TlsAlpnResponder:
    """Completes acme-tls/1 handshakes on loopback with the certificate registered for the SNI name."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.base.set_alpn_protocols(["acme-tls/1"])
        self.base.sni_callback = self._select
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _select(self, connection: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        context = self.contexts.get(name or "")
        if context is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        connection.context = context
        return None

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handshake, args=(connection,), daemon=True).start()

    def _handshake(self, connection: socket.socket) -> None:
        connection.settimeout(10)
        with contextlib.suppress(OSError), self.base.wrap_socket(connection, server_side=True) as tls:
            tls.recv(1)  # until the validator closes

    def serve(
        self,
        name: str,
        extension: x509.UnrecognizedExtension | None,
        *,
        critical: bool = True,
        san: x509.GeneralName | None = None,
    ) -> None:
        """Answer ``name`` with a self-signed certificate for it carrying ``extension`` (if any). An IP
        address is answered under its reverse-mapping name (RFC 8738 §6) with an iPAddress SAN; ``san``
        replaces the SAN."""
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
        except ValueError:
            address = None
        if san is None:
            san = x509.DNSName(name) if address is None else x509.IPAddress(address)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        )
        if extension is not None:
            builder = builder.add_extension(extension, critical=critical)
        certificate = builder.sign(key, hashes.SHA256())
        cert_file, key_file = self.workdir / f"{name}.crt", self.workdir / f"{name}.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_alpn_protocols(["acme-tls/1"])
        context.load_cert_chain(cert_file, key_file)
        self.contexts[name if address is None else address.reverse_pointer] = context

    def stop(self) -> None:
        self.listener.close()
        self.thread.join(timeout=10)


def acme_identifier(key_authorization: str) -> x509.UnrecognizedExtension:
    """RFC 8737 §3: OCTET STRING (DER) of SHA-256 of the key authorization."""
    digest = hashlib.sha256(key_authorization.encode()).digest()
    return x509.UnrecognizedExtension(ACME_IDENTIFIER, b"\x04\x20" + digest)


def txt_value(key_authorization: str) -> str:
    digest = hashlib.sha256(key_authorization.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def challenge_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallengeDns]:
    dns = ChallengeDns(tmp_path_factory.mktemp("challtestsrv"))
    try:
        yield dns
    finally:
        dns.stop()


@pytest.fixture(scope="module")
def alpn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsAlpnResponder]:
    responder = TlsAlpnResponder(tmp_path_factory.mktemp("tls-alpn"))
    try:
        yield responder
    finally:
        responder.stop()


@pytest.fixture
def acme_app(
    database_url: str, challenge_dns: ChallengeDns, alpn: TlsAlpnResponder
) -> Iterator[tuple[TestClient, Any]]:
    config = AcmeConfig(
        http01_port=free_port(),
        tlsalpn01_port=alpn.port,
        dns_resolver=challenge_dns.resolver,
        validation_timeout_seconds=5,
    )
    services = build_services(
        engine=make_engine(database_url, pool_size=5),
        master_key=MasterKey(secrets.token_bytes(32)),
        public_http_url="http://127.0.0.1:8080",
        cache_ttl_seconds=0.0,
        acme=config,
    )
    with TestClient(create_app(services), base_url="https://testserver") as client:
        assert client.portal is not None
        client.portal.call(seed_minimal, services)
        try:
            yield client, services
        finally:
            client.portal.call(services.acme.validator.drain)
            client.portal.call(services.context.engine.dispose)


def _unique(label: str) -> str:
    """A name no other test (or run against the same DNS server) uses."""
    return f"{label}-{secrets.token_hex(4)}.example.test"


def _account(client: TestClient, profile: str = "default") -> AcmeTestClient:
    acme = AcmeTestClient(client, f"https://testserver/acme/{profile}/directory")
    assert acme.register().status_code == 201
    return acme


def _challenge(acme: AcmeTestClient, authz_url: str, kind: str) -> dict[str, Any]:
    authz = acme.post(authz_url, None).json()
    return next(c for c in authz["challenges"] if c["type"] == kind)


def _answer(acme: AcmeTestClient, challenge: dict[str, Any]) -> dict[str, Any]:
    answered = acme.post(challenge["url"], {})
    assert answered.status_code == 200, answered.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body: dict[str, Any] = acme.post(challenge["url"], None).json()
        if body["status"] in ("valid", "invalid"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"challenge stayed {body['status']}")


def _key_authorization(acme: AcmeTestClient, challenge: dict[str, Any]) -> str:
    return f"{challenge['token']}.{acme.thumbprint()}"


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)


def test_authorizations_offer_the_challenges_that_apply(acme_app: tuple[TestClient, Any]) -> None:
    client, _ = acme_app
    acme = _account(client)
    order = acme.new_order(_unique("offer")).json()
    authz = acme.post(order["authorizations"][0], None).json()
    assert [c["type"] for c in authz["challenges"]] == ["http-01", "dns-01", "tls-alpn-01"]
    assert len({c["token"] for c in authz["challenges"]}) == 3
    by_ip = acme.post(acme.directory["newOrder"], {"identifiers": [{"type": "ip", "value": "127.0.0.1"}]})
    ip_authz = acme.post(by_ip.json()["authorizations"][0], None).json()
    assert [c["type"] for c in ip_authz["challenges"]] == ["http-01", "tls-alpn-01"]
    refused = acme.new_order("*.example.test")
    assert refused.json()["type"] == ERR + "rejectedIdentifier"


def test_dns01_valid_wrong_and_missing(acme_app: tuple[TestClient, Any], challenge_dns: ChallengeDns) -> None:
    client, _ = acme_app
    acme = _account(client)
    name = _unique("dns")
    created = acme.new_order(name)
    challenge = _challenge(acme, created.json()["authorizations"][0], "dns-01")
    record = f"_acme-challenge.{name}."
    challenge_dns.set_txt(record, txt_value(_key_authorization(acme, challenge)))
    try:
        assert _answer(acme, challenge)["status"] == "valid"
    finally:
        challenge_dns.clear_txt(record)
    assert acme.post(created.headers["Location"], None).json()["status"] == "ready"

    wrong_name = _unique("dns-wrong")
    wrong = acme.new_order(wrong_name)
    challenge = _challenge(acme, wrong.json()["authorizations"][0], "dns-01")
    challenge_dns.set_txt(f"_acme-challenge.{wrong_name}.", txt_value("not-the-key-authorization"))
    result = _answer(acme, challenge)
    assert result["status"] == "invalid"
    assert result["error"]["type"] == ERR + "incorrectResponse"
    assert acme.post(wrong.headers["Location"], None).json()["status"] == "invalid"

    missing = acme.new_order(_unique("dns-missing"))
    result = _answer(acme, _challenge(acme, missing.json()["authorizations"][0], "dns-01"))
    assert result["status"] == "invalid"
    assert result["error"]["type"] == ERR + "unauthorized"


def test_tls_alpn01_valid_and_wrong_extension(
    acme_app: tuple[TestClient, Any], alpn: TlsAlpnResponder
) -> None:
    client, _ = acme_app
    acme = _account(client)
    name = _unique("alpn")
    created = acme.new_order(name)
    challenge = _challenge(acme, created.json()["authorizations"][0], "tls-alpn-01")
    alpn.serve(name, acme_identifier(_key_authorization(acme, challenge)))
    assert _answer(acme, challenge)["status"] == "valid"
    assert acme.post(created.headers["Location"], None).json()["status"] == "ready"

    cases = [
        ("alpn-digest", acme_identifier("wrong.key-authorization"), True, "incorrectResponse"),
        ("alpn-noncritical", None, False, "unauthorized"),
        ("alpn-none", None, True, "unauthorized"),
    ]
    for label, extension, critical, problem in cases:
        bad = _unique(label)
        order = acme.new_order(bad).json()
        challenge = _challenge(acme, order["authorizations"][0], "tls-alpn-01")
        if label == "alpn-noncritical":
            extension = acme_identifier(_key_authorization(acme, challenge))
        alpn.serve(bad, extension, critical=critical)
        result = _answer(acme, challenge)
        assert (result["status"], result["error"]["type"]) == ("invalid", ERR + problem), label

    unserved = acme.new_order(_unique("alpn-unserved")).json()
    result = _answer(acme, _challenge(acme, unserved["authorizations"][0], "tls-alpn-01"))
    assert result["error"]["type"] == ERR + "tls"


def test_tls_alpn01_for_an_ip_address(acme_app: tuple[TestClient, Any], alpn: TlsAlpnResponder) -> None:
    """RFC 8738 §6: the address is connected to with its reverse-mapping name as SNI and must present
    exactly that address as an iPAddress SAN."""
    client, _ = acme_app
    acme = _account(client)
    by_ip = {"identifiers": [{"type": "ip", "value": "127.0.0.1"}]}
    created = acme.post(acme.directory["newOrder"], by_ip)
    challenge = _challenge(acme, created.json()["authorizations"][0], "tls-alpn-01")
    alpn.serve("127.0.0.1", acme_identifier(_key_authorization(acme, challenge)))
    assert _answer(acme, challenge)["status"] == "valid"
    assert acme.post(created.headers["Location"], None).json()["status"] == "ready"

    for san in (x509.DNSName("127.0.0.1"), x509.IPAddress(ipaddress.ip_address("127.0.0.2"))):
        acme = _account(client)  # a fresh account: the first one's proof would be reused
        order = acme.post(acme.directory["newOrder"], by_ip).json()
        challenge = _challenge(acme, order["authorizations"][0], "tls-alpn-01")
        alpn.serve("127.0.0.1", acme_identifier(_key_authorization(acme, challenge)), san=san)
        result = _answer(acme, challenge)
        assert (result["status"], result["error"]["type"]) == ("invalid", ERR + "unauthorized"), san
        assert "127.0.0.1" in result["error"]["detail"]


def test_wildcard_order_via_dns01(acme_app: tuple[TestClient, Any], challenge_dns: ChallengeDns) -> None:
    client, services = acme_app
    base = _unique("wild")
    rules = DEFAULT_RULES | {"san_patterns": [f"*.{base}"], "acme": {"allow_wildcards": True}}
    assert client.portal is not None
    client.portal.call(
        lambda: services.profiles.create(values={"name": "wild", "rules": rules}, actor=SYSTEM)
    )
    acme = _account(client, "wild")
    outside = acme.new_order(f"*.other-{base}")
    assert outside.json()["type"] == ERR + "rejectedIdentifier"
    created = acme.new_order(f"*.{base}")
    assert created.status_code == 201, created.text
    authz = acme.post(created.json()["authorizations"][0], None).json()
    assert authz["wildcard"] is True and authz["identifier"] == {"type": "dns", "value": base}
    assert [c["type"] for c in authz["challenges"]] == ["dns-01"]
    challenge = authz["challenges"][0]
    record = f"_acme-challenge.{base}."
    challenge_dns.set_txt(record, txt_value(_key_authorization(acme, challenge)))
    try:
        assert _answer(acme, challenge)["status"] == "valid"
    finally:
        challenge_dns.clear_txt(record)
    key = ec.generate_private_key(ec.SECP256R1())
    finalized = acme.post(created.json()["finalize"], {"csr": b64url(_der(csr_pem(f"*.{base}", key=key)))})
    assert finalized.status_code == 200, finalized.text
    chain = acme.post(finalized.json()["certificate"], None).content
    leaf = x509.load_pem_x509_certificates(chain)[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [f"*.{base}"]
