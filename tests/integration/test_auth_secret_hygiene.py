"""No sign-in secret leaks: every authentication flow is driven with logging at DEBUG, then no client
secret, authorization code, ID/access/refresh/logout token, cookie value, API key or break-glass password
may appear in what the app logged, in any column of any audit row, in the answers of the provider,
user, session and session-key endpoints, or in ``/metrics``.

Log records are split by thread: the app runs on the TestClient's event-loop thread, so what it logs
(including its outbound calls to the provider) is checked; the test's own HTTP clients, which log the
URLs they fetch (authorization codes included) on the main thread, are not the product.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from certctl.auth.config import IdentityConfig
from certctl.auth.oidc_tokens import BACKCHANNEL_LOGOUT_EVENT
from certctl.store.db import read_only
from certctl.store.repositories import audit
from support.apps import ApiHarness, make_harness
from support.oidc_provider import (
    LogoutReceiver,
    OpenIdProvider,
    RelyingParty,
    RelyingPartyBrowser,
    add_relying_party,
    logout_receiver,
    openid_provider_fixture,
)

openid_provider = openid_provider_fixture(scope="module")

SESSION = "__Host-certctl_session"
CSRF = "__Host-certctl_csrf"
PRELOGIN = "__Host-certctl_oidc"
LOGIN_FORM = "__Host-certctl_login"
PROVIDERS = "/api/v1/auth/oidc/providers"
BREAKGLASS_PASSWORD = "glass-Pw-never-in-logs-" + "7Hq2Lx9"
WRONG_BREAKGLASS_PASSWORD = "glass-Pw-wrong-attempt-" + "4Zt8Mv1"
STANDARD_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class AppLogs(logging.Handler):
    """Every record at DEBUG and above, formatted with its extra fields and exception text; records
    from threads other than the test's own are the app's."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.test_thread = threading.get_ident()
        self.app_lines: list[str] = []
        self.app_loggers: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.test_thread:
            return
        extra = {k: v for k, v in vars(record).items() if k not in STANDARD_RECORD_FIELDS}
        self.app_lines.append(f"{self.format(record)} {extra!r}")
        self.app_loggers.add(record.name)


@pytest.fixture
def app_logs(caplog: pytest.LogCaptureFixture) -> Iterator[AppLogs]:
    caplog.set_level(logging.DEBUG)
    handler = AppLogs()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.fixture(scope="module")
def receiver(openid_provider: OpenIdProvider) -> Iterator[LogoutReceiver]:
    with logout_receiver(openid_provider) as started:
        yield started


@dataclass
class Secrets:
    """Each secret with the fragments of it that must not appear either (a JWT's payload and signature,
    a signed cookie's id and MAC: a truncated or split copy is a leak too)."""

    items: dict[str, list[str]] = field(default_factory=dict)

    def add(self, label: str, value: str | None) -> None:
        assert value, f"nothing captured for {label}"
        parts = value.split(".")
        if len(parts) == 3 and label.endswith("token"):
            pieces = [value, parts[1], parts[2]]  # the header is no secret
        elif len(parts) == 3 and label.endswith("cookie"):
            pieces = [value, parts[0], parts[2]]  # nor is the signing key's id
        else:
            pieces = [value]
        self.items[label] = [p for p in pieces if len(p) >= 12]

    def found_in(self, text: str) -> list[str]:
        return [label for label, pieces in self.items.items() if any(p in text for p in pieces)]


def form_token(browser: RelyingPartyBrowser, path: str) -> str:
    page = browser.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def all_audit_rows(api: ApiHarness) -> list[dict[str, Any]]:
    async def load() -> list[dict[str, Any]]:
        async with read_only(api.services.context.engine) as connection:
            return [dict(r) for r in (await connection.execute(select(audit.EVENTS))).mappings()]

    return api.run(load)


def oidc_flows(rp: RelyingParty, secrets: Secrets) -> None:
    """A good sign-in, refused ones, and back-channel logout (real, replayed and forged tokens)."""
    alice = rp.browser()
    authorize = alice.start(rp.name)
    secrets.add("pre-login cookie", alice.cookie(PRELOGIN))
    callback = alice.authorize(authorize, "alice")
    secrets.add("authorization code", parse_qs(urlsplit(callback).query)["code"][0])
    assert alice.get(callback).status_code == 200
    assert alice.get("/dashboard").status_code == 200
    secrets.add("alice session cookie", alice.cookie(SESSION))
    secrets.add("alice csrf cookie", alice.cookie(CSRF))
    assert alice.get(callback).status_code == 400  # the same code and state again: refused

    carol = rp.browser()
    callback = carol.authorize(carol.start(rp.name), "carol")
    secrets.add("carol authorization code", parse_qs(urlsplit(callback).query)["code"][0])
    assert carol.get(callback).status_code == 403  # no role

    rp.transport.forge = lambda _answer, claims: rp.provider.sign(claims, alg="none")
    mallory = rp.browser()
    callback = mallory.authorize(mallory.start(rp.name), "alice")
    secrets.add("refused authorization code", parse_qs(urlsplit(callback).query)["code"][0])
    assert mallory.get(callback).status_code == 401
    rp.transport.forge = None

    for number, answer in enumerate(rp.transport.answers):
        for kind in ("id_token", "access_token", "refresh_token"):
            if kind in answer:
                secrets.add(f"{kind.replace('_', ' ')} {number} token", answer[kind])
    forged_logout = rp.provider.sign(
        {
            "iss": rp.provider.issuer,
            "aud": rp.client_id,
            "iat": int(rp.api.services.context.clock.now().timestamp()),
            "jti": "forged-jti-0001",
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
            "sub": "alice",
            "nonce": "not-allowed",
        }
    )
    secrets.add("forged logout token", forged_logout)
    assert (
        rp.api.client.post("/auth/oidc/back-channel-logout", data={"logout_token": forged_logout}).status_code
        == 400
    )

    rp.provider.end_session(
        alice.idp, client_id=rp.client_id, post_logout_redirect_uri="https://testserver/login"
    )
    (logout_token,) = rp.receiver.tokens_for(rp.client_id)
    secrets.add("logout token", logout_token)
    for expected in (200, 400):  # then replayed
        answer = rp.api.client.post("/auth/oidc/back-channel-logout", data={"logout_token": logout_token})
        assert answer.status_code == expected
    assert alice.get("/dashboard").status_code == 303


def api_key_flows(api: ApiHarness, rp: RelyingParty, secrets: Secrets) -> None:
    viewer_key = api.key_for("viewer")
    secrets.add("admin API key", api.admin_key)
    secrets.add("viewer API key", viewer_key)
    keyed = rp.browser()
    token = form_token(keyed, "/login")
    secrets.add("login form token", token)
    wrong = "cctl_" + "Wr0ngKeyNeverLogged" * 2
    secrets.add("wrong API key", wrong)
    assert keyed.post("/login", data={"api_key": wrong, "csrf_token": token}).status_code == 401
    token = form_token(keyed, "/login")
    signed = keyed.post("/login", data={"api_key": viewer_key, "csrf_token": token})
    assert signed.status_code == 303
    secrets.add("API-key session cookie", keyed.cookie(SESSION))
    secrets.add("API-key csrf cookie", keyed.cookie(CSRF))
    assert api.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401


def breakglass_flows(api: ApiHarness, rp: RelyingParty, secrets: Secrets) -> None:
    secrets.add("break-glass password", BREAKGLASS_PASSWORD)
    secrets.add("wrong break-glass password", WRONG_BREAKGLASS_PASSWORD)
    body = {"username": "ops", "password": BREAKGLASS_PASSWORD}
    assert api.client.put("/api/v1/auth/breakglass", headers=api.headers(), json=body).status_code == 200
    glass = rp.browser()
    for password, expected in ((WRONG_BREAKGLASS_PASSWORD, 401), (BREAKGLASS_PASSWORD, 303)):
        data = {"username": "ops", "password": password, "csrf_token": form_token(glass, "/auth/breakglass")}
        assert glass.post("/auth/breakglass", data=data).status_code == expected
    secrets.add("break-glass session cookie", glass.cookie(SESSION))


def test_no_sign_in_secret_reaches_logs_audit_api_answers_or_metrics(
    database_url: str, openid_provider: OpenIdProvider, receiver: LogoutReceiver, app_logs: AppLogs
) -> None:
    secrets = Secrets()
    with make_harness(database_url, identity=IdentityConfig(breakglass_enabled=True)) as api:
        rp = add_relying_party(api, openid_provider, receiver, mappings={"pki-admins": "admin"})
        try:
            secrets.add("client secret", rp.client_secret)
            spare = {"name": "spare", "issuer": openid_provider.issuer, "client_id": "spare-client"}
            first_secret, second_secret = "spare-Secret-never-shown-1", "spare-Secret-never-shown-2"
            secrets.add("spare client secret", first_secret)
            secrets.add("rotated spare client secret", second_secret)
            answers = [
                api.post(PROVIDERS, json=spare | {"client_secret": first_secret}).text,
                api.patch(f"{PROVIDERS}/spare", json={"client_secret": second_secret}).text,
                api.patch(f"{PROVIDERS}/{rp.name}", json={"client_secret": rp.client_secret}).text,
            ]
            oidc_flows(rp, secrets)
            api_key_flows(api, rp, secrets)
            breakglass_flows(api, rp, secrets)

            viewer_key = api.key_for("viewer")
            for path in (
                PROVIDERS,
                f"{PROVIDERS}/{rp.name}",
                f"{PROVIDERS}/spare",
                f"{PROVIDERS}/{rp.name}/mappings",
                "/api/v1/auth/users",
                "/api/v1/auth/sessions",
                "/api/v1/auth/session-keys",
                "/api/v1/audit?limit=500",
            ):
                answer = api.get(path)
                assert answer.status_code == 200, (path, answer.text)
                answers.append(answer.text)
            mine = api.get("/api/v1/auth/sessions/mine", key=viewer_key)
            assert len(mine.json()["items"]) == 1
            answers.append(mine.text)
            metrics = api.get("/metrics")
            assert metrics.status_code == 200
            audit_rows = all_audit_rows(api)
        finally:
            rp.close()

    actions = {row["action"] for row in audit_rows}
    assert {
        "auth.oidc.provider_create",
        "auth.oidc.provider_update",
        "auth.oidc.login",
        "auth.oidc.login_failed",
        "auth.oidc.unmapped",
        "auth.oidc.backchannel_logout",
        "auth.oidc.logout_rejected",
        "web.login",
        "web.login_failed",
        "breakglass.login",
        "breakglass.login_failed",
    } <= actions, actions
    assert any(name.startswith("httpx") for name in app_logs.app_loggers), app_logs.app_loggers
    assert len(secrets.items) >= 25

    places = {
        "the app's logs": "\n".join(app_logs.app_lines),
        "the audit trail": json.dumps(audit_rows, default=str),
        "the API answers": "\n".join(answers),
        "/metrics": metrics.text,
    }
    leaks = {where: secrets.found_in(text) for where, text in places.items()}
    assert leaks == {where: [] for where in places}
    assert "client_secret_sealed" not in places["the API answers"]
