"""Turn stored rows into JSON-ready API objects (datetimes as RFC 3339, no sealed material)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

HIDDEN = frozenset({"key_sealed", "secrets_sealed", "secret_sha256", "csrf_sha256"})


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items() if k not in HIDDEN}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return None
    return value
