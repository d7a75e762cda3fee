"""Fixtures shared by the ACME tests: a DNS server that answers every name with 127.0.0.1, an http-01
responder, and the in-process app with its ACME settings pointed at both; and, for real clients, a live
server whose profile ``internal`` requires external account binding and trusts bound accounts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.acme_client import Http01Server, start_challtestsrv
from support.acme_inprocess import AcmeApp, acme_app
from support.live import LiveServer, start_live_server
from support.seed import DEFAULT_RULES

EAB_PROFILE_RULES = DEFAULT_RULES | {
    "san_patterns": ["**.corp.test"],
    "acme": {"require_eab": True, "validation": "trusted"},
}


@pytest.fixture(scope="module")
def resolver() -> Iterator[str]:
    process, address = start_challtestsrv()
    try:
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def responder() -> Iterator[Http01Server]:
    server = Http01Server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def app(database_url: str, resolver: str, responder: Http01Server) -> Iterator[AcmeApp]:
    with acme_app(database_url, resolver=resolver, responder=responder) as running:
        yield running


@pytest.fixture(scope="module")
def eab_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server (one per test module) with the EAB-only, trusted profile ``internal``."""
    server = start_live_server(tmp_path_factory.mktemp("eab-live"))
    try:
        with server.client() as client:
            created = client.post("/api/v1/profiles", json={"name": "internal", "rules": EAB_PROFILE_RULES})
            created.raise_for_status()
        yield server
    finally:
        server.stop()
