"""Dashboard sign-in with a real OpenID Provider (npm ``oidc-provider``) over the real app and database.

The app's outbound HTTP is the documented seam: an injected ``httpx2.AsyncClient`` forwards every call to
the real provider and, for the forged-token tests, replaces the ID token in the token endpoint's answer
with one the test made (signed with the provider's own keys where the variant needs a valid signature).
Back-channel logout tokens come from the provider itself (it posts them to a loopback receiver, the test
relays them to the app) or are forged the same way.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx2
import pytest
from sqlalchemy import func, select

from certctl.auth.config import IdentityConfig, SessionConfig
from certctl.auth.oidc_tokens import BACKCHANNEL_LOGOUT_EVENT
from certctl.domain.clock import FrozenClock
from certctl.store.db import read_only
from certctl.store.models import OidcFirstAdmin, table_of
from certctl.store.repositories import audit, rows
from support.apps import ApiHarness, make_harness
from support.oidc_provider import (
    DEFAULT_ACCOUNTS,
    RP_CALLBACK,
    RP_SIGNED_OUT,
    LogoutReceiver,
    OpenIdProvider,
    RelyingParty,
    RelyingPartyBrowser,
    add_relying_party,
    free_port,
    logout_receiver,
    openid_provider_fixture,
)

ACCOUNTS = DEFAULT_ACCOUNTS | {
    "dave": {"email": "dave@example.test", "name": "Dave Admin", "groups": ["pki-admins"]},
}
openid_provider = openid_provider_fixture(scope="module", accounts=ACCOUNTS)

SESSION = "__Host-certctl_session"
CSRF = "__Host-certctl_csrf"
PRELOGIN = "__Host-certctl_oidc"
CALLBACK, SIGNED_OUT = RP_CALLBACK, RP_SIGNED_OUT
BACKCHANNEL = "/auth/oidc/back-channel-logout"
PROVIDERS = "/api/v1/auth/oidc/providers"
ADMIN_ONLY_ACTION = "/jobs/no-such-job/cancel"
"""A button's POST that needs ``job.cancel``: 403 for a viewer, 404 (no such job) for operator and admin."""
FIRST_ADMIN = table_of(OidcFirstAdmin)


@pytest.fixture(scope="module")
def receiver(openid_provider: OpenIdProvider) -> Iterator[LogoutReceiver]:
    with logout_receiver(openid_provider) as started:
        yield started


@pytest.fixture
def rp(
    database_url: str, openid_provider: OpenIdProvider, receiver: LogoutReceiver
) -> Iterator[RelyingParty]:
    """The app with the services' clock frozen at the real time (tests move it), and a provider mapped
    pki-admins -> admin, pki-viewers -> viewer."""
    with make_harness(database_url) as api:
        api.services.context.clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
        mappings = {"pki-admins": "admin", "pki-viewers": "viewer"}
        party = add_relying_party(api, openid_provider, receiver, mappings=mappings)
        try:
            yield party
        finally:
            party.close()


def advance(api: ApiHarness, delta: timedelta) -> None:
    clock = api.services.context.clock
    assert isinstance(clock, FrozenClock)
    clock.at += delta


def events(api: ApiHarness, action: str) -> list[dict[str, Any]]:
    async def load() -> list[dict[str, Any]]:
        async with read_only(api.services.context.engine) as connection:
            return await audit.list_events(connection, audit.AuditQuery(action=action, limit=500))

    return api.run(load)


def reasons(api: ApiHarness, action: str) -> list[str]:
    return sorted(str(e["details"].get("reason")) for e in events(api, action))


def session_rows(api: ApiHarness) -> list[dict[str, Any]]:
    async def load() -> list[dict[str, Any]]:
        async with read_only(api.services.context.engine) as connection:
            return [dict(r) for r in (await connection.execute(select(rows.SESSIONS))).mappings()]

    return api.run(load)


def first_admin_rows(api: ApiHarness) -> int:
    async def load() -> int:
        async with read_only(api.services.context.engine) as connection:
            return int((await connection.execute(select(func.count()).select_from(FIRST_ADMIN))).scalar_one())

    return api.run(load)


def who(page: Any) -> str:
    found = re.search(r'<span class="who-name"[^>]*>([^<]*)</span>', page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


def signed_in_as(browser: RelyingPartyBrowser) -> str | None:
    """Whose dashboard this browser sees, or None when it is sent to sign in."""
    page = browser.get("/dashboard")
    if page.status_code == 303:
        assert page.headers["location"].startswith("/login")
        return None
    assert page.status_code == 200, page.text[:500]
    return who(page)


def csrf_headers(browser: RelyingPartyBrowser) -> dict[str, str]:
    token = browser.cookie(CSRF)
    assert token
    return {"X-CSRF-Token": token}


def with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def user_id(api: ApiHarness, email: str) -> str:
    users = api.get("/api/v1/auth/users").json()["items"]
    return str(next(u["id"] for u in users if u["email"] == email))


# -- sign-in and roles ----------------------------------------------------------------------------


def test_alice_signs_in_and_lands_on_the_dashboard_as_admin(rp: RelyingParty) -> None:
    browser = rp.browser()
    login = browser.get("/login")
    assert f'href="/auth/oidc/{rp.name}/start?next=%2Fdashboard">Sign in with Corp SSO</a>' in login.text

    authorize = browser.start(rp.name)
    assert authorize.startswith(rp.provider.issuer + "/auth?")
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [rp.client_id]
    assert query["redirect_uri"] == [CALLBACK]
    prelogin = browser.cookie(PRELOGIN)
    assert prelogin and prelogin not in authorize

    done = browser.get(browser.authorize(authorize, "alice"))
    assert done.status_code == 200, done.text
    assert done.headers["refresh"] == "0; url=/dashboard"
    cookies = done.headers.get_list("set-cookie")
    session_line = next(line for line in cookies if line.startswith(SESSION + "="))
    assert all(flag in session_line for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"))
    assert any(line.startswith(PRELOGIN + "=;") and "Max-Age=0" in line for line in cookies)

    assert signed_in_as(browser) == "alice@example.test"
    assert browser.post(ADMIN_ONLY_ACTION, headers=csrf_headers(browser)).status_code == 404
    login_events = events(rp.api, "auth.oidc.login")
    assert len(login_events) == 1
    assert login_events[0]["details"]["groups"] == ["pki-admins"]
    assert login_events[0]["actor_type"] == "user"
    (row,) = session_rows(rp.api)
    assert (row["principal_type"], row["idp_sub"]) == ("user", "alice")
    assert row["idp_sid"]  # the provider's session id, for back-channel logout


def test_bob_the_viewer_reads_pages_but_cannot_act(rp: RelyingParty) -> None:
    bob = rp.signed_in("bob")
    assert signed_in_as(bob) == "bob@example.test"
    assert bob.get("/certificates").status_code == 200
    assert bob.get("/jobs").status_code == 200
    refused = bob.post(ADMIN_ONLY_ACTION, headers=csrf_headers(bob))
    assert refused.status_code == 403
    assert "lacks the permission &#39;job.cancel&#39;" in refused.text


def test_carol_with_no_mapped_group_gets_the_no_role_page(rp: RelyingParty) -> None:
    carol = rp.browser()
    refused = carol.sign_in(rp.name, "carol")
    assert refused.status_code == 403
    assert "No role" in refused.text and "none of your groups has a role" in refused.text
    assert carol.cookie(SESSION) is None
    assert session_rows(rp.api) == []
    (event,) = events(rp.api, "auth.oidc.unmapped")
    assert event["outcome"] == "denied"
    assert event["details"] == {"provider": rp.name, "groups": ["unmapped"]}
    assert event["actor"] == "carol@example.test"


# -- forged and replayed ID tokens -----------------------------------------------------------------


def forged_id_token(rp: RelyingParty, variant: str, claims: dict[str, Any]) -> str:
    """A variant of the provider's real ID token (its claims given), as an attacker would make it."""
    provider = rp.provider
    now = int(time.time())
    changed = {
        "wrong-iss": {"iss": f"http://127.0.0.1:{free_port()}"},
        "wrong-aud": {"aud": "another-client"},
        "missing-at-hash": {"at_hash": None},
        "stale-iat": {"iat": now - 3600, "exp": now + 3600},
    }
    if variant == "alg-none":
        return provider.sign(claims, alg="none")
    if variant == "hs256-client-secret":
        return provider.sign(claims, alg="HS256", secret=rp.client_secret)
    if variant == "signature-of-another-token":
        honest = provider.sign(claims, alg="RS256")
        other = provider.sign(claims | {"sub": "mallory"}, alg="RS256")
        return honest.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
    forged = {name: value for name, value in (claims | changed[variant]).items() if value is not None}
    return provider.sign(forged, alg="RS256")  # the provider's own key: only the claims are wrong


ID_TOKEN_VARIANTS = {
    "alg-none": "alg_not_allowed",
    "hs256-client-secret": "alg_not_allowed",
    "wrong-iss": "wrong_iss",
    "wrong-aud": "wrong_aud",
    "missing-at-hash": "at_hash_missing",
    "stale-iat": "iat_out_of_window",
    "signature-of-another-token": "bad_signature",
}


@pytest.mark.parametrize("variant", sorted(ID_TOKEN_VARIANTS))
def test_a_forged_id_token_is_refused_and_audited(rp: RelyingParty, variant: str) -> None:
    rp.transport.forge = lambda _answer, claims: forged_id_token(rp, variant, claims)
    browser = rp.browser()
    refused = browser.sign_in(rp.name, "alice")
    assert refused.status_code == 401, refused.text
    assert "was not accepted" in refused.text
    assert browser.cookie(SESSION) is None
    assert session_rows(rp.api) == []
    (event,) = events(rp.api, "auth.oidc.login_failed")
    assert event["details"] == {"reason": ID_TOKEN_VARIANTS[variant], "provider": rp.name}
    assert event["outcome"] == "failure"
    assert len(rp.transport.answers) == 1  # the provider did issue a real token, which was replaced


def test_a_valid_id_token_replayed_into_a_new_sign_in_fails_on_its_nonce(rp: RelyingParty) -> None:
    earlier = rp.signed_in("alice")
    earlier_token = rp.transport.answers[-1]["id_token"]
    rp.transport.forge = lambda _answer, _claims: earlier_token
    again = rp.browser()
    refused = again.sign_in(rp.name, "alice")
    assert refused.status_code == 401
    assert reasons(rp.api, "auth.oidc.login_failed") == ["nonce_mismatch"]
    assert again.cookie(SESSION) is None
    assert len(session_rows(rp.api)) == 1  # only the earlier, honest session
    assert signed_in_as(earlier) == "alice@example.test"


def test_a_callback_url_used_twice_is_refused(rp: RelyingParty) -> None:
    browser = rp.browser()
    callback = browser.authorize(browser.start(rp.name), "alice")
    prelogin = browser.cookie(PRELOGIN)
    assert browser.get(callback).status_code == 200
    assert browser.cookie(PRELOGIN) is None  # spent: the callback page clears it
    # The same browser, its pre-login cookie put back, presents the same callback URL again.
    replayed = rp.api.client.get(
        callback, headers={"Cookie": f"{PRELOGIN}={prelogin}"}, follow_redirects=False
    )
    assert replayed.status_code == 400
    assert "already used" in replayed.text
    assert reasons(rp.api, "auth.oidc.login_failed") == ["state_unknown_or_reused"]
    assert len(rp.transport.answers) == 1  # the code was not redeemed twice
    thief = rp.browser()  # another browser, with a pre-login cookie of its own: the state is spent
    thief.start(rp.name)
    assert thief.get(callback).status_code == 400
    assert reasons(rp.api, "auth.oidc.login_failed") == ["state_unknown_or_reused"] * 2
    assert len(session_rows(rp.api)) == 1


def test_a_callback_started_in_another_browser_is_refused(rp: RelyingParty) -> None:
    victim = rp.browser()
    callback = victim.authorize(victim.start(rp.name), "alice")
    attacker = rp.browser()
    attacker.start(rp.name)  # has a pre-login cookie of its own
    refused = attacker.get(callback)
    assert refused.status_code == 400
    assert "another browser" in refused.text
    assert reasons(rp.api, "auth.oidc.login_failed") == ["state_from_another_browser"]
    assert session_rows(rp.api) == []


@pytest.mark.parametrize(
    ("iss", "reason"),
    [("http://127.0.0.1:1", "iss_parameter_mismatch"), (None, "iss_parameter_missing")],
    ids=["wrong", "missing"],
)
def test_rfc9207_iss_parameter_is_checked(rp: RelyingParty, iss: str | None, reason: str) -> None:
    browser = rp.browser()
    callback = browser.authorize(browser.start(rp.name), "alice")
    assert parse_qs(urlsplit(callback).query)["iss"] == [rp.provider.issuer]
    refused = browser.get(with_query(callback, iss=iss))
    assert refused.status_code == 401
    assert reasons(rp.api, "auth.oidc.login_failed") == [reason]
    assert rp.transport.answers == []  # refused before the code was redeemed
    assert session_rows(rp.api) == []


def test_a_provider_that_cannot_be_reached_fails_closed(rp: RelyingParty) -> None:
    dead = {
        "name": "dead",
        "issuer": f"http://127.0.0.1:{free_port()}",
        "client_id": "x",
        "client_secret": "y",
    }
    assert rp.api.post(PROVIDERS, json=dead).status_code == 201
    browser = rp.browser()
    refused = browser.get("/auth/oidc/dead/start")
    assert refused.status_code == 503
    assert "cannot be reached" in refused.text
    assert browser.cookie(PRELOGIN) is None
    (event,) = events(rp.api, "auth.oidc.login_failed")
    assert event["details"] == {"reason": "discovery_unavailable", "provider": "dead"}


def test_signing_keys_that_cannot_be_fetched_fail_closed(rp: RelyingParty) -> None:
    rp.transport.unreachable.add(urlsplit(rp.provider.discovery()["jwks_uri"]).path)
    refused = rp.browser().sign_in(rp.name, "alice")
    assert refused.status_code == 401
    assert reasons(rp.api, "auth.oidc.login_failed") == ["jwks_unavailable"]
    assert session_rows(rp.api) == []


# -- back-channel and RP-initiated logout ----------------------------------------------------------


def logout_token_claims(rp: RelyingParty, *, age: int = 0, **changes: Any) -> dict[str, Any]:
    """A logout token's claims as the provider would send them (issued ``age`` seconds ago), changed."""
    claims = {
        "iss": rp.provider.issuer,
        "aud": rp.client_id,
        "iat": int(time.time()) - age,
        "jti": secrets.token_urlsafe(12),
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        "sub": "alice",
    } | changes
    return {name: value for name, value in claims.items() if value is not None}


def post_logout_token(rp: RelyingParty, token: str) -> Any:
    return rp.api.client.post(BACKCHANNEL, data={"logout_token": token})


def test_the_providers_back_channel_logout_ends_the_session(rp: RelyingParty) -> None:
    alice, bob = rp.signed_in("alice"), rp.signed_in("bob")
    final = rp.provider.end_session(alice.idp, client_id=rp.client_id, post_logout_redirect_uri=SIGNED_OUT)
    assert final == SIGNED_OUT
    (token,) = rp.receiver.tokens_for(rp.client_id)

    answer = post_logout_token(rp, token)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert signed_in_as(alice) is None
    assert signed_in_as(bob) == "bob@example.test"
    (event,) = events(rp.api, "auth.oidc.backchannel_logout")
    assert event["details"] == {"provider": rp.name, "sessions_ended": 1}

    replayed = post_logout_token(rp, token)
    assert replayed.status_code == 400
    assert replayed.headers["cache-control"] == "no-store"
    assert replayed.json()["error"] == "invalid_request"
    assert reasons(rp.api, "auth.oidc.logout_rejected") == ["replayed_jti"]


LOGOUT_VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "with-nonce": ("logout_has_nonce", {"nonce": "n-123"}, "RS256"),
    "missing-events": ("logout_missing_events", {"events": None}, "RS256"),
    "other-event": ("logout_missing_events", {"events": {"http://example.test/other": {}}}, "ES256"),
    "no-sub-no-sid": ("logout_missing_sub_sid", {"sub": None}, "RS256"),
    "alg-none": ("alg_not_allowed", {}, "none"),
    "wrong-aud": ("unknown_issuer_or_audience", {"aud": "another-client"}, "RS256"),
    "stale-iat": ("iat_out_of_window", {"age": 3600}, "ES384"),
    "missing-jti": ("logout_missing_jti", {"jti": None}, "EdDSA"),
}
"""Variant: (reason code, claim changes, alg). All but alg-none are signed with the provider's own key."""


@pytest.mark.parametrize("variant", sorted(LOGOUT_VARIANTS))
def test_a_forged_logout_token_is_refused_and_audited(rp: RelyingParty, variant: str) -> None:
    alice = rp.signed_in("alice")
    reason, changes, alg = LOGOUT_VARIANTS[variant]
    token = rp.provider.sign(logout_token_claims(rp, **changes), alg=alg)
    refused = post_logout_token(rp, token)
    assert refused.status_code == 400
    assert refused.headers["cache-control"] == "no-store"
    assert refused.json()["error_description"] == f"logout token refused: {reason}"
    assert reasons(rp.api, "auth.oidc.logout_rejected") == [reason]
    assert signed_in_as(alice) == "alice@example.test"
    assert events(rp.api, "auth.oidc.backchannel_logout") == []


def test_a_logout_token_with_the_providers_keys_and_a_replayed_jti(rp: RelyingParty) -> None:
    alice = rp.signed_in("alice")
    claims = logout_token_claims(rp)
    first = rp.provider.sign(claims, alg="ES256", headers={"typ": "logout+jwt"})
    assert post_logout_token(rp, first).status_code == 200
    assert signed_in_as(alice) is None
    again = rp.provider.sign(claims, alg="RS256")  # the same jti in another, validly signed token
    refused = post_logout_token(rp, again)
    assert refused.status_code == 400
    assert reasons(rp.api, "auth.oidc.logout_rejected") == ["replayed_jti"]
    assert rp.api.client.post(BACKCHANNEL, data={}).status_code == 400
    assert reasons(rp.api, "auth.oidc.logout_rejected") == ["malformed", "replayed_jti"]


def test_sign_out_needs_csrf_and_then_goes_to_the_providers_end_session(rp: RelyingParty) -> None:
    alice = rp.signed_in("alice")
    refused = alice.post("/logout")
    assert refused.status_code == 403
    assert signed_in_as(alice) == "alice@example.test"
    assert alice.post("/logout", headers={"X-CSRF-Token": "not-the-token"}).status_code == 403

    out = alice.post("/logout", headers=csrf_headers(alice))
    assert out.status_code == 303
    location = out.headers["location"]
    assert location.startswith(rp.provider.discovery()["end_session_endpoint"] + "?")
    query = parse_qs(urlsplit(location).query)
    assert query == {"client_id": [rp.client_id], "post_logout_redirect_uri": [SIGNED_OUT]}
    assert signed_in_as(alice) is None
    assert len(events(rp.api, "web.logout")) == 1
    # The provider honours it: its logout form ends its own session and returns to our sign-in page.
    final = rp.provider.end_session(alice.idp, client_id=rp.client_id, post_logout_redirect_uri=SIGNED_OUT)
    assert final == SIGNED_OUT
    assert len(rp.receiver.tokens_for(rp.client_id)) == 1


# -- providers, mappings and the first admin -------------------------------------------------------


def test_a_provider_with_live_sessions_cannot_be_deleted(rp: RelyingParty) -> None:
    alice = rp.signed_in("alice")
    blocked = rp.api.delete(f"{PROVIDERS}/{rp.name}")
    assert blocked.status_code == 409
    assert blocked.headers["content-type"].startswith("application/problem+json")
    assert "1 active session" in blocked.json()["detail"]
    ended = rp.api.post(
        "/api/v1/auth/sessions/revoke",
        json={"principal_type": "user", "principal_id": user_id(rp.api, "alice@example.test")},
    )
    assert ended.json() == {"sessions_ended": 1}
    assert signed_in_as(alice) is None
    assert rp.api.delete(f"{PROVIDERS}/{rp.name}").status_code == 204
    assert rp.api.get(f"{PROVIDERS}/{rp.name}").status_code == 404
    assert rp.browser().get(f"/auth/oidc/{rp.name}/start").status_code == 404


def test_a_mapping_change_applies_without_restart_and_ends_members_sessions(rp: RelyingParty) -> None:
    bob, alice = rp.signed_in("bob"), rp.signed_in("alice")
    assert bob.post(ADMIN_ONLY_ACTION, headers=csrf_headers(bob)).status_code == 403
    added = rp.api.post(f"{PROVIDERS}/{rp.name}/mappings", json={"group": "pki-viewers", "role": "operator"})
    assert added.status_code == 201, added.text
    assert signed_in_as(bob) is None  # his roles changed: his session ended
    assert signed_in_as(alice) == "alice@example.test"  # not a member: untouched
    (event,) = events(rp.api, "auth.oidc.mapping_add")[:1]
    assert event["details"]["sessions_ended"] == 1

    assert bob.sign_in(rp.name, "bob").status_code == 200  # the provider remembers him: no forms
    assert bob.post(ADMIN_ONLY_ACTION, headers=csrf_headers(bob)).status_code == 404  # operator now

    mapping = next(
        m for m in rp.api.get(f"{PROVIDERS}/{rp.name}/mappings").json()["items"] if m["role"] == "operator"
    )
    assert rp.api.delete(f"{PROVIDERS}/{rp.name}/mappings/{mapping['id']}").status_code == 204
    assert signed_in_as(bob) is None
    assert bob.sign_in(rp.name, "bob").status_code == 200
    assert bob.post(ADMIN_ONLY_ACTION, headers=csrf_headers(bob)).status_code == 403


def test_the_first_member_of_the_bootstrap_group_becomes_admin_once(
    database_url: str, openid_provider: OpenIdProvider, receiver: LogoutReceiver
) -> None:
    identity = IdentityConfig(bootstrap_admin_groups=("pki-admins",))
    with make_harness(database_url, identity=identity) as api:
        rp = add_relying_party(api, openid_provider, receiver)  # no mappings at all
        try:
            alice = rp.signed_in("alice")
            assert signed_in_as(alice) == "alice@example.test"
            assert alice.post(ADMIN_ONLY_ACTION, headers=csrf_headers(alice)).status_code == 404
            (event,) = events(api, "auth.oidc.first_admin")
            assert event["details"] == {"provider": rp.name, "group": "pki-admins"}
            assert first_admin_rows(api) == 1

            dave = rp.browser()
            refused = dave.sign_in(rp.name, "dave")  # also in pki-admins, but second
            assert refused.status_code == 403
            assert "No role" in refused.text
            assert first_admin_rows(api) == 1
            assert len(events(api, "auth.oidc.first_admin")) == 1
            assert [e["actor"] for e in events(api, "auth.oidc.unmapped")] == ["dave@example.test"]

            alice_again = rp.signed_in("alice")  # still admin, through the grant; no second claim
            assert alice_again.post(ADMIN_ONLY_ACTION, headers=csrf_headers(alice_again)).status_code == 404
            assert len(events(api, "auth.oidc.first_admin")) == 1
        finally:
            rp.close()


# -- sessions --------------------------------------------------------------------------------------


def test_a_tampered_session_cookie_is_refused(rp: RelyingParty) -> None:
    alice = rp.signed_in("alice")
    cookie = alice.cookie(SESSION)
    assert cookie is not None
    session_id, key_id, mac = cookie.split(".")
    flipped = mac[:5] + ("A" if mac[5] != "A" else "B") + mac[6:]
    for forged in (
        f"{session_id}.{key_id}.{flipped}",
        f"{session_id}x.{key_id}.{mac}",
        f"{session_id}.{key_id}",
    ):
        answer = rp.api.client.get(
            "/dashboard", headers={"Cookie": f"{SESSION}={forged}"}, follow_redirects=False
        )
        assert answer.status_code == 303, forged
        assert answer.headers["location"].startswith("/login")
    assert signed_in_as(alice) == "alice@example.test"  # the real cookie still works


def test_idle_timeout_ends_a_session(rp: RelyingParty) -> None:
    alice = rp.signed_in("alice")
    advance(rp.api, timedelta(minutes=29))
    assert signed_in_as(alice) == "alice@example.test"  # activity resets the idle clock
    advance(rp.api, timedelta(minutes=29))
    assert signed_in_as(alice) == "alice@example.test"
    advance(rp.api, timedelta(minutes=31))
    assert signed_in_as(alice) is None
    assert session_rows(rp.api) == []


def test_absolute_timeout_ends_an_active_session(rp: RelyingParty) -> None:
    alice = rp.signed_in("alice")
    for _ in range(19):  # 19 x 25 min = 7 h 55 min, active all along
        advance(rp.api, timedelta(minutes=25))
        assert signed_in_as(alice) == "alice@example.test"
    advance(rp.api, timedelta(minutes=10))  # 8 h 05 min after sign-in
    assert signed_in_as(alice) is None


def test_a_session_bound_to_the_user_agent_ends_on_another(
    database_url: str, openid_provider: OpenIdProvider, receiver: LogoutReceiver
) -> None:
    identity = IdentityConfig(session=SessionConfig(binding="user-agent"))
    with make_harness(database_url, identity=identity) as api:
        rp = add_relying_party(api, openid_provider, receiver, mappings={"pki-admins": "admin"})
        try:
            alice = rp.signed_in("alice")
            assert signed_in_as(alice) == "alice@example.test"
            stolen = rp.browser(user_agent="curl/8.0")
            stolen.jar = httpx2.Cookies(alice.jar)
            assert signed_in_as(stolen) is None
            assert signed_in_as(alice) is None  # a mismatch ends the session for everyone
            assert session_rows(api) == []
        finally:
            rp.close()


def test_signing_key_rotation_keeps_old_cookies_and_signs_new_ones_with_the_new_key(rp: RelyingParty) -> None:
    alice = rp.signed_in("alice")
    old_cookie = alice.cookie(SESSION)
    assert old_cookie is not None
    old_key = old_cookie.split(".")[1]
    rotated = rp.api.post("/api/v1/auth/session-keys/rotate")
    assert rotated.status_code == 201
    new_key = rotated.json()["id"]
    assert new_key != old_key
    assert signed_in_as(alice) == "alice@example.test"
    bob = rp.signed_in("bob")
    bob_cookie = bob.cookie(SESSION)
    assert bob_cookie is not None and bob_cookie.split(".")[1] == new_key
    keys = rp.api.get("/api/v1/auth/session-keys").json()["items"]
    assert {k["id"]: k["retired_at"] is None for k in keys} == {new_key: True, old_key: False}
    assert all(set(k) == {"id", "created_at", "retired_at", "verify_until"} for k in keys)
    (event,) = events(rp.api, "auth.session_key.rotate")
    assert event["resource_id"] == new_key


def test_sessions_are_listed_and_revoked_through_the_api(rp: RelyingParty) -> None:
    alice, bob = rp.signed_in("alice"), rp.signed_in("bob")
    listed = rp.api.get("/api/v1/auth/sessions")
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert {i["principal_type"] for i in items} == {"user"} and len(items) == 2
    for item in items:
        assert set(item) == {
            "handle",
            "principal_type",
            "principal_id",
            "provider_id",
            "client_ip",
            "user_agent",
            "created_at",
            "last_seen_at",
            "expires_at",
        }
    alice_id = user_id(rp.api, "alice@example.test")
    mine = rp.api.get("/api/v1/auth/sessions", params={"principal_type": "user", "principal_id": alice_id})
    (alice_session,) = mine.json()["items"]
    assert rp.api.delete(f"/api/v1/auth/sessions/{alice_session['handle']}").status_code == 204
    assert signed_in_as(alice) is None
    assert signed_in_as(bob) == "bob@example.test"
    assert rp.api.delete(f"/api/v1/auth/sessions/{alice_session['handle']}").status_code == 404
    assert [e["resource_id"] for e in events(rp.api, "auth.session.revoke")] == [alice_session["handle"]]

    # An API key's own dashboard sessions: listed and revoked by the key itself, nobody else's.
    viewer_key = rp.api.key_for("viewer")
    keyed = rp.browser()
    login = keyed.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert token is not None
    signed = keyed.post("/login", data={"api_key": viewer_key, "csrf_token": token.group(1)})
    assert signed.status_code == 303
    (own,) = rp.api.get("/api/v1/auth/sessions/mine", key=viewer_key).json()["items"]
    assert own["principal_type"] == "api_key"
    assert rp.api.get("/api/v1/auth/sessions", key=viewer_key).status_code == 403
    bob_handle = next(
        i["handle"]
        for i in rp.api.get("/api/v1/auth/sessions").json()["items"]
        if i["principal_id"] != own["principal_id"]
    )
    assert rp.api.delete(f"/api/v1/auth/sessions/mine/{bob_handle}", key=viewer_key).status_code == 404
    assert rp.api.delete(f"/api/v1/auth/sessions/{bob_handle}", key=viewer_key).status_code == 403
    assert rp.api.delete(f"/api/v1/auth/sessions/mine/{own['handle']}", key=viewer_key).status_code == 204
    assert signed_in_as(keyed) is None
    assert signed_in_as(bob) == "bob@example.test"
