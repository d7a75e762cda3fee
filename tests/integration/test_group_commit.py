"""Concurrent issuances share transactions (or, with a spare connection on PostgreSQL, are stored alone)
without losing, duplicating or failing each other."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import literal, select
from sqlalchemy.exc import IntegrityError

from certctl.errors import Conflict
from certctl.services.audit import SYSTEM
from certctl.services.issuance import Issued, IssueRequest
from certctl.store import db, group_commit
from support.apps import ApiHarness
from support.csrs import counts

ONE = select(literal(1).label("one"))


def _request(name: str, *, team_id: str | None = None) -> IssueRequest:
    return IssueRequest(
        name=name, issuer="local", profile="default", common_name="gc.example.com", team_id=team_id
    )


def test_concurrent_batch_with_duplicates_and_a_bad_row(api: ApiHarness) -> None:
    names = [f"gc-{i}.example.com" for i in range(30)] + ["same.example.com"] * 6
    requests = [_request(n) for n in names] + [_request("orphan.example.com", team_id="team_missing")]

    async def issue_all() -> list[Issued | BaseException]:
        return await asyncio.gather(
            *(api.services.issuance.issue(request=r, actor=SYSTEM) for r in requests), return_exceptions=True
        )

    before = api.run(lambda: counts(api.services.context.engine))
    outcomes = api.run(issue_all)
    issued = [o for o in outcomes if isinstance(o, Issued)]
    conflicts = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(issued) == 31
    assert len(conflicts) == 5
    assert isinstance(outcomes[-1], IntegrityError)
    after = api.run(lambda: counts(api.services.context.engine))
    assert after == (before[0] + 31, before[1] + 31, before[2] + 31)
    assert len({o.certificate["id"] for o in issued}) == 31


@pytest.mark.parametrize("clients", [1, 64])
def test_every_answered_issue_is_stored(api: ApiHarness, clients: int) -> None:
    async def issue_all() -> list[Issued]:
        issuance = api.services.issuance
        return await asyncio.gather(
            *(issuance.issue(request=_request(f"n{clients}-{i}"), actor=SYSTEM) for i in range(clients))
        )

    issued = api.run(issue_all)
    listed = api.get("/api/v1/certificates", params={"limit": 500, "q": f"n{clients}-"}).json()["items"]
    assert {c["id"] for c in listed} == {i.certificate["id"] for i in issued}


def test_one_at_a_time_stores_all_or_nothing(api: ApiHarness) -> None:
    """Alone in its batch (one statement on PostgreSQL, no transaction around it), an issuance stores
    its certificate, version and audit row together, or none of them."""

    async def issue(request: IssueRequest) -> Issued | BaseException:
        try:
            return await api.services.issuance.issue(request=request, actor=SYSTEM)
        except Exception as error:
            return error

    before = api.run(lambda: counts(api.services.context.engine))
    first = api.run(lambda: issue(_request("alone.example.com")))
    assert isinstance(first, Issued)
    assert isinstance(api.run(lambda: issue(_request("alone.example.com"))), Conflict)
    assert isinstance(
        api.run(lambda: issue(_request("alone-2.example.com", team_id="team_missing"))), IntegrityError
    )
    after = api.run(lambda: counts(api.services.context.engine))
    assert after == (before[0] + 1, before[1] + 1, before[2] + 1)
    listed = api.get("/api/v1/certificates", params={"q": "alone"}).json()["items"]
    assert [c["id"] for c in listed] == [first.certificate["id"]]
    assert listed[0]["current_version_id"] == first.version["id"]


def test_a_spare_connection_stores_an_item_alone_beside_a_running_flush(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL an item that arrives while a flush runs is stored alone, on a spare connection, up
    to ``SOLO_FLUSHES`` at a time; the rest queue and share a batch. On SQLite they always queue."""
    monkeypatch.setattr(group_commit, "SOLO_FLUSHES", 2)
    batches: list[list[int]] = []

    async def flush(connection: Any, items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        await db.read_rows(connection, ONE, {})
        await asyncio.sleep(0.05)
        return [item * 10 for item in items]

    async def scenario() -> list[int]:
        engine = db.make_engine(database_url, pool_size=2)
        try:
            committer = group_commit.GroupCommitter(engine, flush, single_is_atomic=True)
            first = asyncio.ensure_future(committer.submit(1))
            await asyncio.sleep(0.01)  # the first submitter is flushing
            rest = [asyncio.ensure_future(committer.submit(n)) for n in (2, 3, 4, 5)]
            return list(await asyncio.gather(first, *rest))
        finally:
            await db.dispose(engine)

    assert asyncio.run(scenario()) == [10, 20, 30, 40, 50]
    if "postgresql" in database_url:
        assert (batches[0], sorted(batches[1:3]), batches[3:]) == ([1], [[2], [3]], [[4, 5]])
    else:
        assert batches == [[1], [2, 3, 4, 5]]
