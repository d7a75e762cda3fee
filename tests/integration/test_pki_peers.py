"""certctl.pki output checked by independent X.509 implementations: OpenSSL and GnuTLS certtool.

A three-level hierarchy (root -> name-constrained intermediate, pathlen 1 -> issuing CA,
pathlen 0) and a leaf must verify with both peers; a leaf for a name outside the
intermediate's constraints, forged with the raw cryptography builder, must be refused.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certctl.pki.builder import Subject, build_leaf, build_self_signed_ca, build_subordinate_ca
from certctl.pki.chain import chain_pem
from certctl.pki.export import cert_pem, to_pkcs12
from certctl.pki.keys import PrivateKey, generate_private_key
from certctl.pki.names import NameConstraints

# Peers validate against the real clock, so the hierarchy is built around "now".
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(hours=1)

Pair = tuple[x509.Certificate, PrivateKey]


class Hierarchy:
    """root -> intermediate (permitted example.com, pathlen 1) -> issuing (pathlen 0) -> leaf."""

    def __init__(self) -> None:
        root_key = generate_private_key("ecdsa-p384")
        root = build_self_signed_ca(
            key=root_key,
            subject=Subject(common_name="Peer Test Root", organization="certctl"),
            not_before=START,
            not_after=START + timedelta(days=3650),
            path_length=None,
            name_constraints=None,
        )
        self.root: Pair = (root, root_key)
        self.intermediate = self._sub(self.root, "Peer Test Intermediate", 1, ("example.com",))
        self.issuing = self._sub(self.intermediate, "Peer Test Issuing CA", 0, None)
        leaf_key = generate_private_key("rsa-2048")
        self.leaf = build_leaf(
            issuer_cert=self.issuing[0],
            issuer_key=self.issuing[1],
            public_key=leaf_key.public_key(),
            common_name="www.example.com",
            dns_names=("www.example.com",),
            not_before=START,
            not_after=START + timedelta(days=90),
            crl_url="http://pki.example.com/issuing.crl",
            ocsp_url="http://ocsp.example.com",
        )
        self.leaf_key = leaf_key

    @staticmethod
    def _sub(issuer: Pair, name: str, path_length: int, permitted: tuple[str, ...] | None) -> Pair:
        key = generate_private_key("ecdsa-p256")
        cert = build_subordinate_ca(
            issuer_cert=issuer[0],
            issuer_key=issuer[1],
            public_key=key.public_key(),
            subject=Subject(common_name=name, organization="certctl"),
            not_before=START,
            not_after=START + timedelta(days=1800),
            path_length=path_length,
            name_constraints=NameConstraints(permitted_dns=permitted) if permitted else None,
            crl_url=None,
            ca_issuers_url=None,
        )
        return cert, key

    def forged_leaf(self, issuer: Pair, dns_name: str) -> x509.Certificate:
        """A leaf outside the constraints, built with cryptography directly (no certctl checks)."""
        key = generate_private_key("ecdsa-p256")
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(issuer[0].subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(START)
            .not_valid_after(START + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(issuer[1], hashes.SHA256())
        )

    def write(
        self, directory: Path, leaf: x509.Certificate, chain: list[x509.Certificate]
    ) -> dict[str, Path]:
        files = {
            "root": directory / "root.pem",
            "chain": directory / "chain.pem",
            "leaf": directory / "leaf.pem",
            "bundle": directory / "bundle.pem",
        }
        files["root"].write_text(cert_pem(self.root[0]))
        files["chain"].write_text(chain_pem(chain))
        files["leaf"].write_text(cert_pem(leaf))
        files["bundle"].write_text(chain_pem([leaf, *chain]))
        return files


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    return Hierarchy()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


def _openssl_verify(files: dict[str, Path], *extra: str) -> subprocess.CompletedProcess[str]:
    return _run(
        "openssl",
        "verify",
        "-CAfile",
        str(files["root"]),
        "-untrusted",
        str(files["chain"]),
        *extra,
        str(files["leaf"]),
    )


def _certtool_verify(files: dict[str, Path], *extra: str) -> subprocess.CompletedProcess[str]:
    return _run(
        "certtool",
        "--verify",
        "--load-ca-certificate",
        str(files["root"]),
        "--infile",
        str(files["bundle"]),
        *extra,
    )


@pytest.mark.peer("openssl")
def test_openssl_verifies_the_hierarchy(hierarchy: Hierarchy, tmp_path: Path) -> None:
    files = hierarchy.write(tmp_path, hierarchy.leaf, [hierarchy.issuing[0], hierarchy.intermediate[0]])
    result = _openssl_verify(files, "-purpose", "sslserver", "-verify_hostname", "www.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{files['leaf']}: OK" in result.stdout


@pytest.mark.peer("certtool")
def test_certtool_verifies_the_hierarchy(hierarchy: Hierarchy, tmp_path: Path) -> None:
    files = hierarchy.write(tmp_path, hierarchy.leaf, [hierarchy.issuing[0], hierarchy.intermediate[0]])
    result = _certtool_verify(files, "--verify-hostname", "www.example.com")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Chain verification output: Verified" in output


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("issuer_name", ["intermediate", "issuing"])
def test_openssl_refuses_names_outside_constraints(
    hierarchy: Hierarchy, tmp_path: Path, issuer_name: str
) -> None:
    issuer: Pair = getattr(hierarchy, issuer_name)
    evil = hierarchy.forged_leaf(issuer, "www.evil.org")
    chain = (
        [hierarchy.intermediate[0]]
        if issuer_name == "intermediate"
        else [
            hierarchy.issuing[0],
            hierarchy.intermediate[0],
        ]
    )
    files = hierarchy.write(tmp_path, evil, chain)
    result = _openssl_verify(files)
    assert result.returncode != 0, result.stdout
    assert "permitted subtree violation" in result.stdout + result.stderr


@pytest.mark.peer("certtool")
@pytest.mark.parametrize("issuer_name", ["intermediate", "issuing"])
def test_certtool_refuses_names_outside_constraints(
    hierarchy: Hierarchy, tmp_path: Path, issuer_name: str
) -> None:
    issuer: Pair = getattr(hierarchy, issuer_name)
    evil = hierarchy.forged_leaf(issuer, "www.evil.org")
    chain = (
        [hierarchy.intermediate[0]]
        if issuer_name == "intermediate"
        else [
            hierarchy.issuing[0],
            hierarchy.intermediate[0],
        ]
    )
    files = hierarchy.write(tmp_path, evil, chain)
    result = _certtool_verify(files)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Chain verification output: Verified" not in output
    assert "Not verified" in output
    assert "violates the signer's constraints" in output


@pytest.mark.peer("openssl")
def test_openssl_reads_our_pkcs12_and_sees_modern_encryption(hierarchy: Hierarchy, tmp_path: Path) -> None:
    bundle = tmp_path / "leaf.p12"
    bundle.write_bytes(
        to_pkcs12(
            key=hierarchy.leaf_key,
            cert=hierarchy.leaf,
            chain=[hierarchy.issuing[0], hierarchy.intermediate[0]],
            password=b"peer-test",
            friendly_name="www.example.com",
        )
    )
    result = _run("openssl", "pkcs12", "-info", "-noout", "-in", str(bundle), "-passin", "pass:peer-test")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "MAC: sha256" in output
    assert "AES-256-CBC" in output
    assert "RC2" not in output
    assert "3DES" not in output
