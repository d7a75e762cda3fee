"""Fixtures shared by the in-process ACME tests: a DNS server that answers every name with 127.0.0.1, an
http-01 responder, and the app with its ACME settings pointed at both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.acme_client import Http01Server, start_challtestsrv
from support.acme_inprocess import AcmeApp, acme_app


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
