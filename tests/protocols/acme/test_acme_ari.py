"""ACME Renewal Information (RFC 9773) in-process on both databases: the renewalInfo window, ``replaces``
in newOrder (ownership, alreadyReplaced, the replaced certificate archived), the issuer-wide renew-by
deadline of a mass re-issuance, and a revoked certificate's window in the past."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from certctl.services.acme_ari import cert_id_of, parse_cert_id
from certctl.services.acme_errors import AcmeError
from certctl.services.audit import SYSTEM
from certctl.store.models import AcmeOrder, AuditEvent
from support.acme_client import AcmeTestClient, Http01Server, b64url
from support.acme_inprocess import ERR, AcmeApp, issue

pytestmark = pytest.mark.peer("pebble-challtestsrv")


def _client(app: AcmeApp) -> AcmeTestClient:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    assert acme.register().status_code == 201
    return acme


def _window(app: AcmeApp, acme: AcmeTestClient, leaf: x509.Certificate) -> tuple[datetime, datetime, Any]:
    response = app.client.get(f"{acme.directory['renewalInfo']}/{cert_id_of(leaf)}")
    assert response.status_code == 200, response.text
    window = response.json()["suggestedWindow"]
    start, end = (datetime.fromisoformat(window[k].replace("Z", "+00:00")) for k in ("start", "end"))
    return start, end, response


async def _count(engine: Any, model: Any, *where: Any) -> int:
    async with engine.connect() as connection:
        return int(
            (await connection.execute(select(func.count()).select_from(model).where(*where))).scalar_one()
        )


def test_cert_id_round_trip_and_bad_input() -> None:
    parsed = parse_cert_id("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
    assert parsed.key_identifier.hex() == "69885b6b87464041e1b37b847ba0ae2cde01c8d4"
    assert parsed.serial == 0x87654321
    for bad in ("", "abc", "a.b.c", "aYhb.AIdl=", "a!b.AA", "aYhb.gA", 42):
        with pytest.raises(AcmeError) as refused:
            parse_cert_id(bad)
        assert refused.value.kind == "malformed"


def test_renewal_info_window(app: AcmeApp, responder: Http01Server) -> None:
    acme = _client(app)
    assert acme.directory["renewalInfo"].endswith("/acme/default/renewal-info")
    _, leaf = issue(acme, responder, "ari.example.test")
    start, end, response = _window(app, acme, leaf)
    assert response.headers["Retry-After"] == str(6 * 3600)
    assert leaf.not_valid_before_utc < start < end < leaf.not_valid_after_utc

    base = acme.directory["renewalInfo"]
    garbage = app.client.get(f"{base}/not-a-cert-id")
    assert garbage.status_code == 400
    assert garbage.json()["type"] == ERR + "malformed"
    unknown_id = b64url(b"unknown-key-id") + "." + b64url(bytes([1, 2]))
    unknown = app.client.get(f"{base}/{unknown_id}")
    assert unknown.status_code == 404
    assert unknown.json()["type"] == ERR + "malformed"
    assert unknown.headers["content-type"] == "application/problem+json"


def test_replaces_supersedes_the_old_certificate(app: AcmeApp, responder: Http01Server) -> None:
    acme = _client(app)
    old_order, old = issue(acme, responder, "replace.example.test")
    old_id = cert_id_of(old)
    engine = app.services.context.engine
    identifiers = {"identifiers": [{"type": "dns", "value": "replace.example.test"}]}

    orders_before = app.call(_count, engine, AcmeOrder)
    stranger = _client(app)
    refused = stranger.post(stranger.directory["newOrder"], identifiers | {"replaces": old_id})
    assert (refused.status_code, refused.json()["type"]) == (403, ERR + "unauthorized")
    unknown_id = old_id.split(".")[0] + "." + b64url(bytes([5]))
    unknown = acme.post(acme.directory["newOrder"], identifiers | {"replaces": unknown_id})
    assert (unknown.status_code, unknown.json()["type"]) == (400, ERR + "malformed")
    garbage = acme.post(acme.directory["newOrder"], identifiers | {"replaces": "nonsense"})
    assert (garbage.status_code, garbage.json()["type"]) == (400, ERR + "malformed")
    elsewhere = {"identifiers": [{"type": "dns", "value": "unrelated.example.test"}]}
    unrelated = acme.post(acme.directory["newOrder"], elsewhere | {"replaces": old_id})
    assert (unrelated.status_code, unrelated.json()["type"]) == (400, ERR + "malformed")
    assert unrelated.json()["detail"] == "the order shares no identifier with the certificate it replaces"
    assert app.call(_count, engine, AcmeOrder) == orders_before

    # one shared name is enough (RFC 9773 §5)
    order, new = issue(
        acme, responder, "replace.example.test", "added.example.test", extra={"replaces": old_id}
    )
    assert order["replaces"] == old_id
    assert new.serial_number != old.serial_number
    admin = app.admin()
    old_name = "acme-" + old_order["url"].rsplit("/", 1)[1]
    new_name = "acme-" + order["url"].rsplit("/", 1)[1]
    replaced = app.client.get(f"/api/v1/certificates/{old_name}", headers=admin).json()
    assert (replaced["status"], replaced["auto_renew"]) == ("Archived", False)
    assert app.client.get(f"/api/v1/certificates/{new_name}", headers=admin).json()["status"] == "Active"
    assert app.call(_count, engine, AuditEvent, AuditEvent.action == "certificate.supersede") == 1

    again = acme.post(acme.directory["newOrder"], identifiers | {"replaces": old_id})
    assert (again.status_code, again.json()["type"]) == (409, ERR + "alreadyReplaced")


def test_renew_by_and_revocation_move_the_window(app: AcmeApp, responder: Http01Server) -> None:
    acme = _client(app)
    _, leaf = issue(acme, responder, "massrenew.example.test")
    _, end_before, _ = _window(app, acme, leaf)
    admin = app.admin()
    by = datetime.now(UTC) + timedelta(hours=12)
    assert end_before > by

    bad = app.client.post("/api/v1/issuers/local/renew-by", json={"by": "tomorrow"}, headers=admin)
    assert bad.status_code == 422
    naive = app.client.post(
        "/api/v1/issuers/local/renew-by", json={"by": "2030-01-01T00:00:00"}, headers=admin
    )
    assert naive.status_code == 422
    missing = app.client.post("/api/v1/issuers/nope/renew-by", json={"by": by.isoformat()}, headers=admin)
    assert missing.status_code == 404
    viewer = app.call(
        lambda: app.services.api_keys.create(
            name="viewer", roles=["viewer"], expires_in=None, actor=_system()
        )
    )
    forbidden = app.client.post(
        "/api/v1/issuers/local/renew-by",
        json={"by": by.isoformat()},
        headers={"Authorization": f"Bearer {viewer.secret}"},
    )
    assert forbidden.status_code == 403

    for url in ("ftp://status.example.test/x", "not a url", "https://user:secret@status.example.test/"):
        refused = app.client.post(
            "/api/v1/issuers/local/renew-by",
            json={"by": by.isoformat(), "explanation_url": url},
            headers=admin,
        )
        assert refused.status_code == 422, url
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "secret" not in refused.text

    page = "https://status.example.test/incidents/42"
    done = app.client.post(
        "/api/v1/issuers/local/renew-by", json={"by": by.isoformat(), "explanation_url": page}, headers=admin
    )
    assert done.status_code == 200, done.text
    assert done.json()["certificates"] >= 1
    assert done.json()["explanation_url"] == page
    start, end, answer = _window(app, acme, leaf)
    assert start < end <= by
    assert answer.json()["explanationURL"] == page
    engine = app.services.context.engine
    assert app.call(_count, engine, AuditEvent, AuditEvent.action == "issuer.renew_by") == 1

    _, fresh = issue(acme, responder, "afterwards.example.test")
    _, fresh_end, fresh_answer = _window(app, acme, fresh)
    assert fresh_end > by
    assert "explanationURL" not in fresh_answer.json()

    der = leaf.public_bytes(serialization.Encoding.DER)
    assert acme.post(acme.directory["revokeCert"], {"certificate": b64url(der)}).status_code == 200
    start, end, _ = _window(app, acme, leaf)
    assert start < end < datetime.now(UTC)


def _system() -> Any:
    return SYSTEM
