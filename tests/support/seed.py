"""The minimal hierarchy most tests need: root -> issuing CA, issuer ``local``, profile ``default``."""

from __future__ import annotations

from typing import Any

from certctl.pki.builder import Subject
from certctl.services.audit import SYSTEM
from certctl.services.cas import NewCa
from certctl.services.container import Services

DEFAULT_RULES: dict[str, Any] = {
    "allowed_key_algorithms": ["ECDSA", "RSA", "Ed25519"],
    "min_rsa_bits": 2048,
    "min_ecdsa_bits": 256,
    "max_ttl_seconds": 397 * 86400,
    "default_ttl_seconds": 90 * 86400,
    "allowed_ekus": ["serverAuth", "clientAuth"],
    "default_ekus": ["serverAuth"],
    "san_patterns": [],
    "must_staple": False,
    "requires_approval": False,
    "allow_server_keygen": True,
    "allow_ip_sans": True,
}


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
