"""Every /api/v1 route declares its permission, and every default role gets exactly what it holds."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from certctl.api.app import ROUTERS
from certctl.api.deps import Authenticated, Need, Public
from certctl.domain.rbac import BUILTIN_ROLES
from support.apps import ApiHarness


def _routes(api: ApiHarness) -> list[tuple[APIRoute, str | None]]:
    found = []
    for route in (r for router in ROUTERS for r in router.routes):
        assert isinstance(route, APIRoute)
        markers = Need | Public | Authenticated
        declared = [d.call for d in route.dependant.dependencies if isinstance(d.call, markers)]
        assert len(declared) == 1, f"{route.methods} {route.path} must declare exactly one permission"
        permission = declared[0].permission if isinstance(declared[0], Need) else None
        found.append((route, permission))
    return found


def test_every_route_declares_a_permission(api: ApiHarness) -> None:
    routes = _routes(api)
    assert len(routes) > 40
    walked = {(m, r.path) for r, _ in routes for m in r.methods}
    published = api.client.get("/api/v1/openapi.json").json()["paths"]
    listed = {(m.upper(), p) for p, ops in published.items() for m in ops if p.startswith("/api/")}
    assert listed <= walked, f"routes outside the walked routers: {listed - walked}"


SELF_SERVICE = {("POST", "/api/v1/keys/{key_id}/rotate")}
"""Routes whose handler narrows the declared permission to the caller's own resource (tested apart)."""
AGENT_OWN = "/api/v1/agents/{agent_id}/"
"""An agent's own routes take an agent credential, never an API key (test_agents_api.py)."""


@pytest.mark.parametrize("role", sorted(BUILTIN_ROLES))
def test_route_role_matrix(api: ApiHarness, role: str) -> None:
    key = api.key_for(role)
    for route, permission in _routes(api):
        if permission is None or any((m, route.path) in SELF_SERVICE for m in route.methods):
            continue
        if route.path.startswith(AGENT_OWN):
            continue
        path = re.sub(r"\{[^}]+\}", "does-not-exist", route.path)
        for method in sorted(route.methods):
            response = api.client.request(
                method, path, headers=api.headers(key) | {"Content-Type": "application/json"}
            )
            allowed = permission in BUILTIN_ROLES[role]
            if allowed:
                assert response.status_code != 403, f"{role} refused {method} {route.path}"
            else:
                assert response.status_code == 403, (
                    f"{role} allowed {method} {route.path}: {response.status_code}"
                )


def test_self_rotation_needs_only_rotate_self(api: ApiHarness) -> None:
    cli_key = api.key_for("cli")
    me = api.get("/api/v1/auth/me", key=cli_key).json()
    other = api.get("/api/v1/auth/me").json()
    assert api.post(f"/api/v1/keys/{other['id']}/rotate", key=cli_key).status_code == 403
    rotated = api.post(f"/api/v1/keys/{me['id']}/rotate", key=cli_key)
    assert rotated.status_code == 200
    assert api.get("/api/v1/auth/me", key=rotated.json()["secret"]).json()["id"] == me["id"]
    operator = api.key_for("operator")
    operator_id = api.get("/api/v1/auth/me", key=operator).json()["id"]
    assert api.post(f"/api/v1/keys/{operator_id}/rotate", key=operator).status_code == 403
