"""CRLs published after revocation, fetched over the CRL route and judged by OpenSSL and GnuTLS certtool.

``openssl verify -crl_check`` must reject a revoked leaf ("certificate revoked") and accept an unrevoked
one; with ``-use_deltas`` an older full CRL plus the newest delta CRL must also reject a certificate
revoked after that full CRL (RFC 5280 §5.2.4). ``certtool --crl-info`` must parse both kinds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support.apps import ApiHarness


def _issue_pem(api: ApiHarness, name: str, folder: Path) -> Path:
    body = {"name": name, "issuer": "local", "profile": "default", "common_name": name}
    assert api.post("/api/v1/certificates", json=body).status_code == 201
    exported = api.get(f"/api/v1/certificates/{name}/export")
    assert exported.status_code == 200
    path = folder / f"{name}.pem"
    path.write_bytes(exported.content)
    return path


def _chain(api: ApiHarness, folder: Path) -> Path:
    path = folder / "chain.pem"
    path.write_text(api.seeded["issuing"]["cert_pem"] + api.seeded["root"]["cert_pem"])
    return path


def _fetch(api: ApiHarness, name: str, folder: Path, target: str) -> Path:
    response = api.client.get(f"/crl/{name}")
    assert response.status_code == 200, response.text
    path = folder / target
    path.write_bytes(response.content)
    return path


def _verify(chain: Path, leaf: Path, *crls: Path, deltas: bool = False) -> subprocess.CompletedProcess[str]:
    command = ["openssl", "verify", "-crl_check", "-CAfile", str(chain)]
    if deltas:
        command.append("-use_deltas")
    for crl in crls:
        command += ["-CRLfile", str(crl)]
    return subprocess.run([*command, str(leaf)], capture_output=True, text=True, timeout=30, check=False)


def _revoke(api: ApiHarness, name: str) -> None:
    response = api.post(f"/api/v1/certificates/{name}/revoke", json={"reason": "keyCompromise"})
    assert response.status_code == 200, response.text


@pytest.mark.peer("openssl")
def test_openssl_rejects_revoked_and_accepts_unrevoked(api: ApiHarness, tmp_path: Path) -> None:
    ca_id = api.seeded["issuing"]["id"]
    revoked = _issue_pem(api, "revoked.example.com", tmp_path)
    kept = _issue_pem(api, "kept.example.com", tmp_path)
    chain = _chain(api, tmp_path)
    _revoke(api, "revoked.example.com")
    crl = _fetch(api, f"{ca_id}.pem", tmp_path, "crl.pem")
    refused = _verify(chain, revoked, crl)
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr
    accepted = _verify(chain, kept, crl)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert accepted.stdout.strip().endswith("OK")


@pytest.mark.peer("openssl")
def test_openssl_uses_delta_crl_over_an_older_base(api: ApiHarness, tmp_path: Path) -> None:
    ca_id = api.seeded["issuing"]["id"]
    first = _issue_pem(api, "first.example.com", tmp_path)
    later = _issue_pem(api, "later.example.com", tmp_path)
    chain = _chain(api, tmp_path)
    _revoke(api, "first.example.com")
    base = _fetch(api, f"{ca_id}.pem", tmp_path, "base.pem")
    _revoke(api, "later.example.com")
    delta = _fetch(api, f"{ca_id}-delta.pem", tmp_path, "delta.pem")
    assert _verify(chain, later, base).returncode == 0, (
        "the old base alone does not know the later revocation"
    )
    with_delta = _verify(chain, later, base, delta, deltas=True)
    assert with_delta.returncode != 0
    assert "certificate revoked" in with_delta.stdout + with_delta.stderr
    on_base = _verify(chain, first, base, delta, deltas=True)
    assert "certificate revoked" in on_base.stdout + on_base.stderr


@pytest.mark.peer("certtool")
def test_certtool_parses_full_and_delta_crls(api: ApiHarness, tmp_path: Path) -> None:
    ca_id = api.seeded["issuing"]["id"]
    _issue_pem(api, "parsed.example.com", tmp_path)
    _revoke(api, "parsed.example.com")
    full = _fetch(api, f"{ca_id}.crl", tmp_path, "full.crl")
    delta = _fetch(api, f"{ca_id}-delta.crl", tmp_path, "delta.crl")
    infos = []
    for crl in (full, delta):
        result = subprocess.run(
            ["certtool", "--crl-info", "--inder", "--infile", str(crl)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        infos.append(result.stdout)
    full_info, delta_info = infos
    assert "Version: 2" in full_info
    assert "CRL Number (not critical): 01" in full_info
    assert "Revoked certificates (1)" in full_info
    assert "2.5.29.27" not in full_info
    assert "CRL Number (not critical): 02" in delta_info
    assert "Unknown extension 2.5.29.27 (critical)" in delta_info
    assert "Hexdump: 020101" in delta_info  # BaseCRLNumber 1: the full CRL above
    assert "Revoked certificates (1)" in delta_info
