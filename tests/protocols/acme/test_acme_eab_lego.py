"""lego against a live certctl server whose profile requires external account binding (RFC 8555
§7.3.4) and trusts bound accounts: refused without ``--eab`` (lego reads ``externalAccountRequired``
from the directory's meta and stops before newAccount; nothing is issued), issued with ``--eab --kid
--hmac`` and a key from ``certctl acme eab create`` (the order is ready at once, no challenge is
served), and the same key refused to a second lego account (keys are single use: ``unauthorized``)."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from support.cli import ok
from support.live import LiveServer, free_port

pytestmark = pytest.mark.peer("lego")


@pytest.fixture(scope="module")
def live(eab_live: LiveServer) -> LiveServer:
    return eab_live


def _lego(live: LiveServer, path: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``lego run`` for one name. lego wants a solver even when the authorizations are already valid:
    its standalone http-01 responder is configured on a free loopback port and is never started."""
    argv = ["lego", "--server", f"{live.url}/acme/internal/directory", "--email", "a@example.com"]
    argv += ["--accept-tos", "--domains", name, "--http", "--http.port", f"127.0.0.1:{free_port()}"]
    argv += ["--path", str(path), *extra, "run"]
    env = os.environ | {"LEGO_CA_CERTIFICATES": str(live.ca_bundle)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


def _eab_key(live: LiveServer, cwd: Path, label: str) -> tuple[str, str]:
    created = ok(live, cwd, "acme", "eab", "create", "--profile", "internal", "--name", label)
    fields = dict(line.split(": ", 1) for line in created.strip().splitlines())
    assert set(fields) == {"kid", "hmac_key"}
    return fields["kid"], fields["hmac_key"]


def _binding(kid: str, hmac_key: str) -> tuple[str, ...]:
    return ("--eab", f"--kid={kid}", f"--hmac={hmac_key}")  # one argument: base64url may start with "-"


def _issued_for(live: LiveServer, name: str) -> list[dict[str, object]]:
    """The ACME certificates the server holds whose name or common name is ``name``."""
    with live.client() as client:
        found = client.get("/api/v1/certificates", params={"source": "acme", "q": name})
    found.raise_for_status()
    items: list[dict[str, object]] = found.json()["items"]
    return items


def _ca_certificate(live: LiveServer, ca_name: str) -> x509.Certificate:
    with live.client() as client:
        cas = client.get("/api/v1/intermediates").json()["items"]
        (ca_id,) = [ca["id"] for ca in cas if ca["name"] == ca_name]
        pem = client.get(f"/api/v1/intermediates/{ca_id}/certificate")
    pem.raise_for_status()
    return x509.load_pem_x509_certificate(pem.content)


def test_lego_without_binding_is_refused(live: LiveServer, tmp_path: Path) -> None:
    name = f"nobind-{secrets.token_hex(4)}.corp.test"
    refused = _lego(live, tmp_path / "lego", name)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert "Server requires External Account Binding" in output, output
    with live.client() as client:
        directory = client.get("/acme/internal/directory").json()
    assert directory["meta"]["externalAccountRequired"] is True
    assert not (tmp_path / "lego" / "certificates" / f"{name}.crt").exists()
    assert _issued_for(live, name) == []


def test_lego_with_binding_gets_a_certificate(live: LiveServer, tmp_path: Path) -> None:
    name = f"svc-{secrets.token_hex(4)}.corp.test"
    kid, hmac_key = _eab_key(live, tmp_path, "lego")
    issued = _lego(live, tmp_path / "lego", name, *_binding(kid, hmac_key))
    assert issued.returncode == 0, issued.stdout + issued.stderr + live.log_file.read_text()[-3000:]
    assert "authorization already valid; skipping challenge" in issued.stderr

    certificates = tmp_path / "lego" / "certificates"
    leaf, *chain = x509.load_pem_x509_certificates((certificates / f"{name}.crt").read_bytes())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [name]
    issuer = x509.load_pem_x509_certificate((certificates / f"{name}.issuer.crt").read_bytes())
    assert chain[0] == issuer
    leaf.verify_directly_issued_by(issuer)
    issuing, root = _ca_certificate(live, "Test Issuing"), _ca_certificate(live, "Test Root")
    assert issuer == issuing
    issuing.verify_directly_issued_by(root)
    assert len(_issued_for(live, name)) == 1


def test_a_binding_key_binds_one_account(live: LiveServer, tmp_path: Path) -> None:
    kid, hmac_key = _eab_key(live, tmp_path, "lego-once")
    first_name = f"first-{secrets.token_hex(4)}.corp.test"
    first = _lego(live, tmp_path / "first", first_name, *_binding(kid, hmac_key))
    assert first.returncode == 0, first.stdout + first.stderr

    second_name = f"second-{secrets.token_hex(4)}.corp.test"
    second = _lego(live, tmp_path / "second", second_name, *_binding(kid, hmac_key))
    output = second.stdout + second.stderr
    assert second.returncode != 0, output
    assert "/acme/internal/new-account :: urn:ietf:params:acme:error:unauthorized" in output, output
    assert not (tmp_path / "second" / "certificates" / f"{second_name}.crt").exists()
    assert _issued_for(live, second_name) == []
