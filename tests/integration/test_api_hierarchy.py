"""The local CA through the API: a 3-level hierarchy with name constraints, verified by real peers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from support.apps import ApiHarness
from support.csrs import csr_pem

PROBLEM = "urn:certctl:problem:"


def _hierarchy(api: ApiHarness) -> dict[str, Any]:
    root = api.post(
        "/api/v1/intermediates", json={"name": "Corp Root", "subject": {"common_name": "Corp Root"}}
    )
    assert root.status_code == 201, root.text
    intermediate = api.post(
        "/api/v1/intermediates",
        json={
            "name": "Corp Intermediate",
            "parent": root.json()["id"],
            "subject": {"common_name": "Corp Intermediate", "organization": "Corp"},
            "path_length": 1,
            "validity_days": 1825,
            "name_constraints": {"permitted_dns": ["corp.example"], "excluded_dns": ["secret.corp.example"]},
        },
    )
    assert intermediate.status_code == 201, intermediate.text
    issuing = api.post(
        "/api/v1/intermediates",
        json={
            "name": "Corp Issuing",
            "parent": "Corp Intermediate",
            "subject": {"common_name": "Corp Issuing"},
            "path_length": 0,
            "validity_days": 1000,
            "key_type": "ecdsa-p384",
        },
    )
    assert issuing.status_code == 201, issuing.text
    issuer = api.post(
        "/api/v1/issuers", json={"name": "corp", "type": "local", "options": {"ca": "Corp Issuing"}}
    )
    assert issuer.status_code == 201, issuer.text
    return {"root": root.json(), "intermediate": intermediate.json(), "issuing": issuing.json()}


def _write(tmp_path: Path, cas: dict[str, Any], issued: dict[str, Any]) -> dict[str, Path]:
    paths = {
        "root": tmp_path / "root.pem",
        "chain": tmp_path / "chain.pem",
        "leaf": tmp_path / "leaf.pem",
        "bundle": tmp_path / "bundle.pem",
    }
    paths["root"].write_text(cas["root"]["cert_pem"])
    version = issued["current_version"]
    paths["chain"].write_text(version["chain_pem"])
    paths["leaf"].write_text(version["cert_pem"])
    paths["bundle"].write_text(version["cert_pem"] + version["chain_pem"])
    return paths


def test_hierarchy_issues_and_never_exposes_keys(api: ApiHarness) -> None:
    cas = _hierarchy(api)
    for ca in cas.values():
        assert "key_sealed" not in ca and ca["has_key"] is True
    listing = api.get("/api/v1/intermediates").json()["items"]
    assert all("key_sealed" not in item and "PRIVATE" not in str(item) for item in listing)
    issued = api.post(
        "/api/v1/certificates",
        json={
            "name": "www.corp.example",
            "issuer": "corp",
            "profile": "default",
            "csr": csr_pem("www.corp.example"),
        },
    )
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert "private_key_pem" not in body
    leaf = x509.load_pem_x509_certificate(body["current_version"]["cert_pem"].encode())
    assert leaf.serial_number.bit_length() >= 128
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name is not None
    assert cdp[0].full_name[0].value == f"http://127.0.0.1:8080/crl/{cas['issuing']['id']}.crl"


@pytest.mark.parametrize(
    "name",
    ["www.evil.org", "secret.corp.example", "a.secret.corp.example"],
    ids=["outside", "excluded", "below"],
)
def test_name_outside_constraints_is_refused(api: ApiHarness, name: str) -> None:
    _hierarchy(api)
    response = api.post(
        "/api/v1/certificates",
        json={"name": name, "issuer": "corp", "profile": "default", "common_name": name},
    )
    assert response.status_code == 422
    assert response.json()["type"] == PROBLEM + "name-constraint-violation"
    assert api.get("/api/v1/certificates").json()["items"] == []


def test_child_path_length_beyond_parent_is_refused(api: ApiHarness) -> None:
    cas = _hierarchy(api)
    response = api.post(
        "/api/v1/intermediates",
        json={"name": "Too Deep", "parent": cas["issuing"]["id"], "subject": {"common_name": "Too Deep"}},
    )
    assert response.status_code == 422
    assert response.json()["type"] == PROBLEM + "validation-error"


def test_drained_ca_stops_issuing_and_retire_needs_drain(api: ApiHarness) -> None:
    cas = _hierarchy(api)
    issuing = cas["issuing"]["id"]
    assert api.post(f"/api/v1/intermediates/{issuing}/retire").status_code == 409
    assert api.post(f"/api/v1/intermediates/{issuing}/drain").json()["status"] == "draining"
    refused = api.post(
        "/api/v1/certificates",
        json={
            "name": "a.corp.example",
            "issuer": "corp",
            "profile": "default",
            "common_name": "a.corp.example",
        },
    )
    assert refused.status_code == 409
    assert api.post(f"/api/v1/intermediates/{issuing}/retire").json()["status"] == "retired"
    assert api.post(f"/api/v1/intermediates/{issuing}/activate").status_code == 409


def test_import_sub_ca_and_issue_under_it(api: ApiHarness, tmp_path: Path) -> None:
    """Sub-CA mode: a CA certificate and key made elsewhere (here: by openssl) chain our issuance."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    key, cert = tmp_path / "ent.key", tmp_path / "ent.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "365", "-subj", "/CN=Enterprise Issuing CA",
         "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        check=True, capture_output=True,
    )  # fmt: skip
    imported = api.post(
        "/api/v1/intermediates/import",
        json={"name": "Enterprise", "certificate": cert.read_text(), "private_key": key.read_text()},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["imported"] is True
    mismatched = api.post(
        "/api/v1/intermediates/import",
        json={"name": "Mismatch", "certificate": cert.read_text(), "private_key": _other_key()},
    )
    assert mismatched.status_code == 422
    api.post("/api/v1/issuers", json={"name": "ent", "type": "local", "options": {"ca": "Enterprise"}})
    issued = api.post(
        "/api/v1/certificates",
        json={
            "name": "app.ent.example",
            "issuer": "ent",
            "profile": "default",
            "common_name": "app.ent.example",
        },
    )
    assert issued.status_code == 201, issued.text
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(issued.json()["current_version"]["cert_pem"])
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(cert), str(leaf)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _other_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


@pytest.mark.peer("openssl")
def test_three_level_chain_verifies_with_openssl(api: ApiHarness, tmp_path: Path) -> None:
    cas = _hierarchy(api)
    issued = api.post(
        "/api/v1/certificates",
        json={
            "name": "api.corp.example",
            "issuer": "corp",
            "profile": "default",
            "common_name": "api.corp.example",
        },
    ).json()
    paths = _write(tmp_path, cas, issued)
    result = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(paths["root"]),
         "-untrusted", str(paths["chain"]), str(paths["leaf"])],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{paths['leaf']}: OK" in result.stdout


@pytest.mark.peer("certtool")
def test_three_level_chain_verifies_with_gnutls(api: ApiHarness, tmp_path: Path) -> None:
    cas = _hierarchy(api)
    issued = api.post(
        "/api/v1/certificates",
        json={
            "name": "api.corp.example",
            "issuer": "corp",
            "profile": "default",
            "common_name": "api.corp.example",
        },
    ).json()
    paths = _write(tmp_path, cas, issued)
    result = subprocess.run(
        ["certtool", "--verify", "--load-ca-certificate", str(paths["root"]),
         "--infile", str(paths["bundle"])],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Chain verification output: Verified" in result.stdout


def test_export_pem_and_pkcs12(api: ApiHarness) -> None:
    issued = api.post(
        "/api/v1/certificates",
        json={
            "name": "exp.example.com",
            "issuer": "local",
            "profile": "default",
            "common_name": "exp.example.com",
        },
    )
    assert issued.status_code == 201
    key_pem = issued.json()["private_key_pem"]
    assert "PRIVATE KEY" in key_pem
    pem = api.get("/api/v1/certificates/exp.example.com/export")
    assert pem.status_code == 200 and "PRIVATE" not in pem.text
    assert len(x509.load_pem_x509_certificates(pem.content)) == 2
    no_password = api.post(
        "/api/v1/certificates/exp.example.com/export", json={"format": "pkcs12", "include_key": True}
    )
    assert no_password.status_code == 422
    p12 = api.post(
        "/api/v1/certificates/exp.example.com/export",
        json={"format": "pkcs12", "include_key": True, "password": "correct horse"},
    )
    assert p12.status_code == 200
    assert p12.headers["cache-control"] == "no-store"
    key, cert, extra = pkcs12.load_key_and_certificates(p12.content, b"correct horse")
    assert key is not None and cert is not None and len(extra) == 1
    audit = api.get("/api/v1/audit", params={"action": "certificate.export"}).json()["items"]
    assert audit and all("correct horse" not in str(row) for row in audit)
