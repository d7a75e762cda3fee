"""Render ``docs/operator/rbac.md`` from the catalogue (``python -m certctl.domain.rbac_doc > ...``).

A test fails when the committed page and this rendering differ, so the page never drifts from the code.
"""

from __future__ import annotations

from certctl.domain.rbac import BUILTIN_DESCRIPTIONS, BUILTIN_ROLES, PERMISSIONS, is_scopable

INTRO = """# Roles and permissions

<!-- Generated from src/certctl/domain/rbac.py by `make docs`; do not edit by hand. -->

Every `/api/v1` route needs one permission from the catalogue below (a test calls every route with every
built-in role). A principal holds **grants**: a role, a scope and an optional expiry.

- **Scope**: `global`, one `profile`, or one `issuer`. Only *scopable* permissions (certificates,
  profiles, issuers, approvals) take effect under a narrower scope; a scoped grant confers nothing else.
  Lists are filtered to what the grants cover, and a resource outside them answers 404.
- **Expiry**: a grant with `expires_at` stops working at that instant (time-bound access).
- **Escalation guard**: granting or revoking needs `auth.role.assign`, and nobody can hand out (or take
  away) a permission they do not hold themselves in that scope. A custom role can only be given
  permissions its editor holds globally. The last live global admin cannot be removed.
- **Custom roles**: `POST /api/v1/auth/roles`, `PATCH` (replace, `add`, `remove`), `DELETE` (refused while
  granted). Built-in roles cannot be changed.

```
POST /api/v1/keys/{key}/grants {"role": "operator", "scope": "profile", "scope_id": "payments-tls",
                                "expires_in_days": 30}
DELETE /api/v1/keys/{key}/grants/{grant}
GET /api/v1/auth/me            # identity, grants, effective permissions
```
"""


def render() -> str:
    roles = list(BUILTIN_ROLES)
    lines = [INTRO, "## Built-in roles", "", "| role | what it is for | permissions |", "|---|---|---|"]
    for role in roles:
        lines.append(f"| `{role}` | {BUILTIN_DESCRIPTIONS[role]} | {len(BUILTIN_ROLES[role])} |")
    lines += ["", "## Permission catalogue", ""]
    lines.append("| permission | scopable | " + " | ".join(roles) + " | meaning |")
    lines.append("|---|---|" + "---|" * len(roles) + "---|")
    for permission, meaning in PERMISSIONS.items():
        marks = " | ".join("x" if permission in BUILTIN_ROLES[r] else "" for r in roles)
        scopable = "yes" if is_scopable(permission) else ""
        lines.append(f"| `{permission}` | {scopable} | {marks} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
