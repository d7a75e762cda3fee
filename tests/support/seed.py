"""The minimal hierarchy most tests need: root -> issuing CA, issuer ``local``, profile ``default``."""

from __future__ import annotations

from typing import Any

from certctl.pki.builder import Subject
from certctl.services.audit import SYSTEM
from certctl.services.cas import NewCa
from certctl.services.container import Services
from certctl.services.profiles import default_rules

DEFAULT_RULES: dict[str, Any] = default_rules(allowed_ekus=["serverAuth", "clientAuth"])


async def seed_minimal(services: Services) -> dict[str, Any]:
    root = await services.cas.create(
        spec=NewCa(name="Test Root", subject=Subject("Test Root"), validity_days=3650), actor=SYSTEM
    )
    issuing = await services.cas.create(
        spec=NewCa(
            name="Test Issuing",
            subject=Subject("Test Issuing"),
            parent=root["id"],
            validity_days=1825,
            path_length=0,
        ),
        actor=SYSTEM,
    )
    await services.profiles.create(
        values={"name": "default", "description": "tests", "rules": DEFAULT_RULES}, actor=SYSTEM
    )
    await services.issuers.create(
        values={"name": "local", "type": "local", "options": {"ca": issuing["id"]}, "enabled": True},
        actor=SYSTEM,
    )
    return {"root": root, "issuing": issuing}
