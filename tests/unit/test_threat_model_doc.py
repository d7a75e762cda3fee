"""docs/operator/auth-threat-model.md stays true to the code: its review date, its one table per threat axis,
every repository file it (and the SSO guide) names, and its SQL checks, which run against a migrated
database on each engine the suite covers so that they follow the schema."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from certctl.store.models import (
    ApiKey,
    AuditEvent,
    BreakGlassAccount,
    OidcFirstAdmin,
    OidcGroupMapping,
    OidcProvider,
    RoleGrant,
    SessionSigningKey,
    User,
    WebSession,
    table_of,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operator" / "auth-threat-model.md"
SSO_GUIDE = ROOT / "docs" / "operator" / "sso.md"
REASON_SOURCES = (ROOT / "src/certctl/auth/oidc_tokens.py", ROOT / "src/certctl/web/oidc.py")
AUDIT_ACTION_SOURCES = (ROOT / "src/certctl/web/oidc.py", ROOT / "src/certctl/services/identity.py")

AXES = (
    "Token forgery",
    "Session hijacking",
    "IdP compromise",
    "Back-channel logout failures",
    "Group-claim manipulation",
    "Bootstrap risks",
    "Break-glass risks",
    "Token leaks",
)
CATALOGUE_COLUMNS = ["threat", "defence", "where", "residual risk"]
REPOSITORY_PREFIXES = ("src/", "docs/", "tests/", "contrib/", "bench/")
REQUIRED_CHECKS = frozenset(
    {
        "provider-count-drift",
        "sessions-per-actor",
        "unmapped-per-day",
        "breakglass-use",
        "first-admin-invariant",
        "signing-key-gc",
        "api-keys-without-expiry",
        "admin-count",
    }
)
ENGINES = ("sqlite", "postgresql")

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def without_fences(markdown: str) -> str:
    return FENCE.sub("", markdown)


def repository_paths(markdown: str, *, page: Path) -> set[str]:
    """Repository paths a page names: code spans that start with a top-level folder, and relative links."""
    prose = without_fences(markdown)
    found: set[str] = set()
    for span in CODE_SPAN.findall(prose):
        candidate = span.strip()
        if candidate.startswith(REPOSITORY_PREFIXES) and " " not in candidate:
            found.add(candidate.split("#")[0].split("::")[0].rstrip(".,;:"))
    for target in LINK.findall(prose):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        resolved = (page.parent / target.split("#")[0]).resolve()
        found.add(resolved.relative_to(ROOT).as_posix())
    return found


def section(markdown: str, heading: str) -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\n", markdown, re.MULTILINE)
    assert match is not None, f"no section {heading!r}"
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(markdown, match.end())
    return markdown[match.end() : end.start() if end else len(markdown)]


def table_rows(text_block: str) -> list[list[str]]:
    rows = []
    for line in text_block.splitlines():
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.replace("\\|", "\x00").strip().strip("|").split("|")]
            rows.append([cell.replace("\x00", "|") for cell in cells])
    return rows


@dataclass(frozen=True)
class Check:
    name: str
    engine: str | None
    sql: str


def sql_checks(markdown: str) -> list[Check]:
    checks = []
    for block in SQL_BLOCK.findall(markdown):
        meta = dict(re.findall(r"^-- (check|engine): (\S+)$", block, re.MULTILINE))
        assert "check" in meta, f"an SQL block without '-- check: <name>':\n{block}"
        sql = "\n".join(line for line in block.splitlines() if not line.startswith("--")).strip()
        checks.append(Check(name=meta["check"], engine=meta.get("engine"), sql=sql))
    return checks


@pytest.fixture(scope="module")
def page() -> str:
    return DOC.read_text()


def test_the_header_carries_a_review_date(page: str) -> None:
    header = page.splitlines()[:6]
    stamps = [line for line in header if line.startswith("Last reviewed:")]
    assert len(stamps) == 1, "a 'Last reviewed: YYYY-MM-DD' line belongs under the title"
    date.fromisoformat(stamps[0].removeprefix("Last reviewed:").strip())


def test_it_is_the_only_threat_model_document() -> None:
    assert sorted((ROOT / "docs").rglob("auth-threat-model*")) == [DOC]


@pytest.mark.parametrize("axis", AXES)
def test_each_axis_has_its_own_catalogue_table(page: str, axis: str) -> None:
    catalogue = section(page, "Threat catalogue")
    rows = table_rows(section(catalogue, axis))
    assert rows, f"no table under {axis!r}"
    assert [cell.lower() for cell in rows[0]] == CATALOGUE_COLUMNS
    body = [row for row in rows[2:] if any(row)]
    assert body, f"the {axis!r} table has no threats"
    for row in body:
        assert len(row) == len(CATALOGUE_COLUMNS) and all(row), f"incomplete row under {axis!r}: {row}"


@pytest.mark.parametrize("document", [DOC, SSO_GUIDE], ids=lambda p: p.name)
def test_every_file_it_names_exists(document: Path) -> None:
    named = repository_paths(document.read_text(), page=document)
    assert named, "expected the page to name files"
    missing = []
    for name in sorted(named):
        matches = list(ROOT.glob(name)) if "*" in name else [ROOT / name]
        if not any(path.exists() for path in matches):
            missing.append(name)
    assert not missing, f"{document.name} names files that do not exist: {missing}"


def slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    titles = re.findall(r"^#+ (.+)$", without_fences(document.read_text()), re.MULTILINE)
    return {slug(title) for title in titles}


@pytest.mark.parametrize("document", [DOC, SSO_GUIDE], ids=lambda p: p.name)
def test_every_anchor_it_links_to_exists(document: Path) -> None:
    broken = []
    for target in LINK.findall(without_fences(document.read_text())):
        if target.startswith(("http://", "https://")) or "#" not in target:
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    assert not broken, f"{document.name} links to headings that do not exist: {broken}"


def test_the_required_checks_are_there_and_variants_come_in_pairs(page: str) -> None:
    checks = sql_checks(page)
    names = {check.name for check in checks}
    assert names >= REQUIRED_CHECKS, f"missing checks: {sorted(REQUIRED_CHECKS - names)}"
    for name in names:
        engines = sorted(str(c.engine) for c in checks if c.name == name)
        assert engines in (["None"], sorted(ENGINES)), f"{name}: one portable query, or one per engine"


def test_the_sso_guide_lists_every_refusal_reason_and_audit_action() -> None:
    guide = SSO_GUIDE.read_text()
    listed = set(CODE_SPAN.findall(guide))
    reasons = refusal_reasons()
    assert len(reasons) > 20
    assert not reasons - listed, f"reason codes missing from sso.md: {sorted(reasons - listed)}"
    actions = {
        value
        for source in AUDIT_ACTION_SOURCES
        for value in string_constants(ast.parse(source.read_text()))
        if value.startswith("auth.oidc.")
    }
    assert not actions - listed, f"audit actions missing from sso.md: {sorted(actions - listed)}"


def string_constants(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def refusal_reasons() -> set[str]:
    """Reason codes of ``TokenRejected(reason, ...)`` and of the sign-in and logout refusals."""
    reasons: set[str] = set()
    for source in REASON_SOURCES:
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            position = {"TokenRejected": 0, "_refused": 2, "_logout_refused": 2}.get(name)
            if position is None or len(node.args) <= position:
                continue
            reasons.update(string_constants(node.args[position]))
    return reasons


# -- the checks against a real schema ------------------------------------------------------------------


def sync_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        url = url.set(drivername="sqlite")
    return create_engine(url)


def seed(engine: Engine, now: datetime) -> None:
    """A little of everything the checks look at, with times well clear of ``now``."""
    earlier, later = now - timedelta(days=1), now + timedelta(days=1)
    day = (now - timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)
    rows: list[tuple[Any, list[dict[str, Any]]]] = [
        (
            OidcProvider,
            [
                {
                    "id": "oidc_1",
                    "name": "corp",
                    "display_name": "Corp",
                    "issuer": "https://idp.example.com",
                    "client_id": "certctl",
                    "client_secret_sealed": None,
                    "scopes": ["openid"],
                    "groups_claim": "groups",
                    "groups_format": "list",
                    "allowed_email_domains": [],
                    "enabled": True,
                    "created_at": earlier,
                    "updated_at": earlier,
                }
            ],
        ),
        (
            User,
            [
                {
                    "id": "user_1",
                    "provider_id": "oidc_1",
                    "subject": "alice",
                    "email": "alice@example.com",
                    "name": "Alice",
                    "groups": ["certctl-admins"],
                    "created_at": earlier,
                    "last_login_at": earlier,
                }
            ],
        ),
        (
            OidcGroupMapping,
            [
                {
                    "id": "map_1",
                    "provider_id": "oidc_1",
                    "group_name": "certctl-admins",
                    "role": "admin",
                    "scope_type": "global",
                    "scope_id": "",
                    "created_by": "setup",
                    "created_at": earlier,
                }
            ],
        ),
        (
            OidcFirstAdmin,
            [
                {
                    "slot": 1,
                    "user_id": "user_1",
                    "provider_id": "oidc_1",
                    "group_name": "certctl-admins",
                    "granted_at": earlier,
                }
            ],
        ),
        (
            ApiKey,
            [
                api_key("key_live", now=earlier, expires_at=None, revoked_at=None),
                api_key("key_revoked", now=earlier, expires_at=None, revoked_at=earlier),
                api_key("key_expiring", now=earlier, expires_at=later, revoked_at=None),
            ],
        ),
        (
            RoleGrant,
            [
                grant("grant_key", "api_key", "key_live", "admin", "setup", earlier),
                grant("grant_revoked_key", "api_key", "key_revoked", "admin", "setup", earlier),
                grant("grant_first_admin", "user", "user_1", "admin", "oidc-bootstrap", earlier),
                grant("grant_orphan", "user", "user_gone", "viewer", "setup", earlier),
            ],
        ),
        (
            WebSession,
            [
                session("a" * 64, "live", principal=("user", "user_1"), now=earlier, expires_at=later),
                session(
                    "b" * 64, "expired", principal=("api_key", "key_live"), now=earlier, expires_at=earlier
                ),
            ],
        ),
        (
            SessionSigningKey,
            [
                signing_key("key_active", created_at=earlier, retired_at=None, verify_until=None),
                signing_key("key_retiring", created_at=earlier, retired_at=earlier, verify_until=later),
                signing_key("key_dead", created_at=day, retired_at=day, verify_until=earlier),
            ],
        ),
        (
            BreakGlassAccount,
            [
                {
                    "id": "bga_1",
                    "username": "emergency",
                    "password_hash": "$argon2id$placeholder",
                    "failed_attempts": 0,
                    "locked_until": None,
                    "created_at": earlier,
                    "updated_at": earlier,
                    "last_used_at": earlier,
                }
            ],
        ),
        (
            AuditEvent,
            [
                audit_event(1, "auth.oidc.provider_create", "oidc_1", day, {"name": "corp"}),
                audit_event(2, "auth.oidc.unmapped", "user_1", day, {"groups": ["x"]}),
                audit_event(3, "auth.oidc.unmapped", "user_1", day + timedelta(minutes=30), {}),
                audit_event(4, "auth.oidc.login_failed", "", day, {"reason": "state_expired"}),
                audit_event(5, "breakglass.login", "emergency", day, {"username": "emergency"}),
            ],
        ),
    ]
    with engine.begin() as connection:
        for model, records in rows:
            connection.execute(table_of(model).insert(), records)


def api_key(
    key_id: str, *, now: datetime, expires_at: datetime | None, revoked_at: datetime | None
) -> dict[str, Any]:
    return {
        "id": key_id,
        "name": key_id,
        "prefix": "cctl_" + key_id[:7],
        "secret_sha256": key_id.ljust(64, "0"),
        "created_by": "setup",
        "created_at": now,
        "expires_at": expires_at,
        "revoked_at": revoked_at,
        "last_used_at": None,
    }


def grant(grant_id: str, kind: str, principal: str, role: str, by: str, now: datetime) -> dict[str, Any]:
    return {
        "id": grant_id,
        "principal_type": kind,
        "principal_id": principal,
        "role": role,
        "scope_type": "global",
        "scope_id": "",
        "expires_at": None,
        "granted_by": by,
        "created_at": now,
    }


def session(
    row_id: str, handle: str, *, principal: tuple[str, str], now: datetime, expires_at: datetime
) -> dict[str, Any]:
    kind, ident = principal
    return {
        "id": row_id,
        "handle": handle,
        "principal_type": kind,
        "principal_id": ident,
        "api_key_id": ident if kind == "api_key" else None,
        "user_id": ident if kind == "user" else None,
        "provider_id": "oidc_1" if kind == "user" else None,
        "idp_sid": None,
        "idp_sub": None,
        "csrf_sha256": "c" * 64,
        "bind_sha256": None,
        "client_ip": "127.0.0.1",
        "user_agent": "test",
        "created_at": now,
        "last_seen_at": now,
        "expires_at": expires_at,
    }


def signing_key(
    key_id: str, *, created_at: datetime, retired_at: datetime | None, verify_until: datetime | None
) -> dict[str, Any]:
    return {
        "id": key_id,
        "secret_sealed": b"sealed",
        "created_at": created_at,
        "retired_at": retired_at,
        "verify_until": verify_until,
    }


def audit_event(
    number: int, action: str, resource: str, at: datetime, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "event_id": f"evt_{number}",
        "occurred_at": at,
        "actor": "test",
        "actor_type": "unknown",
        "action": action,
        "resource_type": "test",
        "resource_id": resource,
        "outcome": "success",
        "details": details,
        "body_sha256": "",
        "latency_ms": 0.0,
        "request_id": "",
        "event_hash": str(number).rjust(64, "0"),
    }


Rows = Sequence[dict[str, Any]]


def only(rows: Rows) -> dict[str, Any]:
    assert len(rows) == 1, rows
    return rows[0]


EXPECTED: dict[str, Callable[[Rows], bool]] = {
    "provider-count-drift": lambda rows: (
        only(rows) == {"providers": 1, "enabled_providers": 1, "providers_per_audit": 1}
    ),
    "provider-list": lambda rows: [r["name"] for r in rows] == ["corp"],
    "sessions-per-actor": lambda rows: (
        [(r["principal_type"], r["principal_id"], r["sessions"]) for r in rows] == [("user", "user_1", 1)]
    ),
    "unmapped-per-day": lambda rows: [(r["refusals"], r["users"]) for r in rows] == [(2, 1)],
    "login-failures-by-reason": lambda rows: (
        [(r["reason"], r["failures"]) for r in rows] == [("state_expired", 1)]
    ),
    "breakglass-use": lambda rows: [r["action"] for r in rows] == ["breakglass.login"],
    "breakglass-account": lambda rows: only(rows)["accounts"] == 1,
    "first-admin-invariant": lambda rows: (
        only(rows) == {"rows_present": 1, "foreign_slots": 0, "bootstrap_grants": 1}
    ),
    "first-admin-detail": lambda rows: only(rows)["email"] == "alice@example.com",
    "signing-key-gc": lambda rows: [r["id"] for r in rows] == ["key_dead"],
    "signing-keys-active": lambda rows: only(rows)["active_keys"] == 1,
    "api-keys-without-expiry": lambda rows: [r["id"] for r in rows] == ["key_live"],
    "admin-count": lambda rows: {r["principal_type"]: r["admins"] for r in rows} == {"api_key": 1, "user": 1},
    "admin-group-mappings": lambda rows: [r["group_name"] for r in rows] == ["certctl-admins"],
    "stale-api-keys": lambda rows: {r["id"] for r in rows} == {"key_live", "key_expiring"},
    "orphaned-user-grants": lambda rows: [r["id"] for r in rows] == ["grant_orphan"],
}


def test_every_check_runs_on_this_engine_and_finds_what_was_seeded(database_url: str, page: str) -> None:
    engine = sync_engine(database_url)
    dialect = engine.dialect.name
    try:
        seed(engine, datetime.now(UTC))
        ran = set()
        with engine.connect() as connection:
            for check in sql_checks(page):
                if check.engine not in (None, dialect):
                    continue
                rows = [dict(r) for r in connection.execute(text(check.sql)).mappings()]
                expected = EXPECTED.get(check.name)
                assert expected is None or expected(rows), f"{check.name} on {dialect}: {rows}"
                ran.add(check.name)
        assert ran >= REQUIRED_CHECKS
        assert set(EXPECTED) <= ran, f"checks expected but no longer in the document: {set(EXPECTED) - ran}"
    finally:
        engine.dispose()
