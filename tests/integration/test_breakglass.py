"""The break-glass admin over the real app and database: off means 404, Argon2id credential, sign-in to
the dashboard as admin, refusals audited with their reason, lockout with a timed unlock, the per-client
attempt budget, sessions ended on a credential change, notifications, and no secret anywhere."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import select, update

from certctl.auth.config import IdentityConfig
from certctl.domain.clock import FrozenClock
from certctl.scheduler.runner import job_worker
from certctl.services.breakglass import AttemptLimiter
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, rows
from certctl.store.repositories.breakglass import ACCOUNTS
from support.apps import ApiHarness, make_harness
from support.cli import ok, ok_json, one_error_line, run
from support.live import LiveServer, start_live_server
from support.receivers import WEBHOOK_SECRET, http_receiver

BASE = "/api/v1/auth/breakglass"
PAGE = "/auth/breakglass"
SESSION = "__Host-certctl_session"
PASSWORD = "correct horse battery staple 42"
OTHER_PASSWORD = "a different long passphrase 7"
ENABLED = IdentityConfig(breakglass_enabled=True)


@pytest.fixture
def bg(database_url: str) -> Iterator[ApiHarness]:
    """The app with break-glass on and the services' clock frozen (tests move it)."""
    with make_harness(database_url, identity=ENABLED) as harness:
        harness.services.context.clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
        yield harness


def advance(api: ApiHarness, delta: timedelta) -> None:
    clock = api.services.context.clock
    assert isinstance(clock, FrozenClock)
    clock.at += delta


def set_account(api: ApiHarness, username: str = "ops", password: str = PASSWORD) -> dict[str, Any]:
    response = api.client.put(BASE, headers=api.headers(), json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def form_token(api: ApiHarness) -> str:
    page = api.client.get(PAGE)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def attempt(api: ApiHarness, username: str, password: str) -> Any:
    data = {"username": username, "password": password, "csrf_token": form_token(api)}
    return api.client.post(PAGE, data=data, follow_redirects=False)


def events(api: ApiHarness, action: str) -> list[dict[str, Any]]:
    async def load() -> list[dict[str, Any]]:
        async with read_only(api.services.context.engine) as connection:
            found = await audit.list_events(connection, audit.AuditQuery(action=action, limit=500))
            return found[::-1]  # oldest first

    return api.run(load)


def all_events(api: ApiHarness) -> list[dict[str, Any]]:
    async def load() -> list[dict[str, Any]]:
        async with read_only(api.services.context.engine) as connection:
            return [dict(r) for r in (await connection.execute(select(audit.EVENTS))).mappings()]

    return api.run(load)


def stored_hash(api: ApiHarness) -> str:
    async def load() -> str:
        async with read_only(api.services.context.engine) as connection:
            return str((await connection.execute(select(ACCOUNTS.c.password_hash))).scalar_one())

    return api.run(load)


def breakglass_sessions(api: ApiHarness) -> int:
    async def load() -> int:
        async with read_only(api.services.context.engine) as connection:
            statement = select(rows.SESSIONS).where(rows.SESSIONS.c.principal_type == "breakglass")
            return len((await connection.execute(statement)).all())

    return api.run(load)


def reasons(api: ApiHarness) -> list[str]:
    return [e["details"]["reason"] for e in events(api, "breakglass.login_failed")]


def without_instance(response: Any) -> tuple[int, str, dict[str, Any]]:
    body = response.json()
    body.pop("instance", None)
    return response.status_code, response.headers["content-type"], body


def test_off_by_default_every_route_answers_like_an_unknown_path(api: ApiHarness) -> None:
    unknown_page = without_instance(api.client.get("/no-such-page"))
    assert unknown_page[0] == 404
    assert without_instance(api.client.get(PAGE)) == unknown_page
    assert without_instance(api.client.post(PAGE, data={"username": "a", "password": "b"})) == unknown_page
    unknown_api = without_instance(api.get("/api/v1/auth/no-such-thing"))
    for method, path in (("GET", BASE), ("PUT", BASE), ("POST", f"{BASE}/unlock"), ("DELETE", BASE)):
        body = {"username": "ops", "password": PASSWORD} if method == "PUT" else None
        response = api.client.request(method, path, headers=api.headers(), json=body)
        assert without_instance(response) == unknown_api, (method, path)
    viewer = api.get(BASE, key=api.key_for("viewer"))
    assert viewer.status_code == 403, "without the permission the answer is the same on or off"
    assert api.client.get(BASE).status_code == 401


def breakglass_warnings(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.levelno == logging.WARNING and "break-glass" in r.getMessage()]


def test_a_warning_is_logged_at_start_when_enabled(bg: ApiHarness, caplog: pytest.LogCaptureFixture) -> None:
    [warning] = breakglass_warnings(caplog.get_records("setup"))
    assert warning.name == "certctl.api" and "ENABLED" in warning.getMessage()


def test_no_warning_at_start_when_disabled(api: ApiHarness, caplog: pytest.LogCaptureFixture) -> None:
    assert breakglass_warnings(caplog.get_records("setup")) == []


def test_set_then_sign_in_lands_on_the_dashboard_as_admin(bg: ApiHarness) -> None:
    assert bg.get(BASE).json() == {"configured": False}
    created = set_account(bg)
    assert created["username"] == "ops" and created["configured"] is True
    assert created["failed_attempts"] == 0 and created["locked"] is False
    assert stored_hash(bg).startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    form = bg.client.get(PAGE)
    assert 'action="/auth/breakglass"' in form.text and "<script>" not in form.text
    assert "style=" not in form.text
    response = attempt(bg, "ops", PASSWORD)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/dashboard"
    assert f"{SESSION}=" in response.headers.get("set-cookie", "")
    page = bg.client.get("/dashboard")
    assert page.status_code == 200
    assert "ops" in page.text
    for admin_page in ("/jobs", "/notifications", "/approvals"):
        assert bg.client.get(admin_page).status_code == 200, admin_page
    [login] = events(bg, "breakglass.login")
    assert login["actor"] == "ops" and login["actor_type"] == "breakglass"
    assert login["details"]["username"] == "ops"
    assert login["body_sha256"] == ""
    status = bg.get(BASE).json()
    assert status["last_used_at"] is not None
    [changed] = events(bg, "breakglass.credential_changed")
    assert changed["details"] == {"username": "ops", "sessions_ended": 0}


def test_a_hash_made_with_weaker_parameters_is_upgraded_at_sign_in(bg: ApiHarness) -> None:
    set_account(bg)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(PASSWORD)

    async def weaken() -> None:
        async with unit_of_work(bg.services.context.engine) as uow:
            await uow.connection.execute(update(ACCOUNTS).values(password_hash=weak))

    bg.run(weaken)
    assert attempt(bg, "ops", PASSWORD).status_code == 303
    assert stored_hash(bg).startswith("$argon2id$v=19$m=65536,t=3,p=1$")


def test_each_failure_is_refused_alike_and_audited_with_its_reason(bg: ApiHarness) -> None:
    set_account(bg)
    wrong = attempt(bg, "ops", OTHER_PASSWORD)
    unknown = attempt(bg, "nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert SESSION not in wrong.headers.get("set-cookie", "")
    assert reasons(bg) == ["wrong_password", "unknown_user"]
    advance(bg, timedelta(seconds=61))  # past the attempt budget
    for _ in range(4):
        assert attempt(bg, "ops", OTHER_PASSWORD).status_code == 401
    advance(bg, timedelta(seconds=61))
    locked = attempt(bg, "ops", PASSWORD)
    assert locked.status_code == 401
    assert reasons(bg)[-1] == "locked"
    texts = {re.sub(r'value="[^"]*"', "", r.text) for r in (wrong, unknown, locked)}
    assert len(texts) == 1, "the page does not tell the reasons apart"
    failed = events(bg, "breakglass.login_failed")
    assert all(e["outcome"] == "failure" and e["body_sha256"] == "" for e in failed)
    assert breakglass_sessions(bg) == 0


def test_five_failures_lock_the_account_until_the_lock_passes(bg: ApiHarness) -> None:
    set_account(bg)
    for _ in range(5):
        assert attempt(bg, "ops", OTHER_PASSWORD).status_code == 401
    [lock] = events(bg, "breakglass.locked")
    assert lock["details"]["failed_attempts"] == 5
    status = bg.get(BASE).json()
    assert status["locked"] is True and status["failed_attempts"] == 5
    advance(bg, timedelta(minutes=14))
    assert attempt(bg, "ops", PASSWORD).status_code == 401, "still locked with the right password"
    assert reasons(bg)[-1] == "locked"
    advance(bg, timedelta(minutes=1, seconds=1))
    assert attempt(bg, "ops", PASSWORD).status_code == 303, "the lock lifted by itself"
    status = bg.get(BASE).json()
    assert status["locked"] is False and status["failed_attempts"] == 0 and status["locked_until"] is None


def test_a_failure_after_a_passed_lock_starts_a_fresh_count(bg: ApiHarness) -> None:
    set_account(bg)
    for _ in range(5):
        attempt(bg, "ops", OTHER_PASSWORD)
    advance(bg, timedelta(minutes=16))
    assert attempt(bg, "ops", OTHER_PASSWORD).status_code == 401
    status = bg.get(BASE).json()
    assert status["failed_attempts"] == 1 and status["locked"] is False
    assert len(events(bg, "breakglass.locked")) == 1


def test_an_administrator_unlocks_and_removes_the_account(bg: ApiHarness) -> None:
    set_account(bg)
    for _ in range(5):
        attempt(bg, "ops", OTHER_PASSWORD)
    assert bg.get(BASE, key=bg.key_for("operator")).status_code == 403
    assert bg.post(f"{BASE}/unlock", key=bg.key_for("operator")).status_code == 403
    unlocked = bg.post(f"{BASE}/unlock")
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["locked"] is False and unlocked.json()["failed_attempts"] == 0
    advance(bg, timedelta(seconds=61))
    assert attempt(bg, "ops", PASSWORD).status_code == 303
    assert breakglass_sessions(bg) == 1
    assert bg.delete(BASE).status_code == 204
    assert breakglass_sessions(bg) == 0
    assert bg.client.get("/dashboard", follow_redirects=False).status_code == 303
    assert bg.get(BASE).json() == {"configured": False}
    assert bg.post(f"{BASE}/unlock").status_code == 404
    assert attempt(bg, "ops", PASSWORD).status_code == 401
    assert reasons(bg)[-1] == "unknown_user"
    for action in ("breakglass.unlocked", "breakglass.removed"):
        assert len(events(bg, action)) == 1, action


def test_the_sixth_attempt_in_a_minute_from_one_client_gets_429(bg: ApiHarness) -> None:
    set_account(bg)
    for _ in range(5):
        assert attempt(bg, "nobody", OTHER_PASSWORD).status_code == 401
    refused = attempt(bg, "ops", PASSWORD)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert SESSION not in refused.headers.get("set-cookie", "")
    forged = bg.client.post(PAGE, data={"username": "ops", "password": PASSWORD, "csrf_token": "x"})
    assert forged.status_code == 429, "the budget is counted before anything else"
    assert reasons(bg).count("rate_limited") == 1, "one audit row per burst"
    assert reasons(bg).count("unknown_user") == 5, "no password was checked past the budget"
    advance(bg, timedelta(seconds=61))
    assert attempt(bg, "ops", PASSWORD).status_code == 303


def test_the_attempt_budget_is_per_client_and_bounded() -> None:
    clock = FrozenClock(datetime(2027, 1, 1, tzinfo=UTC))
    limiter = AttemptLimiter(clock.now, limit=5, max_clients=3)
    assert [limiter.admit("10.0.0.1") for _ in range(5)] == [None] * 5
    assert limiter.admit("10.0.0.1") == 60
    assert limiter.admit("10.0.0.2") is None, "another client has its own budget"
    clock.at += timedelta(seconds=30)
    assert limiter.admit("10.0.0.1") == 30
    for client in ("a", "b", "c"):
        limiter.admit(client)
    assert len(limiter._seen) == 3
    assert limiter.admit("10.0.0.1") is None, "the least recently seen client was forgotten"


def test_a_credential_change_ends_every_break_glass_session(bg: ApiHarness) -> None:
    set_account(bg)
    assert attempt(bg, "ops", PASSWORD).status_code == 303
    assert bg.client.get("/dashboard").status_code == 200
    set_account(bg, username="ops2", password=OTHER_PASSWORD)
    assert bg.client.get("/dashboard", follow_redirects=False).status_code == 303
    assert breakglass_sessions(bg) == 0
    changed = events(bg, "breakglass.credential_changed")[-1]
    assert changed["details"] == {"username": "ops2", "sessions_ended": 1, "previous_username": "ops"}
    assert attempt(bg, "ops", PASSWORD).status_code == 401
    assert attempt(bg, "ops2", PASSWORD).status_code == 401
    assert attempt(bg, "ops2", OTHER_PASSWORD).status_code == 303
    assert reasons(bg) == ["unknown_user", "wrong_password"]


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ops", "password": "too short"},
        {"username": "ops", "password": "x" * 1025},
        {"username": "bad name!", "password": PASSWORD},
        {"username": "", "password": PASSWORD},
        {"username": "ops", "password": PASSWORD, "role": "admin"},
        {"username": "ops"},
    ],
)
def test_a_bad_credential_is_refused_and_nothing_is_written(bg: ApiHarness, body: dict[str, Any]) -> None:
    response = bg.client.put(BASE, headers=bg.headers(), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "urn:certctl:problem:validation-error"
    if "password" in body:
        assert body["password"] not in response.text
    assert bg.get(BASE).json() == {"configured": False}
    assert events(bg, "breakglass.credential_changed") == []


def test_no_password_or_hash_in_logs_audit_or_answers(
    bg: ApiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # what the server emits (database drivers log parameters at DEBUG)
    caplog.set_level(logging.DEBUG, logger="certctl")
    answers = [json.dumps(set_account(bg))]
    digest = stored_hash(bg)
    answers += [attempt(bg, "ops", OTHER_PASSWORD).text, attempt(bg, "ops", PASSWORD).text]
    answers += [bg.get(BASE).text, bg.post(f"{BASE}/unlock").text]
    answers.append(
        bg.client.put(BASE, headers=bg.headers(), json={"username": "ops", "password": "short"}).text
    )
    trail = json.dumps(all_events(bg), default=str)
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    salt_and_tag = digest.rsplit("$", 2)[-2:]
    for secret in (PASSWORD, OTHER_PASSWORD, digest, *salt_and_tag):
        for where, text in (("logs", logged), ("audit", trail), ("answers", "\n".join(answers))):
            assert secret not in text, f"a secret leaked into the {where}"
    for event in all_events(bg):
        if event["action"].startswith("breakglass."):
            assert event["body_sha256"] == "", event["action"]


def test_each_use_becomes_a_breakglass_notification(bg: ApiHarness) -> None:
    set_account(bg)
    with http_receiver() as receiver:
        receiver.now = bg.services.context.clock.now
        hook = {"url": f"{receiver.url}/webhook", "hmac_secret": WEBHOOK_SECRET}
        channel = bg.post(
            "/api/v1/notifications/channels", json={"name": "sec", "type": "webhook", "secrets": hook}
        )
        assert channel.status_code == 201, channel.text
        rule = {"name": "bg", "channel_ids": [channel.json()["id"]], "event_types": ["breakglass.used"]}
        assert bg.post("/api/v1/notifications/rules", json=rule).status_code == 201
        assert attempt(bg, "ops", PASSWORD).status_code == 303
        for _ in range(4):
            attempt(bg, "ops", OTHER_PASSWORD)
        advance(bg, timedelta(seconds=61))
        attempt(bg, "ops", OTHER_PASSWORD)
        [login] = events(bg, "breakglass.login")
        [lock] = events(bg, "breakglass.locked")
        scan_at = max(login["occurred_at"], lock["occurred_at"]) + timedelta(seconds=1)
        producer = bg.services.notification_producer
        assert bg.run(lambda: producer.scan_audit(now=scan_at)) == 2
        worker = job_worker(bg.services, name="test-worker")
        while bg.run(worker.run_once):
            pass
        sent = sorted((r.json() for r in receiver.on("/webhook")), key=lambda p: str(p["title"]))
    assert [p["type"] for p in sent] == ["breakglass.used"] * 2
    assert [p["severity"] for p in sent] == ["critical"] * 2
    assert [p["title"] for p in sent] == [
        "Break-glass account ops locked after repeated failed sign-ins",
        "Break-glass account ops signed in",
    ]
    assert {p["key"] for p in sent} == {f"audit:{login['event_id']}", f"audit:{lock['event_id']}"}
    assert all(PASSWORD not in json.dumps(p) for p in sent)


@pytest.fixture(scope="module")
def breakglass_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_live_server(
        tmp_path_factory.mktemp("breakglass"), extra_env={"CERTCTL_BREAKGLASS_ENABLED": "true"}
    )
    try:
        yield server
    finally:
        server.stop()


def test_the_cli_sets_shows_unlocks_and_removes(breakglass_server: LiveServer, tmp_path: Path) -> None:
    live = breakglass_server
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD + "\n")
    ok(live, tmp_path, "breakglass", "set", "--username", "ops", "--password-file", str(secret_file))
    shown = ok_json(live, tmp_path, "breakglass", "status")
    assert shown["username"] == "ops" and shown["configured"] is True
    assert "password_hash" not in shown
    assert ok_json(live, tmp_path, "breakglass", "unlock")["failed_attempts"] == 0
    short = tmp_path / "short"
    short.write_text("short\n")
    refused = run(live, tmp_path, "breakglass", "set", "--username", "ops", "--password-file", str(short))
    assert one_error_line(refused, exit_code=2).startswith("error: ")
    no_terminal = run(live, tmp_path, "breakglass", "set", "--username", "ops")
    assert "--password-file" in one_error_line(no_terminal, exit_code=2)
    ok(live, tmp_path, "breakglass", "remove")
    assert ok_json(live, tmp_path, "breakglass", "status") == {"configured": False}
    log = live.log_file.read_text()
    assert "break-glass sign-in is ENABLED" in log
    assert PASSWORD not in log
