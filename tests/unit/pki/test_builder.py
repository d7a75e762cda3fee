"""Certificate building (RFC 5280 profile) in certctl.pki.builder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from certctl.pki.builder import (
    EKU_OIDS,
    Subject,
    build_leaf,
    build_self_signed_ca,
    build_subordinate_ca,
    new_serial,
    signature_hash_for,
)
from certctl.pki.errors import ChainError, KeyPolicyError, NameConstraintError, PkiError
from certctl.pki.keys import PrivateKey, generate_private_key
from certctl.pki.names import NameConstraints

E = TypeVar("E", bound=x509.ExtensionType)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


def _root(
    key: PrivateKey | None = None,
    *,
    path_length: int | None = None,
    constraints: NameConstraints | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    key = key or generate_private_key("ecdsa-p256")
    cert = build_self_signed_ca(
        key=key,
        subject=Subject(common_name="Test Root", organization="certctl tests", country="de"),
        not_before=NOW,
        not_after=NOW + 10 * YEAR,
        path_length=path_length,
        name_constraints=constraints,
    )
    return cert, key


def _sub(
    issuer: tuple[x509.Certificate, PrivateKey],
    *,
    path_length: int | None = 0,
    constraints: NameConstraints | None = None,
    not_after: datetime = NOW + 5 * YEAR,
) -> tuple[x509.Certificate, PrivateKey]:
    key = generate_private_key("ecdsa-p256")
    cert = build_subordinate_ca(
        issuer_cert=issuer[0],
        issuer_key=issuer[1],
        public_key=key.public_key(),
        subject=Subject(common_name="Test Sub"),
        not_before=NOW,
        not_after=not_after,
        path_length=path_length,
        name_constraints=constraints,
        crl_url="http://pki.example.com/root.crl",
        ca_issuers_url="http://pki.example.com/root.crt",
    )
    return cert, key


def _ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def test_new_serial_is_positive_159_bits_and_random() -> None:
    serials = {new_serial() for _ in range(2000)}
    assert len(serials) == 2000
    assert all(0 < s < 2**159 for s in serials)
    assert max(s.bit_length() for s in serials) > 150


def test_subject_name_order_and_validation() -> None:
    name = Subject(
        common_name="CA", organization="Org", organizational_unit="Unit", country="us"
    ).to_x509_name()
    assert [attr.oid for attr in name] == [
        NameOID.COUNTRY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COMMON_NAME,
    ]
    assert name.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "US"
    assert Subject(common_name="Only CN").to_x509_name().rfc4514_string() == "CN=Only CN"
    with pytest.raises(PkiError):
        Subject(common_name=" ")
    with pytest.raises(PkiError):
        Subject(common_name="x", country="USA")


def test_root_ca_profile() -> None:
    constraints = NameConstraints(permitted_dns=("example.com",))
    root, _key = _root(path_length=2, constraints=constraints)
    assert root.subject == root.issuer
    basic = _ext(root, x509.BasicConstraints)
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=True, path_length=2)
    usage = _ext(root, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert usage.value.digital_signature
    ski = _ext(root, x509.SubjectKeyIdentifier).value
    aki = _ext(root, x509.AuthorityKeyIdentifier).value
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == ski.digest
    nc = _ext(root, x509.NameConstraints)
    assert nc.critical
    assert NameConstraints.from_extension(nc.value) == constraints
    root.verify_directly_issued_by(root)
    assert 0 < root.serial_number < 2**159
    assert isinstance(root.signature_hash_algorithm, hashes.SHA256)


def test_root_without_constraints_has_no_extension() -> None:
    root, _ = _root(constraints=NameConstraints())
    with pytest.raises(x509.ExtensionNotFound):
        root.extensions.get_extension_for_class(x509.NameConstraints)


def test_validity_input_errors() -> None:
    key = generate_private_key("ecdsa-p256")
    with pytest.raises(PkiError, match="timezone-aware"):
        build_self_signed_ca(
            key=key,
            subject=Subject(common_name="x"),
            not_before=datetime(2025, 1, 1),  # deliberately naive
            not_after=datetime(2026, 1, 1),
            path_length=None,
            name_constraints=None,
        )
    with pytest.raises(PkiError, match="later than"):
        build_self_signed_ca(
            key=key,
            subject=Subject(common_name="x"),
            not_before=NOW,
            not_after=NOW,
            path_length=None,
            name_constraints=None,
        )
    with pytest.raises(PkiError, match="path length"):
        _root(path_length=-1)


def test_subordinate_profile_and_urls() -> None:
    root = _root()
    sub, _ = _sub(root, path_length=0)
    sub.verify_directly_issued_by(root[0])
    assert _ext(sub, x509.BasicConstraints).value == x509.BasicConstraints(ca=True, path_length=0)
    aki = _ext(sub, x509.AuthorityKeyIdentifier).value
    root_ski = _ext(root[0], x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(root_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == root_ski.digest
    cdp = _ext(sub, x509.CRLDistributionPoints).value
    assert isinstance(cdp, x509.CRLDistributionPoints)
    assert cdp[0].full_name == [x509.UniformResourceIdentifier("http://pki.example.com/root.crl")]
    aia = _ext(sub, x509.AuthorityInformationAccess).value
    assert isinstance(aia, x509.AuthorityInformationAccess)
    assert [d.access_method for d in aia] == [AuthorityInformationAccessOID.CA_ISSUERS]


def test_path_length_zero_issuer_cannot_issue_cas() -> None:
    root = _root(path_length=0)
    with pytest.raises(ChainError, match="pathLenConstraint is 0"):
        _sub(root, path_length=0)


@pytest.mark.parametrize("requested", [None, 1, 2])
def test_requested_path_length_must_fit_under_issuer(requested: int | None) -> None:
    root = _root(path_length=1)
    with pytest.raises(ChainError, match="exceeds the issuer's limit of 0"):
        _sub(root, path_length=requested)


def test_path_length_exceeded_two_levels_down() -> None:
    root = _root(path_length=1)
    intermediate = _sub(root, path_length=0)
    with pytest.raises(ChainError, match="pathLenConstraint is 0"):
        _sub(intermediate, path_length=0)


def test_issuer_must_be_a_ca() -> None:
    root = _root()
    leaf_key = generate_private_key("ecdsa-p256")
    leaf = build_leaf(
        issuer_cert=root[0],
        issuer_key=root[1],
        public_key=leaf_key.public_key(),
        common_name="leaf.example.com",
        dns_names=("leaf.example.com",),
        not_before=NOW,
        not_after=NOW + YEAR,
    )
    with pytest.raises(ChainError, match="not a CA"):
        _sub((leaf, leaf_key))
    with pytest.raises(ChainError, match="not a CA"):
        build_leaf(
            issuer_cert=leaf,
            issuer_key=leaf_key,
            public_key=generate_private_key("ecdsa-p256").public_key(),
            common_name="x.example.com",
            not_before=NOW,
            not_after=NOW + YEAR,
        )


def test_issuer_key_must_match_issuer_certificate() -> None:
    root_cert, _ = _root()
    with pytest.raises(ChainError, match="does not match"):
        _sub((root_cert, generate_private_key("ecdsa-p256")))


def test_subordinate_not_after_beyond_issuer_is_refused() -> None:
    root = _root()
    with pytest.raises(ChainError, match="after the issuer's expiry"):
        _sub(root, not_after=NOW + 11 * YEAR)


def test_child_constraints_wider_than_parent_are_refused() -> None:
    root = _root(constraints=NameConstraints(permitted_dns=("example.com",)))
    with pytest.raises(ChainError, match=r"example\.org"):
        _sub(root, constraints=NameConstraints(permitted_dns=("example.org",)))
    with pytest.raises(ChainError, match="'com'"):
        _sub(root, constraints=NameConstraints(permitted_dns=("com",)))
    narrower, _ = _sub(root, constraints=NameConstraints(permitted_dns=("internal.example.com",)))
    nc = _ext(narrower, x509.NameConstraints).value
    assert NameConstraints.from_extension(nc) == NameConstraints(permitted_dns=("internal.example.com",))


def test_subordinate_inherits_parent_constraints() -> None:
    root = _root(constraints=NameConstraints(permitted_dns=("example.com",), excluded_ip=("10.0.0.0/8",)))
    sub, _ = _sub(root, constraints=None)
    inherited = NameConstraints.from_extension(_ext(sub, x509.NameConstraints).value)
    assert inherited == NameConstraints(permitted_dns=("example.com",), excluded_ip=("10.0.0.0/8",))


def _leaf(
    issuer: tuple[x509.Certificate, PrivateKey],
    public_key: object | None = None,
    **overrides: object,
) -> x509.Certificate:
    kwargs: dict[str, object] = {
        "issuer_cert": issuer[0],
        "issuer_key": issuer[1],
        "public_key": public_key or generate_private_key("ecdsa-p256").public_key(),
        "common_name": "www.example.com",
        "dns_names": ("www.example.com", "example.com"),
        "ip_addresses": ("192.0.2.10",),
        "emails": (),
        "not_before": NOW,
        "not_after": NOW + timedelta(days=90),
    }
    kwargs.update(overrides)
    return build_leaf(**kwargs)  # type: ignore[arg-type]


def test_leaf_profile() -> None:
    issuer = _sub(_root())
    leaf = _leaf(issuer)
    leaf.verify_directly_issued_by(issuer[0])
    assert leaf.subject.rfc4514_string() == "CN=www.example.com"
    assert leaf.issuer == issuer[0].subject
    basic = _ext(leaf, x509.BasicConstraints)
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=False, path_length=None)
    usage = _ext(leaf, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.digital_signature
    assert not usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    assert _ext(leaf, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    san = _ext(leaf, x509.SubjectAlternativeName)
    assert not san.critical
    assert isinstance(san.value, x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["www.example.com", "example.com"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]
    aki = _ext(leaf, x509.AuthorityKeyIdentifier).value
    issuer_ski = _ext(issuer[0], x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(issuer_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == issuer_ski.digest
    assert _ext(leaf, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        leaf.public_key()
    )
    for absent in (x509.CRLDistributionPoints, x509.AuthorityInformationAccess, x509.TLSFeature):
        with pytest.raises(x509.ExtensionNotFound):
            leaf.extensions.get_extension_for_class(absent)


def test_leaf_optional_extensions() -> None:
    issuer = _sub(_root())
    leaf = _leaf(
        issuer,
        ekus=("serverAuth", "clientAuth", "serverAuth"),
        must_staple=True,
        crl_url="http://pki.example.com/sub.crl",
        ca_issuers_url="http://pki.example.com/sub.crt",
        ocsp_url="http://ocsp.example.com",
        serial=12345,
    )
    assert leaf.serial_number == 12345
    assert list(_ext(leaf, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    assert list(_ext(leaf, x509.TLSFeature).value) == [x509.TLSFeatureType.status_request]
    aia = _ext(leaf, x509.AuthorityInformationAccess).value
    assert {d.access_method for d in aia} == {
        AuthorityInformationAccessOID.OCSP,
        AuthorityInformationAccessOID.CA_ISSUERS,
    }
    assert _ext(leaf, x509.CRLDistributionPoints).value is not None


def test_every_named_eku_maps_and_unknown_is_refused() -> None:
    issuer = _sub(_root())
    leaf = _leaf(issuer, ekus=tuple(EKU_OIDS))
    assert len(list(_ext(leaf, x509.ExtendedKeyUsage).value)) == 6
    no_eku = _leaf(issuer, ekus=())
    with pytest.raises(x509.ExtensionNotFound):
        no_eku.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    with pytest.raises(KeyPolicyError, match="anyExtendedKeyUsage"):
        _leaf(issuer, ekus=("serverAuth", "anyExtendedKeyUsage"))


def test_rsa_leaf_gets_key_encipherment() -> None:
    issuer = _sub(_root())
    leaf = _leaf(
        issuer, public_key=rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    )
    usage = _ext(leaf, x509.KeyUsage).value
    assert isinstance(usage, x509.KeyUsage)
    assert usage.digital_signature
    assert usage.key_encipherment


def test_san_is_critical_without_common_name() -> None:
    issuer = _sub(_root())
    leaf = _leaf(issuer, common_name=None)
    assert len(leaf.subject) == 0
    assert _ext(leaf, x509.SubjectAlternativeName).critical
    with pytest.raises(PkiError, match="at least one subject alternative name"):
        _leaf(issuer, common_name=None, dns_names=(), ip_addresses=())


@pytest.mark.parametrize(
    ("issuer_key", "expected"),
    [
        (ec.generate_private_key(ec.SECP256R1()), hashes.SHA256),
        (ec.generate_private_key(ec.SECP384R1()), hashes.SHA384),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), hashes.SHA256),
        (ed25519.Ed25519PrivateKey.generate(), None),
    ],
)
def test_signature_hash_follows_issuer_key(issuer_key: PrivateKey, expected: type | None) -> None:
    root = _root(issuer_key)
    leaf = _leaf(root)
    if expected is None:
        assert leaf.signature_hash_algorithm is None
        assert signature_hash_for(issuer_key) is None
    else:
        assert isinstance(leaf.signature_hash_algorithm, expected)
        assert isinstance(signature_hash_for(issuer_key), expected)
    leaf.verify_directly_issued_by(root[0])


def test_leaf_not_after_beyond_issuer_is_refused() -> None:
    issuer = _sub(_root(), not_after=NOW + YEAR)
    with pytest.raises(ChainError, match="after the issuer's expiry"):
        _leaf(issuer, not_after=NOW + YEAR + timedelta(seconds=1))
    assert _leaf(issuer, not_after=NOW + YEAR).not_valid_after_utc == NOW + YEAR


def test_leaf_names_outside_issuer_constraints_are_refused() -> None:
    root = _root(constraints=NameConstraints(permitted_dns=("example.com",), permitted_ip=("192.0.2.0/24",)))
    issuing = _sub(_sub(root, path_length=1), path_length=0)  # constraints inherited twice
    assert _leaf(issuing).subject.rfc4514_string() == "CN=www.example.com"
    with pytest.raises(NameConstraintError, match=r"www\.evil\.org"):
        _leaf(issuing, dns_names=("www.evil.org",))
    with pytest.raises(NameConstraintError, match=r"cn\.example\.org"):
        _leaf(issuing, common_name="cn.example.org", dns_names=("www.example.com",))
    with pytest.raises(NameConstraintError, match=r"198\.51\.100\.1"):
        _leaf(issuing, ip_addresses=("198.51.100.1",))


def test_leaf_input_errors() -> None:
    issuer = _sub(_root())
    with pytest.raises(PkiError, match="serial"):
        _leaf(issuer, serial=0)
    with pytest.raises(PkiError, match="serial"):
        _leaf(issuer, serial=2**159)
    with pytest.raises(PkiError, match="IP"):
        _leaf(issuer, ip_addresses=("not-an-ip",))
    with pytest.raises(PkiError, match="common name"):
        _leaf(issuer, common_name="a" * 65)
    with pytest.raises(KeyPolicyError):
        _leaf(issuer, public_key=ec.generate_private_key(ec.SECP521R1()).public_key())


def test_repeated_issuance_from_one_issuer_is_consistent() -> None:
    issuer = _sub(_root())
    leaves = [_leaf(issuer) for _ in range(5)]
    assert len({leaf.serial_number for leaf in leaves}) == 5
    for leaf in leaves:
        leaf.verify_directly_issued_by(issuer[0])
