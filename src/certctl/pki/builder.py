"""Certificate issuance following the RFC 5280 §4 certificate profile.

Three builders cover the hierarchy certctl manages: :func:`build_self_signed_ca` for
roots, :func:`build_subordinate_ca` for intermediate and issuing CAs, and
:func:`build_leaf` for end-entity certificates.  The builders refuse to produce
certificates that could never validate: an issuer that is not a CA, a path length the
issuer forbids (RFC 5280 §4.2.1.9), a validity period outliving the issuer, or names
outside the issuer's name constraints (RFC 5280 §4.2.1.10).

:func:`build_leaf` runs once per issuance, so everything derived from the issuing CA
certificate (authority key identifier, constraints, expiry) is parsed once and cached.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from certctl.pki.errors import ChainError, KeyPolicyError, NameConstraintError, PkiError
from certctl.pki.keys import PrivateKey, PublicKey, as_public_key, signature_hash_for
from certctl.pki.names import NameConstraints, check_constraints_within, check_names, inherit_constraints

__all__ = [
    "EKU_OIDS",
    "Subject",
    "build_leaf",
    "build_self_signed_ca",
    "build_subordinate_ca",
    "new_serial",
    "signature_hash_for",
]

EKU_OIDS: Mapping[str, x509.ObjectIdentifier] = MappingProxyType(
    {
        "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
        "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
        "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
        "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
        "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
        "ocspSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
    }
)

_E = TypeVar("_E", bound=x509.ExtensionType)
_SERIAL_BITS = 159
_MAX_COMMON_NAME = 64
# A subject CN that looks like a host name (at least one dot, a letter, no spaces or colons).
_HOST_LIKE = re.compile(r"(?=.*[a-z])[a-z0-9*_-]+(?:\.[a-z0-9_-]+)+\.?", re.IGNORECASE)


def _key_usage(*, ca: bool, rsa_key: bool) -> x509.KeyUsage:
    """keyUsage (RFC 5280 §4.2.1.3): CAs sign certificates and CRLs; RSA leaves may also encipher keys."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa_key and not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


_CA_KEY_USAGE = _key_usage(ca=True, rsa_key=False)
_LEAF_KEY_USAGE = {rsa_key: _key_usage(ca=False, rsa_key=rsa_key) for rsa_key in (False, True)}
_LEAF_BASIC_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)
_MUST_STAPLE = x509.TLSFeature([x509.TLSFeatureType.status_request])


def new_serial() -> int:
    """A fresh positive serial number with 159 random bits (RFC 5280 §4.1.2.2: at most 20 octets)."""
    while True:
        serial = secrets.randbits(_SERIAL_BITS)
        if serial:
            return serial


@dataclass(frozen=True)
class Subject:
    """A CA distinguished name (RFC 5280 §4.1.2.6) with the attributes certctl lets operators set."""

    common_name: str
    organization: str | None = None
    organizational_unit: str | None = None
    country: str | None = None

    def __post_init__(self) -> None:
        if not self.common_name.strip():
            raise PkiError("subject common name must not be empty")
        if self.country is not None and (len(self.country) != 2 or not self.country.isalpha()):
            raise PkiError("subject country must be a two-letter ISO 3166 code")

    def to_x509_name(self) -> x509.Name:
        """The X.501 Name, most significant attribute first (C, O, OU, CN)."""
        pairs = (
            (NameOID.COUNTRY_NAME, self.country.upper() if self.country else None),
            (NameOID.ORGANIZATION_NAME, self.organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
            (NameOID.COMMON_NAME, self.common_name),
        )
        return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs if value])


@dataclass(frozen=True)
class _Issuer:
    """What issuance needs from a CA certificate, parsed once (see :func:`_issuer_of`)."""

    subject: x509.Name
    public_key: PublicKey
    not_after: datetime
    path_length: int | None
    authority_key_id: x509.AuthorityKeyIdentifier
    name_constraints: NameConstraints | None


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


@functools.lru_cache(maxsize=128)
def _issuer_of(cert: x509.Certificate) -> _Issuer:
    """Parse and check an issuing CA certificate; cached because it is pure and on the hot path."""
    basic = _extension(cert, x509.BasicConstraints)
    if basic is None or not basic.ca:
        raise ChainError("issuer certificate is not a CA (basicConstraints cA is not set)")
    usage = _extension(cert, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        raise ChainError("issuer certificate's keyUsage does not allow certificate signing")
    public_key = as_public_key(cert.public_key())
    ski = _extension(cert, x509.SubjectKeyIdentifier)
    if ski is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    else:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    nc_ext = _extension(cert, x509.NameConstraints)
    try:
        constraints = (
            None if nc_ext is None else NameConstraints.from_extension(nc_ext, ignore_unsupported=True)
        )
    except NameConstraintError as exc:
        raise ChainError(f"issuer name constraints cannot be interpreted: {exc.message}") from None
    return _Issuer(
        subject=cert.subject,
        public_key=public_key,
        not_after=cert.not_valid_after_utc,
        path_length=basic.path_length,
        authority_key_id=aki,
        name_constraints=None if constraints is None or constraints.is_empty else constraints,
    )


def _check_validity(not_before: datetime, not_after: datetime, issuer: _Issuer | None) -> None:
    """Validity must be timezone-aware, non-empty and end no later than the issuer (RFC 5280 §4.1.2.5)."""
    if not_before.utcoffset() is None or not_after.utcoffset() is None:
        raise PkiError("validity times must be timezone-aware (UTC)")
    if not_after <= not_before:
        raise PkiError("not_after must be later than not_before")
    if issuer is not None and not_after > issuer.not_after:
        raise ChainError(
            f"requested expiry {not_after.isoformat()} is after the issuer's expiry "
            f"{issuer.not_after.isoformat()}"
        )


def _check_issuer_key(issuer_key: PrivateKey, issuer: _Issuer) -> None:
    if issuer_key.public_key() != issuer.public_key:
        raise ChainError("issuer private key does not match the issuer certificate")


def _url_extensions(
    builder: x509.CertificateBuilder, crl_url: str | None, ca_issuers_url: str | None, ocsp_url: str | None
) -> x509.CertificateBuilder:
    """CRL distribution point (RFC 5280 §4.2.1.13) and authority info access (§4.2.2.1)."""
    if crl_url:
        uri = x509.UniformResourceIdentifier(crl_url)
        point = x509.DistributionPoint(full_name=[uri], relative_name=None, reasons=None, crl_issuer=None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    access = [
        x509.AccessDescription(method, x509.UniformResourceIdentifier(url))
        for method, url in (
            (AuthorityInformationAccessOID.OCSP, ocsp_url),
            (AuthorityInformationAccessOID.CA_ISSUERS, ca_issuers_url),
        )
        if url
    ]
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    return builder


def _ca_builder(
    *,
    subject: Subject,
    issuer_name: x509.Name,
    public_key: PublicKey,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None,
    name_constraints: NameConstraints | None,
) -> tuple[x509.CertificateBuilder, x509.SubjectKeyIdentifier]:
    """Fields and extensions every CA certificate carries (RFC 5280 §4.2.1.2, §4.2.1.3, §4.2.1.9)."""
    if path_length is not None and path_length < 0:
        raise PkiError("path length must be zero or positive")
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject.to_x509_name())
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(new_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(ski, critical=False)
    )
    extension = name_constraints.to_extension() if name_constraints is not None else None
    if extension is not None:
        builder = builder.add_extension(extension, critical=True)
    return builder, ski


def build_self_signed_ca(
    *,
    key: PrivateKey,
    subject: Subject,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None,
    name_constraints: NameConstraints | None,
) -> x509.Certificate:
    """A self-signed root CA certificate; the authority key identifier equals the subject key identifier."""
    _check_validity(not_before, not_after, None)
    builder, ski = _ca_builder(
        subject=subject,
        issuer_name=subject.to_x509_name(),
        public_key=as_public_key(key),
        not_before=not_before,
        not_after=not_after,
        path_length=path_length,
        name_constraints=name_constraints,
    )
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    return builder.add_extension(aki, critical=False).sign(key, signature_hash_for(key))


def build_subordinate_ca(
    *,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    public_key: PublicKey,
    subject: Subject,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None,
    name_constraints: NameConstraints | None,
    crl_url: str | None,
    ca_issuers_url: str | None,
) -> x509.Certificate:
    """An intermediate CA certificate signed by ``issuer_cert``/``issuer_key``.

    Raises :class:`ChainError` when the issuer is not a CA, its pathLenConstraint leaves
    no room for this CA or for the requested ``path_length`` (RFC 5280 §4.2.1.9), the
    validity outlives the issuer, or the requested permitted subtrees are wider than the
    issuer's (RFC 5280 §4.2.1.10).  The issuer's DNS/IP/email constraints are merged into
    the child's (see :func:`~certctl.pki.names.inherit_constraints`), so the issuing CA
    alone is enough for :func:`build_leaf` to enforce the whole hierarchy's limits.
    """
    issuer = _issuer_of(issuer_cert)
    _check_issuer_key(issuer_key, issuer)
    _check_validity(not_before, not_after, issuer)
    if issuer.path_length is not None:
        if issuer.path_length == 0:
            raise ChainError("issuer's pathLenConstraint is 0: it cannot issue subordinate CAs")
        allowed = issuer.path_length - 1
        if path_length is None or path_length > allowed:
            wanted = "unlimited" if path_length is None else str(path_length)
            raise ChainError(f"requested path length {wanted} exceeds the issuer's limit of {allowed}")
    if name_constraints is not None and issuer.name_constraints is not None:
        problems = check_constraints_within(name_constraints, issuer.name_constraints)
        if problems:
            raise ChainError("; ".join(problems))
    name_constraints = inherit_constraints(name_constraints, issuer.name_constraints)
    builder, _ = _ca_builder(
        subject=subject,
        issuer_name=issuer.subject,
        public_key=as_public_key(public_key),
        not_before=not_before,
        not_after=not_after,
        path_length=path_length,
        name_constraints=name_constraints,
    )
    builder = builder.add_extension(issuer.authority_key_id, critical=False)
    builder = _url_extensions(builder, crl_url, ca_issuers_url, None)
    return builder.sign(issuer_key, signature_hash_for(issuer_key))


def _subject_alt_names(
    dns_names: Sequence[str], ip_addresses: Sequence[str], emails: Sequence[str]
) -> list[x509.GeneralName]:
    try:
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names.extend(x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses)
        names.extend(x509.RFC822Name(email) for email in emails)
    except ValueError as exc:
        raise PkiError(f"invalid subject alternative name: {exc}") from None
    return names


@functools.lru_cache(maxsize=64)
def _eku_extension(ekus: tuple[str, ...]) -> x509.ExtendedKeyUsage | None:
    """extKeyUsage (RFC 5280 §4.2.1.12) for EKU names; none when the tuple is empty."""
    try:
        usages = [EKU_OIDS[name] for name in dict.fromkeys(ekus)]
    except KeyError as exc:
        raise KeyPolicyError(f"unknown extended key usage {exc.args[0]!r}") from None
    return x509.ExtendedKeyUsage(usages) if usages else None


def build_leaf(
    *,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    public_key: PublicKey,
    common_name: str | None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    emails: Sequence[str] = (),
    not_before: datetime,
    not_after: datetime,
    ekus: tuple[str, ...] = ("serverAuth",),
    must_staple: bool = False,
    crl_url: str | None = None,
    ca_issuers_url: str | None = None,
    ocsp_url: str | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    """An end-entity certificate for ``public_key`` signed by the issuing CA.

    Carries basicConstraints cA=FALSE and keyUsage (digitalSignature, plus
    keyEncipherment for RSA keys) as critical extensions, the EKUs named in ``ekus``
    (keys of :data:`EKU_OIDS`), subject/authority key identifiers, the subjectAltName
    (critical when there is no subject CN, RFC 5280 §4.2.1.6), optional CRL/AIA URLs and
    the RFC 7633 TLS feature ``status_request`` when ``must_staple``.

    Raises :class:`ChainError` for an unusable issuer or a validity beyond the issuer's,
    :class:`NameConstraintError` when a name (or a host-like CN) violates the issuer's
    name constraints, :class:`KeyPolicyError` for unknown EKUs or key types, and
    :class:`PkiError` for other invalid input.
    """
    issuer = _issuer_of(issuer_cert)
    _check_issuer_key(issuer_key, issuer)
    _check_validity(not_before, not_after, issuer)
    subject_key = as_public_key(public_key)
    eku_extension = _eku_extension(ekus)
    if common_name is not None and not 0 < len(common_name) <= _MAX_COMMON_NAME:
        raise PkiError(f"common name must be 1-{_MAX_COMMON_NAME} characters (RFC 5280 ub-common-name)")
    if serial is not None and not 0 < serial < 1 << _SERIAL_BITS:
        raise PkiError("serial number must be positive and at most 159 bits")
    if issuer.name_constraints is not None:
        host_like_cn = [common_name] if common_name and _HOST_LIKE.fullmatch(common_name) else []
        problems = check_names(
            issuer.name_constraints,
            dns_names=[*dns_names, *host_like_cn],
            ip_addresses=ip_addresses,
            emails=emails,
        )
        if problems:
            raise NameConstraintError("; ".join(problems))
    names = _subject_alt_names(dns_names, ip_addresses, emails)
    if common_name is None and not names:
        raise PkiError("a certificate needs a common name or at least one subject alternative name")
    subject = x509.Name([] if common_name is None else [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(subject_key)
        .serial_number(new_serial() if serial is None else serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_LEAF_BASIC_CONSTRAINTS, critical=True)
        .add_extension(_LEAF_KEY_USAGE[isinstance(subject_key, rsa.RSAPublicKey)], critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
        .add_extension(issuer.authority_key_id, critical=False)
    )
    if eku_extension is not None:
        builder = builder.add_extension(eku_extension, critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=common_name is None)
    builder = _url_extensions(builder, crl_url, ca_issuers_url, ocsp_url)
    if must_staple:
        builder = builder.add_extension(_MUST_STAPLE, critical=False)
    return builder.sign(issuer_key, signature_hash_for(issuer_key))
