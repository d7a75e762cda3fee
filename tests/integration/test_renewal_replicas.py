"""Acceptance: two ``certctl server`` replicas on one PostgreSQL renew a fleet exactly once, even when the
leader is killed (SIGKILL) in the middle of the run."""

from __future__ import annotations

import os
import secrets
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine, make_url

from certctl.domain.ids import new_id
from certctl.store.db import sync_url
from certctl.store.models import CertificateVersion, ManagedCertificate, table_of
from support.live import certctl_command, free_port
from support.seed import DEFAULT_RULES

PG_URL = os.environ.get("CERTCTL_TEST_DATABASE_URL")
REQUIRE_PEERS = os.environ.get("CERTCTL_REQUIRE_PEERS") == "1"
FLEET = 1000


@pytest.fixture
def shared_postgres() -> Iterator[str]:
    if not PG_URL:
        if REQUIRE_PEERS:
            pytest.fail("CERTCTL_REQUIRE_PEERS=1 but CERTCTL_TEST_DATABASE_URL is not set")
        pytest.skip("needs PostgreSQL (CERTCTL_TEST_DATABASE_URL)")
    name = f"certctl_replicas_{secrets.token_hex(4)}"
    admin = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    yield make_url(PG_URL).set(drivername="postgresql+psycopg", database=name).render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


class Replica:
    def __init__(self, workdir: Path, env: dict[str, str], index: int) -> None:
        self.port = free_port()
        self.env = env | {
            "CERTCTL_LISTEN": f"127.0.0.1:{self.port}",
            "CERTCTL_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        }
        self.log = workdir / f"replica-{index}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*certctl_command(), "server"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def client(self, key: str, ca: Path) -> httpx2.Client:
        return httpx2.Client(
            base_url=f"https://127.0.0.1:{self.port}",
            verify=ssl.create_default_context(cafile=str(ca)),
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    def wait_healthy(self, key: str, ca: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            if ca.exists():
                try:
                    with self.client(key, ca) as client:
                        if client.get("/health").status_code == 200:
                            return
                except httpx2.TransportError:
                    pass
            time.sleep(0.2)
        raise AssertionError(f"replica did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _seed_hierarchy(client: httpx2.Client) -> tuple[str, str]:
    root = client.post("/api/v1/intermediates", json={"name": "R", "subject": {"common_name": "R"}}).json()
    issuing = client.post(
        "/api/v1/intermediates",
        json={"name": "I", "parent": root["id"], "subject": {"common_name": "I"}, "path_length": 0},
    ).json()
    profile = client.post("/api/v1/profiles", json={"name": "fleet", "rules": DEFAULT_RULES}).json()
    issuer = client.post(
        "/api/v1/issuers", json={"name": "fleet", "type": "local", "options": {"ca": issuing["id"]}}
    ).json()
    return str(profile["id"]), str(issuer["id"])


def _seed_fleet(engine: Engine, *, profile_id: str, issuer_id: str) -> list[str]:
    """Direct inserts: FLEET certificates, each with one 90-day version whose renewal is due now."""
    now = datetime.now(UTC)
    certificates: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    for n in range(FLEET):
        certificate_id, version_id = new_id("certificate"), new_id("version")
        not_before, not_after = now - timedelta(days=80), now + timedelta(days=10)
        versions.append({
            "id": version_id, "certificate_id": certificate_id, "issuer_ca_id": None, "serial": f"{n:x}",
            "not_before": not_before, "not_after": not_after, "fingerprint_sha256": f"{n:064x}",
            "cert_pem": "", "chain_pem": "", "csr_pem": None, "key_algorithm": "ECDSA", "key_size": 256,
            "key_sealed": None, "created_at": not_before,
        })  # fmt: skip
        certificates.append({
            "id": certificate_id, "name": f"fleet-{n}", "common_name": f"fleet-{n}.example.com",
            "sans": [f"fleet-{n}.example.com"], "tags": {}, "environment": "", "issuer_id": issuer_id,
            "profile_id": profile_id, "status": "Expiring", "source": "import", "auto_renew": True,
            "current_version_id": version_id, "not_after": not_after,
            "renewal_due_at": now - timedelta(seconds=n % 60), "created_at": not_before, "updated_at": now,
        })  # fmt: skip
    with engine.begin() as connection:
        connection.execute(insert(table_of(ManagedCertificate)), certificates)
        connection.execute(insert(table_of(CertificateVersion)), versions)
    return [c["current_version_id"] for c in certificates]


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(sql)).scalar_one())


def _wait_for(engine: Engine, sql: str, target: int, replicas: list[Replica], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _count(engine, sql) < target:
        alive = [r for r in replicas if r.process.poll() is None]
        assert alive, "every replica exited"
        assert time.monotonic() < deadline, f"timed out: {_count(engine, sql)} of {target}\n" + "\n".join(
            r.log.read_text()[-2000:] for r in replicas
        )
        time.sleep(0.2)


def test_two_replicas_renew_a_fleet_exactly_once_across_a_leader_kill(
    shared_postgres: str, tmp_path: Path
) -> None:
    env = os.environ | {
        "CERTCTL_DATA_DIR": str(tmp_path / "data"),
        "CERTCTL_DATABASE_URL": shared_postgres,
        "CERTCTL_LOG_LEVEL": "warning",
        "CERTCTL_WORKERS": "1",
    }
    key = subprocess.run(
        [*certctl_command(), "admin", "create-key", "--name", "acceptance", "--role", "admin"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    ca = tmp_path / "data" / "tls" / "ca.crt"
    replicas = [Replica(tmp_path, env, 0)]
    engine = create_engine(sync_url(shared_postgres))
    try:
        replicas[0].wait_healthy(key, ca)
        replicas.append(Replica(tmp_path, env, 1))
        replicas[1].wait_healthy(key, ca)
        with replicas[0].client(key, ca) as client:
            profile_id, issuer_id = _seed_hierarchy(client)
        seeded = set(_seed_fleet(engine, profile_id=profile_id, issuer_id=issuer_id))

        done = "SELECT count(*) FROM jobs WHERE type = 'renewal' AND status = 'succeeded'"
        _wait_for(engine, done, 50, replicas, 60)
        with engine.connect() as connection:
            holder = connection.execute(text("SELECT holder FROM scheduler_leases")).scalar_one()
        leader = next(r for r in replicas if f":{r.process.pid}:" in holder)
        assert _count(engine, done) < FLEET, "the kill must land mid-run"
        os.kill(leader.process.pid, signal.SIGKILL)
        leader.process.wait()
        _wait_for(engine, done, FLEET, replicas, 150)

        assert _count(engine, "SELECT count(*) FROM jobs") == FLEET
        assert _count(engine, "SELECT count(DISTINCT certificate_id) FROM jobs") == FLEET
        assert _count(engine, "SELECT count(*) FROM certificate_versions") == 2 * FLEET
        per_certificate = "SELECT count(*) FROM (SELECT certificate_id FROM certificate_versions "
        per_certificate += "GROUP BY certificate_id HAVING count(*) <> 2) AS odd"
        assert _count(engine, per_certificate) == 0, "every certificate renewed exactly once"
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT current_version_id, status FROM managed_certificates"))
            current = rows.all()
        assert not seeded & {row[0] for row in current}
        assert {row[1] for row in current} == {"Active"}
        survivor = next(r for r in replicas if r is not leader)
        with survivor.client(key, ca) as client:
            listed = client.get("/api/v1/jobs", params={"status": "succeeded", "limit": 500}).json()
        assert len(listed["items"]) == 500 and listed["next_cursor"]
    finally:
        for replica in replicas:
            replica.stop()
        engine.dispose()
