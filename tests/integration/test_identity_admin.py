"""Administration of federated identity on both databases: disabling a provider ends its sessions (and then
it can be deleted), a user's direct grant is listed and removed (ending the user's sessions), a key's
grant route refuses a user's grant, break-glass sessions stop resolving when break-glass is switched off,
and a back-channel logout naming sid and sub ends a session opened without a sid."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from certctl.auth.config import IdentityConfig
from certctl.domain.rbac import ScopeType, global_access
from certctl.errors import Conflict
from certctl.services.audit import SYSTEM, RequestInfo
from certctl.services.identity import SignedInUser
from certctl.store.db import unit_of_work
from certctl.store.repositories import rows, web_sessions
from certctl.web.sessions import SessionPrincipal
from support.apps import ApiHarness, make_harness
from support.oidc_provider import dashboard_of


@pytest.fixture
def api(database_url: str) -> Iterator[ApiHarness]:
    with make_harness(database_url) as harness:
        yield harness


def provider(api: ApiHarness, name: str = "corp") -> dict[str, Any]:
    body = {
        "name": name,
        "issuer": "https://idp.example.test",
        "client_id": "certctl",
        "client_secret": "s3cr3t",
    }
    created = api.post("/api/v1/auth/oidc/providers", json=body)
    assert created.status_code == 201, created.text
    assert "client_secret" not in created.json() and created.json()["client_secret_set"] is True
    return dict(created.json())


def user_session(
    api: ApiHarness, provider_id: str, *, subject: str = "alice", sid: str | None = None
) -> tuple[str, str]:
    """A user (with a direct admin grant) and a dashboard session for it: (user id, cookie value)."""
    services = api.services
    dashboard = dashboard_of(api)

    async def make() -> tuple[str, str]:
        row = await services.identity.provider(provider_id)
        signed = SignedInUser(provider=row, subject=subject, email=f"{subject}@example.test", name=subject,
                              groups=["pki-admins"], sid=sid)  # fmt: skip
        async with unit_of_work(services.context.engine) as uow:
            user = await services.identity.record_sign_in(uow.connection, signed)
        with contextlib.suppress(Conflict):  # the same mapping for every session made here
            await services.identity.add_mapping(
                provider_id, group="pki-admins", role="viewer", scope=ScopeType.GLOBAL, scope_ref=None,
                actor=_admin(), request=None,
            )  # fmt: skip
        created = await dashboard.store.open(
            SessionPrincipal(
                type="user",
                id=user["id"],
                name=subject,
                provider_id=provider_id,
                idp_sid=sid,
                idp_sub=subject,
            ),
            request=RequestInfo(),
        )
        return user["id"], created.token

    return api.run(make)


def _admin() -> Any:
    from certctl.services.audit import Actor

    return Actor(id="t", name="t", type="system", access=global_access(["admin"]))


def page(api: ApiHarness, cookie: str) -> int:
    api.client.cookies.clear()
    api.client.cookies.set("__Host-certctl_session", cookie)
    response = api.client.get("/dashboard", follow_redirects=False)
    api.client.cookies.clear()
    return int(response.status_code)


def test_disabling_a_provider_ends_its_sessions_and_then_it_can_be_deleted(api: ApiHarness) -> None:
    corp = provider(api)
    _, cookie = user_session(api, corp["id"])
    assert page(api, cookie) == 200
    assert api.delete(f"/api/v1/auth/oidc/providers/{corp['name']}").status_code == 409
    disabled = api.patch(f"/api/v1/auth/oidc/providers/{corp['name']}", json={"enabled": False})
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert page(api, cookie) == 303
    assert api.delete(f"/api/v1/auth/oidc/providers/{corp['name']}").status_code == 204
    assert api.get(f"/api/v1/auth/oidc/providers/{corp['name']}").status_code == 404


def test_a_users_direct_grant_is_listed_and_removed_ending_its_sessions(api: ApiHarness) -> None:
    corp = provider(api)
    user_id, cookie = user_session(api, corp["id"])

    async def grant_admin() -> None:
        from certctl.domain.ids import new_id
        from certctl.store.repositories import grants

        now = api.services.context.clock.now()
        async with unit_of_work(api.services.context.engine) as uow:
            record = {
                "id": new_id("grant"),
                "principal_type": "user",
                "principal_id": user_id,
                "role": "admin",
            }
            record |= {
                "scope_type": "global",
                "scope_id": "",
                "expires_at": None,
                "granted_by": "t",
                "created_at": now,
            }
            await grants.add_grants(uow.connection, [record])

    api.run(grant_admin)
    shown = api.get(f"/api/v1/auth/users/{user_id}")
    assert shown.status_code == 200
    [held] = shown.json()["grants"]
    assert held["role"] == "admin"
    # The API-key grant route must not touch a user's grant, even given the user's id.
    assert api.delete(f"/api/v1/keys/{user_id}/grants/{held['id']}").status_code == 404
    viewer = api.key_for("viewer")
    assert api.delete(f"/api/v1/auth/users/{user_id}/grants/{held['id']}", key=viewer).status_code == 403
    assert page(api, cookie) == 200
    assert api.delete(f"/api/v1/auth/users/{user_id}/grants/{held['id']}").status_code == 204
    assert api.get(f"/api/v1/auth/users/{user_id}").json()["grants"] == []
    assert page(api, cookie) == 303  # the role change ended the session
    assert api.delete(f"/api/v1/auth/users/{user_id}/grants/{held['id']}").status_code == 404
    assert api.get("/api/v1/auth/users/usr_nope").status_code == 404


def test_logout_naming_sid_and_sub_ends_a_session_opened_without_a_sid(api: ApiHarness) -> None:
    corp = provider(api)
    _, without_sid = user_session(api, corp["id"], subject="alice", sid=None)
    _, other_sid = user_session(api, corp["id"], subject="alice", sid="sid-other")
    _, bob = user_session(api, corp["id"], subject="bob", sid=None)

    async def logout() -> list[str]:
        async with unit_of_work(api.services.context.engine) as uow:
            return await web_sessions.end_sessions(
                uow.connection, provider_id=corp["id"], idp_sid="sid-current", idp_sub="alice"
            )

    assert len(api.run(logout)) == 1
    assert page(api, without_sid) == 303
    assert page(api, other_sid) == 200  # a session the provider knows by another sid stays
    assert page(api, bob) == 200


def test_break_glass_sessions_stop_resolving_when_break_glass_is_off(database_url: str) -> None:
    with make_harness(database_url, identity=IdentityConfig(breakglass_enabled=True)) as api:
        store = dashboard_of(api).store

        async def open_session() -> str:
            principal = SessionPrincipal(
                type="breakglass", id="ops", name="ops", access=global_access(["admin"])
            )
            return str((await store.open(principal, request=RequestInfo())).token)

        cookie = api.run(open_session)
        assert page(api, cookie) == 200
        store.breakglass_enabled = False  # as after a restart with CERTCTL_BREAKGLASS_ENABLED=false
        assert page(api, cookie) == 303


def test_a_session_ended_by_another_process_stops_within_the_sync(api: ApiHarness) -> None:
    """Another server process ends a session by deleting its row and writing the change log; this
    process, which cached the session, follows the log and stops accepting the cookie within seconds."""
    store = dashboard_of(api).store

    async def open_and_resolve() -> tuple[str, str]:
        made = await api.services.api_keys.create(
            name="elsewhere", roles=["viewer"], expires_in=None, actor=SYSTEM
        )
        principal = SessionPrincipal(type="api_key", id=str(made.key["id"]), name="elsewhere")
        created = await store.open(principal, request=RequestInfo())
        assert await store.resolve(created.token) is not None
        return created.token, created.session.id_sha256

    async def end_elsewhere(session_id: str) -> None:  # as another process does: no in-process signal
        async with unit_of_work(api.services.context.engine) as uow:
            await uow.connection.execute(rows.SESSIONS.delete().where(rows.SESSIONS.c.id == session_id))
            await uow.connection.execute(
                web_sessions.CHANGES.insert().values(
                    session_id=session_id, changed_at=api.services.context.clock.now()
                )
            )

    token, session_id = api.run(open_and_resolve)

    async def resolves() -> bool:
        return await store.resolve(token) is not None

    deadline = time.monotonic() + 15
    while time.monotonic() - store._synced_at > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert api.run(resolves)  # reused from this process's cache
    api.run(lambda: end_elsewhere(session_id))
    while api.run(resolves) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not api.run(resolves)
