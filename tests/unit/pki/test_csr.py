"""Untrusted CSR parsing and CSR building in certctl.pki.csr."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from certctl.pki.csr import MAX_CSR_BYTES, build_csr, parse_csr
from certctl.pki.errors import CsrError
from certctl.pki.keys import KeyInfo

P256 = ec.generate_private_key(ec.SECP256R1())
RSA2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def _pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def test_parse_pem_normalises_names() -> None:
    csr = build_csr(
        P256,
        common_name="WWW.Example.com",
        dns_names=("WWW.Example.COM", "api.example.com", "www.example.com"),
        ip_addresses=("2001:DB8:0:0::1", "192.0.2.7"),
        emails=("Ops@Example.COM",),
    )
    parsed = parse_csr(_pem(csr))
    assert parsed.csr == csr
    assert parsed.common_name == "WWW.Example.com"
    assert parsed.dns_names == ("www.example.com", "api.example.com")
    assert parsed.ip_addresses == ("2001:db8::1", "192.0.2.7")
    assert parsed.emails == ("Ops@example.com",)
    assert parsed.key == KeyInfo("ECDSA", 256, "ecdsa-p256")
    assert parsed.public_key == P256.public_key()


def test_parse_der_and_str_inputs() -> None:
    csr = build_csr(RSA2048, common_name="host.example.com", dns_names=("host.example.com",))
    from_der = parse_csr(_der(csr))
    from_str = parse_csr(_pem(csr).decode("ascii"))
    assert from_der.dns_names == from_str.dns_names == ("host.example.com",)
    assert from_der.key == KeyInfo("RSA", 2048, "rsa-2048")


def test_ed25519_and_p384_csrs_are_accepted() -> None:
    ed = parse_csr(_pem(build_csr(ed25519.Ed25519PrivateKey.generate(), common_name="ed.example.com")))
    assert ed.key == KeyInfo("Ed25519", 256, "ed25519")
    assert ed.dns_names == ()
    p384 = parse_csr(_pem(build_csr(ec.generate_private_key(ec.SECP384R1()), common_name="x")))
    assert p384.key.spec == "ecdsa-p384"


def test_san_only_csr_has_critical_san_and_no_cn() -> None:
    csr = build_csr(P256, common_name=None, dns_names=("a.example.com",))
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    parsed = parse_csr(_der(csr))
    assert parsed.common_name is None
    assert parsed.dns_names == ("a.example.com",)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        "   \n",
        b"garbage",
        b"\x30\x03\x02\x01\x00",
        b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64!!\n-----END CERTIFICATE REQUEST-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
    ],
)
def test_garbage_is_refused(data: bytes | str) -> None:
    with pytest.raises(CsrError) as info:
        parse_csr(data)
    assert info.value.message


def test_other_pem_types_are_refused() -> None:
    pem = P256.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(CsrError, match="CERTIFICATE REQUEST"):
        parse_csr(pem)


def test_oversized_input_is_refused() -> None:
    pem = _pem(build_csr(P256, common_name="x"))
    padded = pem + b"\n" * (MAX_CSR_BYTES + 1 - len(pem))
    with pytest.raises(CsrError, match="64 KiB"):
        parse_csr(padded)
    with pytest.raises(CsrError, match="64 KiB"):
        parse_csr(padded.decode("ascii"))


@pytest.mark.parametrize("key", [P256, RSA2048, ed25519.Ed25519PrivateKey.generate()])
def test_tampered_signature_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    der = bytearray(_der(build_csr(key, common_name="www.example.com")))
    der[-3] ^= 0x01  # inside the signature BIT STRING at the end of the DER
    with pytest.raises(CsrError, match="signature does not verify"):
        parse_csr(bytes(der))


def test_tampered_subject_is_refused() -> None:
    der = _der(build_csr(P256, common_name="aaaa.example.com"))
    forged = der.replace(b"aaaa.example.com", b"bbbb.example.com")
    assert forged != der
    with pytest.raises(CsrError, match="signature does not verify"):
        parse_csr(forged)


def test_dsa_key_csr_is_refused() -> None:
    key = dsa.generate_private_key(key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dsa.example.com")]))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CsrError, match="DSA"):
        parse_csr(_pem(csr))


def test_unsupported_curve_csr_is_refused() -> None:
    csr = build_csr(P256, common_name="x")  # build_csr itself refuses P-521, so use the raw builder
    key = ec.generate_private_key(ec.SECP521R1())
    raw = x509.CertificateSigningRequestBuilder().subject_name(csr.subject).sign(key, hashes.SHA512())
    with pytest.raises(CsrError, match="secp521r1"):
        parse_csr(_der(raw))


def test_more_than_one_common_name_is_refused() -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "a.example.com"),
            x509.NameAttribute(NameOID.COMMON_NAME, "b.example.com"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(P256, hashes.SHA256())
    with pytest.raises(CsrError, match="more than one common name"):
        parse_csr(_pem(csr))


def test_unsupported_san_type_is_refused() -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://example.org/x")]),
            critical=True,
        )
        .sign(P256, hashes.SHA256())
    )
    with pytest.raises(CsrError, match="UniformResourceIdentifier"):
        parse_csr(_pem(csr))


def test_build_csr_input_errors() -> None:
    with pytest.raises(CsrError, match="common name or at least one"):
        build_csr(P256, common_name=None)
    with pytest.raises(CsrError, match="not a valid IP address"):
        build_csr(P256, common_name="x", ip_addresses=("300.1.1.1",))


def test_build_csr_signature_hash() -> None:
    assert isinstance(build_csr(RSA2048, common_name="x").signature_hash_algorithm, hashes.SHA256)
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert isinstance(build_csr(p384, common_name="x").signature_hash_algorithm, hashes.SHA384)
    ed = build_csr(ed25519.Ed25519PrivateKey.generate(), common_name="x")
    assert ed.signature_hash_algorithm is None
