"""The tls-alpn-01 check (RFC 8737): a TLS handshake that only an acme-tls/1 responder completes.

The server connects to ``<name>:<port>`` with SNI = the name and ALPN ``acme-tls/1`` only, and without
verifying the chain: the proof is the self-signed certificate itself. It must name exactly the validated
name in its subjectAltName and carry the critical id-pe-acmeIdentifier extension whose value is an ASN.1
OCTET STRING holding SHA-256 of the key authorization (RFC 8737 §3).

An IP identifier (RFC 8738 §6) is connected to at that address, with the address's reverse-mapping name
as SNI (``in-addr.arpa`` / ``ip6.arpa``: SNI carries no addresses), and its certificate must hold exactly
that address as an iPAddress subjectAltName.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import ssl

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from certctl.services.acme_errors import AcmeError

ALPN = "acme-tls/1"
ACME_IDENTIFIER = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
"""id-pe-acmeIdentifier (RFC 8737 §6.1)."""


def acme_identifier_value(key_authorization: str) -> bytes:
    """The DER of the extension's value: OCTET STRING (0x04, length 32) of SHA-256(key authorization)."""
    return b"\x04\x20" + hashlib.sha256(key_authorization.encode()).digest()


def _client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the self-signed challenge certificate is the proof, not a chain
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ALPN])
    return context


async def _handshake(*, address: str, port: int, name: str, wait_seconds: float) -> bytes:
    """The DER certificate the responder presented for ``name``, after checking it negotiated
    acme-tls/1."""
    target = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=_client_context(), server_hostname=sni_name(name)),
            timeout=wait_seconds,
        )
    except ssl.SSLError as exc:
        raise AcmeError("tls", f"TLS handshake with {target} failed: {exc.reason or 'error'}") from None
    except (OSError, TimeoutError) as exc:
        raise AcmeError("connection", f"could not connect to {target}: {type(exc).__name__}") from None
    try:
        tls = writer.get_extra_info("ssl_object")
        if tls is None or tls.selected_alpn_protocol() != ALPN:
            raise AcmeError("tls", f"{target} did not negotiate the {ALPN} protocol")
        der = tls.getpeercert(binary_form=True)
        if not der:
            raise AcmeError("tls", f"{target} presented no certificate")
        return bytes(der)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout=wait_seconds)


def sni_name(name: str) -> str:
    """The SNI for a validated identifier: the name itself, or an IP address's reverse-mapping name."""
    try:
        return ipaddress.ip_address(name).reverse_pointer
    except ValueError:
        return name


def _names_exactly(sans: x509.SubjectAlternativeName, name: str) -> bool:
    if len(sans) != 1:
        return False
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return [value.lower() for value in sans.get_values_for_type(x509.DNSName)] == [name]
    return sans.get_values_for_type(x509.IPAddress) == [address]


def check_certificate(der: bytes, *, name: str, key_authorization: str) -> None:
    """RFC 8737 §3: the SAN is exactly ``name`` (an IP address as an iPAddress name, RFC 8738 §6);
    id-pe-acmeIdentifier is critical and holds the digest."""
    try:
        certificate = x509.load_der_x509_certificate(der)
        extensions = certificate.extensions
    except ValueError:
        raise AcmeError("tls", f"the certificate presented for {name} does not parse") from None
    try:
        sans = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise AcmeError("unauthorized", f"the certificate presented for {name} has no SAN") from None
    if not _names_exactly(sans, name):
        raise AcmeError(
            "unauthorized", f"the certificate presented for {name} must name exactly {name} in its SAN"
        )
    try:
        found = extensions.get_extension_for_oid(ACME_IDENTIFIER)
    except x509.ExtensionNotFound:
        raise AcmeError(
            "unauthorized", f"the certificate presented for {name} lacks the acmeIdentifier extension"
        ) from None
    if not found.critical:
        raise AcmeError("unauthorized", f"the acmeIdentifier extension presented for {name} is not critical")
    value = found.value.value if isinstance(found.value, x509.UnrecognizedExtension) else b""
    if not hmac.compare_digest(value, acme_identifier_value(key_authorization)):
        raise AcmeError(
            "incorrectResponse", f"the acmeIdentifier extension presented for {name} holds the wrong digest"
        )


async def check_tls_alpn01(
    *, name: str, addresses: list[str], port: int, key_authorization: str, wait_seconds: float
) -> None:
    """Validate against the first address that accepts a connection; raise :class:`AcmeError` if none
    proves the key authorization."""
    last: AcmeError | None = None
    for address in addresses:
        try:
            der = await _handshake(address=address, port=port, name=name, wait_seconds=wait_seconds)
        except AcmeError as exc:
            if exc.kind != "connection":
                raise
            last = exc
            continue
        check_certificate(der, name=name, key_authorization=key_authorization)
        return
    raise last or AcmeError("connection", f"no address of {name} could be reached")
