"""What a certificate request asks to certify: names and a public key, from a CSR or generated here."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

from certctl.domain.profiles import Profile
from certctl.errors import BadCsr, PolicyViolation, ValidationFailed
from certctl.pki.csr import ParsedCsr, parse_csr
from certctl.pki.errors import CsrError, PkiError
from certctl.pki.keys import KeyInfo, PrivateKey, describe_public_key, generate_private_key

if TYPE_CHECKING:
    from certctl.services.issuance import IssueRequest


@dataclass(frozen=True)
class RequestedSubject:
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    key_info: KeyInfo
    public_key: Any
    private_key: PrivateKey | None
    csr_pem: str | None


def split_sans(sans: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DNS names and IP addresses from one list, normalised (lower-case names, canonical IPs)."""
    dns: list[str] = []
    ips: list[str] = []
    for value in sans:
        text = value.strip()
        try:
            ips.append(str(ipaddress.ip_address(text)))
        except ValueError:
            if not text or len(text) > 253 or any(c.isspace() for c in text):
                raise ValidationFailed(f"{value!r} is not a DNS name or IP address") from None
            dns.append(text.lower().rstrip("."))
    return tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(ips))


def requested_subject(
    profile: Profile, request: IssueRequest, *, names_from_record: bool = False
) -> RequestedSubject:
    """The subject to certify: from the CSR (names checked against the request) or a fresh server-side key."""
    dns_names, ip_addresses = split_sans(request.sans)
    if request.csr_pem is not None:
        parsed: ParsedCsr
        if request.parsed_csr is not None:
            parsed = request.parsed_csr
        else:
            try:
                parsed = parse_csr(request.csr_pem)
            except CsrError as exc:
                raise BadCsr(exc.message) from exc
        csr_dns, csr_ips = parsed.dns_names, parsed.ip_addresses
        if parsed.common_name and parsed.common_name.lower() not in csr_dns and not csr_ips:
            csr_dns = (parsed.common_name.lower(), *csr_dns)
        asked = not names_from_record and (dns_names or ip_addresses)
        if asked and (set(dns_names) != set(csr_dns) or set(ip_addresses) != set(csr_ips)):
            raise BadCsr("the names in the request differ from the names in the CSR")
        if names_from_record:
            csr_dns, csr_ips = dns_names or csr_dns, ip_addresses or csr_ips
        return RequestedSubject(
            common_name=parsed.common_name or request.common_name,
            dns_names=csr_dns,
            ip_addresses=csr_ips,
            key_info=parsed.key,
            public_key=parsed.public_key,
            private_key=None,
            csr_pem=request.csr_pem
            if request.parsed_csr is not None
            else parsed.csr.public_bytes(serialization.Encoding.PEM).decode(),
        )
    if not profile.allow_server_keygen:
        raise PolicyViolation(f"profile {profile.name!r} requires a CSR: server-side key generation is off")
    common_name = request.common_name
    if common_name and not dns_names and not ip_addresses:
        dns_names = (common_name.lower(),)
    key_type = request.key_type or default_key_type(profile)
    try:
        private_key = generate_private_key(key_type)
    except PkiError as exc:
        raise ValidationFailed(exc.message) from exc
    public_key = private_key.public_key()
    return RequestedSubject(
        common_name=common_name,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        key_info=describe_public_key(public_key),
        public_key=public_key,
        private_key=private_key,
        csr_pem=None,
    )


def default_key_type(profile: Profile) -> str:
    if "ECDSA" in profile.allowed_key_algorithms:
        return "ecdsa-p384" if profile.min_ecdsa_bits > 256 else "ecdsa-p256"
    if "RSA" in profile.allowed_key_algorithms:
        return f"rsa-{max(2048, profile.min_rsa_bits)}"
    return "ed25519"


def key_type_of(version: dict[str, Any] | None) -> str | None:
    if version is None:
        return None
    algorithm, size = version["key_algorithm"], version["key_size"]
    if algorithm == "ECDSA":
        return f"ecdsa-p{size}"
    if algorithm == "RSA":
        return f"rsa-{size}"
    return "ed25519"
