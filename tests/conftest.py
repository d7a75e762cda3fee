"""Shared fixtures: databases (SQLite and PostgreSQL), the ASGI app, a live server, peer programs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.apps import ApiHarness, make_harness
from support.databases import database_url_for, drop_database
from support.live import LiveServer, start_live_server

REQUIRE_PEERS = os.environ.get("CERTCTL_REQUIRE_PEERS") == "1"
PG_URL = os.environ.get("CERTCTL_TEST_DATABASE_URL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker in item.iter_markers("peer"):
            program = marker.args[0]
            if shutil.which(program) is None:
                if REQUIRE_PEERS:
                    item.add_marker(pytest.mark.xfail(reason=f"{program} missing", run=False, strict=True))
                    item.add_marker(pytest.mark.usefixtures("_fail_missing_peer"))
                else:
                    item.add_marker(
                        pytest.mark.skip(reason=f"needs {program} (set CERTCTL_REQUIRE_PEERS=1 to fail)")
                    )


@pytest.fixture
def _fail_missing_peer(request: pytest.FixtureRequest) -> None:
    missing = [m.args[0] for m in request.node.iter_markers("peer") if shutil.which(m.args[0]) is None]
    pytest.fail(f"required peer program(s) missing: {', '.join(missing)}")


def _db_params() -> list[object]:
    pg = pytest.param(
        "postgresql", marks=[] if PG_URL or REQUIRE_PEERS else [pytest.mark.skip(reason="no PG")]
    )
    return ["sqlite", pg]


@pytest.fixture(params=_db_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database on each engine the suite covers."""
    if request.param == "postgresql" and not PG_URL:
        pytest.fail("CERTCTL_REQUIRE_PEERS=1 but CERTCTL_TEST_DATABASE_URL is not set")
    url = database_url_for(
        request.param, tmp_path, PG_URL, worker=os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    )
    yield url
    drop_database(url)


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """A migrated, empty PostgreSQL database, for what exists on PostgreSQL only (the driver paths)."""
    if not PG_URL:
        if REQUIRE_PEERS:
            pytest.fail("CERTCTL_REQUIRE_PEERS=1 but CERTCTL_TEST_DATABASE_URL is not set")
        pytest.skip("no PG")
    url = database_url_for(
        "postgresql", tmp_path, PG_URL, worker=os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    )
    yield url
    drop_database(url)


@pytest.fixture
def api(database_url: str) -> Iterator[ApiHarness]:
    """The HTTPS app in-process (Starlette TestClient) with an admin key and a seeded local hierarchy."""
    with make_harness(database_url) as harness:
        yield harness


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``certctl server`` as a real process on loopback ports, seeded like ``api``."""
    server = start_live_server(tmp_path_factory.mktemp("live"))
    try:
        yield server
    finally:
        server.stop()
