"""Readable, prefixed random identifiers (``crt_3f9a...``): the prefix tells the resource at a glance."""

from __future__ import annotations

import secrets

PREFIXES = {
    "certificate": "crt",
    "version": "ver",
    "profile": "prf",
    "issuer": "iss",
    "ca": "ca",
    "owner": "own",
    "team": "team",
    "api_key": "key",
    "audit": "evt",
    "grant": "grant",
    "role": "role",
    "approval": "apr",
    "policy": "pol",
    "job": "job",
    "ocsp_responder": "ocr",
    "agent": "agt",
    "enrol": "enr",
    "target": "tgt",
    "deploy": "dep",
    "oidc_provider": "idp",
    "group_mapping": "map",
    "user": "usr",
}


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}_{secrets.token_hex(10)}"
