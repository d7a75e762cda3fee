"""docs/operator/rbac.md is generated from the catalogue; it must never drift from the code."""

from __future__ import annotations

from pathlib import Path

from certctl.domain.rbac import BUILTIN_ROLES, PERMISSIONS
from certctl.domain.rbac_doc import render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "operator" / "rbac.md"


def test_rbac_page_matches_the_catalogue() -> None:
    assert PAGE.read_text() == render(), "run `make docs` and commit docs/operator/rbac.md"


def test_catalogue_is_consistent() -> None:
    for role, permissions in BUILTIN_ROLES.items():
        assert permissions <= set(PERMISSIONS), role
    assert BUILTIN_ROLES["auditor"] == {"audit.read", "audit.export"}
    assert BUILTIN_ROLES["cli"] - BUILTIN_ROLES["operator"] == {"auth.key.rotate_self"}
    assert not BUILTIN_ROLES["mcp"] & {"cert.revoke", "cert.delete", "profile.delete"}
    assert BUILTIN_ROLES["mcp"] < BUILTIN_ROLES["operator"]
