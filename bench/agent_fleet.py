"""A fleet of simulated agents against one ``certctl server`` on PostgreSQL: heartbeat and work-poll
latency at the fleet's steady load, compared with ``GET /health`` at the same rate over the same pool.

Each of ``--agents`` agents is enrolled through the API (an enrolment token made with an admin key, then
``POST /api/v1/agents/enrol``; timed apart from the figure). During the measured period every agent
heartbeats every 60 s and polls its work every 30 s, starting at a random offset, so the offered load is
agents/60 + agents/30 requests/s, sent open-loop (on schedule, whatever the answers' latency) over one
pool of keep-alive HTTPS connections (``_http1.py``: a lean client, so that the load generator takes
little CPU from the server it measures on the same cores). One agent in a hundred serves a target with
an agent-keyed certificate: its first poll gets an "enrol" item, it sends a CSR and reports the
deployment as done (those follow-up routes are listed apart). The simulator prints how far behind its
schedule it ran, so a slow load generator cannot pass for a slow server, and who used the CPU. The
period starts with the server's credential caches cold (enrolment does not fill them): in its first
minute each server worker reads each agent's credential from the database once, as after a restart.

    python bench/agent_fleet.py [--agents 10000] [--seconds 120] [--connections 64]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/certctl_bench_fleet]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID
from sqlalchemy.engine import make_url

from _cpu import CpuSnapshot, machine_busy
from _http1 import ConnectionPool, Reply, TransportError
from _server import BenchServer, fresh_postgres, running_server
from certctl.pki.keys import generate_private_key

HEARTBEAT_SECONDS = 60.0
POLL_SECONDS = 30.0
WORK_SHARE = 100  # one agent in this many serves a target with an agent-keyed certificate
EXPECTED = {"heartbeat": 204, "work": 200, "csr": 200, "result": 200, "health": 200, "enrol": 201}
AIM_P99_MS = 50.0
WINDOW_SECONDS = 15.0  # the p99 of heartbeats and polls is also shown per window of the period
DRAIN_SECONDS = 30.0  # after the period, how long answers are still awaited


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    credential: str


@dataclass(frozen=True)
class Event:
    due: float
    """Seconds after the start of the measured period."""
    route: str
    agent: int


class Recorder:
    """Latencies per route (waiting for a free connection included), unexpected statuses and transport
    errors, and how late each send started."""

    def __init__(self) -> None:
        self.latency_ms: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[tuple[str, str]] = Counter()
        self.lag_ms: list[float] = []
        self.non_empty_work = 0
        self.by_window: dict[int, list[float]] = defaultdict(list)

    async def timed(self, route: str, request: Awaitable[Reply], *, due: float | None = None) -> Reply | None:
        """Await the request and record how it went (also in its window of the period when ``due``)."""
        started = time.perf_counter()
        try:
            reply = await request
        except TransportError as error:
            self.errors[(route, str(error))] += 1
            return None
        latency = (time.perf_counter() - started) * 1000
        self.latency_ms[route].append(latency)
        if due is not None:
            self.by_window[int(due // WINDOW_SECONDS)].append(latency)
        if reply.status != EXPECTED[route] and not (route == "csr" and reply.status == 202):
            self.errors[(route, str(reply.status))] += 1
        return reply


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else float("nan")


def facts(name: str) -> dict[str, str]:
    return {"hostname": f"{name}.fleet.example", "os": "linux", "arch": "x86_64", "version": "bench"}


async def enrol_fleet(
    pool: ConnectionPool, admin_key: str, count: int, concurrency: int, recorder: Recorder
) -> list[Agent]:
    """Token then enrolment for each agent, ``concurrency`` at a time."""
    agents: list[Agent | None] = [None] * count
    pending = iter(range(count))

    async def worker() -> None:
        for index in pending:
            name = f"fleet-{index:05d}"
            token = await pool.request(
                "POST", "/api/v1/agents/enrolment-tokens", body={"name": name}, bearer=admin_key
            )
            body = facts(name) | {"token": token.json()["token"]}
            enrolled = await recorder.timed("enrol", pool.request("POST", "/api/v1/agents/enrol", body=body))
            if enrolled is None or enrolled.status != 201:
                raise SystemExit(f"enrolment of {name} failed")
            found = enrolled.json()
            agents[index] = Agent(id=found["id"], name=name, credential=found["credential"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [agent for agent in agents if agent is not None]


async def assign_work(pool: ConnectionPool, admin_key: str, agents: list[Agent]) -> int:
    """A files target and a Pending agent-keyed certificate for one agent in ``WORK_SHARE``."""
    chosen = agents[::WORK_SHARE]
    for agent in chosen:
        site = f"{agent.name}-site"
        options = {"certificate_path": f"/srv/{site}.crt", "key_path": f"/srv/{site}.key"}
        target = {"name": site, "type": "files", "agent": agent.id, "options": options}
        created = [await pool.request("POST", "/api/v1/targets", body=target, bearer=admin_key)]
        certificate = {"name": site, "issuer": "bench", "profile": "bench", "targets": [site],
                       "sans": [f"{agent.name}.fleet.example"]}  # fmt: skip
        created.append(await pool.request("POST", "/api/v1/certificates", body=certificate, bearer=admin_key))
        if [reply.status for reply in created] != [201, 202]:
            raise SystemExit(f"could not give {agent.name} a target: {created[-1].body[:300]!r}")
    return len(chosen)


def schedule(count: int, seconds: float, rng: random.Random) -> list[Event]:
    """Every agent's heartbeats and polls in the period, each series starting at a uniform offset."""
    events: list[Event] = []
    for index in range(count):
        for route, interval in (("heartbeat", HEARTBEAT_SECONDS), ("work", POLL_SECONDS)):
            due = rng.uniform(0, interval)
            while due < seconds:
                events.append(Event(due=due, route=route, agent=index))
                due += interval
    events.sort(key=lambda event: event.due)
    return events


async def run_schedule(
    events: list[Event], send: Callable[[Event], Coroutine[Any, Any, None]], recorder: Recorder
) -> float:
    """Start each send at its due time (open loop), then wait up to ``DRAIN_SECONDS`` for the answers
    (an overloaded server is not waited for forever: what is left counts as unanswered). Returns the
    elapsed seconds."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent: dict[asyncio.Task[None], Event] = {}
    for event in events:
        delay = start + event.due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        recorder.lag_ms.append(max(0.0, loop.time() - start - event.due) * 1000)
        sent[asyncio.create_task(send(event))] = event
    if sent:
        _, late = await asyncio.wait(sent, timeout=DRAIN_SECONDS)
        for task in late:
            task.cancel()
            recorder.errors[(sent[task].route, "unanswered")] += 1
        await asyncio.gather(*late, return_exceptions=True)
    return loop.time() - start


def make_csr(key_type: str, common_name: str, sans: list[str]) -> str:
    """What an agent sends for an "enrol" item: a fresh key of the asked type and a CSR for the names."""
    key = generate_private_key(key_type)
    names = sans or [common_name]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or names[0])])
    )
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


class Fleet:
    """The agents' behaviour: heartbeat, poll, and for a work item a CSR and an outcome report."""

    def __init__(self, pool: ConnectionPool, agents: list[Agent], recorder: Recorder) -> None:
        self._pool, self._agents, self._recorder = pool, agents, recorder
        self.follow_ups: set[asyncio.Task[None]] = set()

    async def send(self, event: Event) -> None:
        agent = self._agents[event.agent]
        base, credential = f"/api/v1/agents/{agent.id}", agent.credential
        if event.route == "heartbeat":
            heartbeat = self._pool.request(
                "POST", f"{base}/heartbeat", body=facts(agent.name), bearer=credential
            )
            await self._recorder.timed("heartbeat", heartbeat, due=event.due)
            return
        reply = await self._recorder.timed(
            "work", self._pool.request("GET", f"{base}/work", bearer=credential), due=event.due
        )
        if reply is None or reply.status != 200:
            return
        items = reply.json()["items"]
        self._recorder.non_empty_work += bool(items)
        for item in items:
            task = asyncio.create_task(self._act(base, credential, item))
            self.follow_ups.add(task)
            task.add_done_callback(self.follow_ups.discard)

    async def _act(self, base: str, credential: str, item: dict[str, Any]) -> None:
        fingerprint = (item.get("version") or {}).get("fingerprint_sha256")
        if item["action"] == "enrol":
            csr = await asyncio.to_thread(make_csr, item["key_type"], item["common_name"], item["sans"])
            path = f"{base}/certificates/{item['certificate_id']}/csr"
            issued = await self._recorder.timed(
                "csr", self._pool.request("POST", path, body={"csr": csr}, bearer=credential)
            )
            if issued is None or issued.status != 200:
                return
            fingerprint = issued.json()["version"]["fingerprint_sha256"]
        for deployment in item["deployments"]:
            report = {"outcome": "succeeded", "message": "simulated", "served_fingerprint": fingerprint}
            path = f"{base}/deployments/{deployment['id']}/result"
            await self._recorder.timed(
                "result", self._pool.request("POST", path, body=report, bearer=credential)
            )


def _libpq(url: str, *, database: str | None = None) -> str:
    """The SQLAlchemy URL as psycopg takes it, optionally naming another database."""
    parsed = make_url(url).set(drivername="postgresql")
    return (parsed.set(database=database) if database else parsed).render_as_string(hide_password=False)


def describe(values: list[float]) -> str:
    p50, p95, p99, top = (percentile(values, share) for share in (0.5, 0.95, 0.99, 1.0))
    return f"n={len(values):>6}  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  p99 {p99:7.2f} ms  max {top:8.2f} ms"


async def bench(server: BenchServer, database_url: str, args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    pool = ConnectionPool(server.url, cafile=server.ca, size=args.connections)
    try:
        setup = Recorder()
        started = time.perf_counter()
        agents = await enrol_fleet(pool, server.key, args.agents, args.connections, setup)
        enrol_seconds = time.perf_counter() - started
        with_work = await assign_work(pool, server.key, agents)
        enrolments = setup.latency_ms["enrol"]
        print(f"enrolled {len(agents)} agents in {enrol_seconds:.1f} s ({len(agents) / enrol_seconds:.0f}/s, "
              f"token + enrolment each); enrol {describe(enrolments)}")  # fmt: skip
        print(f"{with_work} agents serve a target with an agent-keyed certificate")
        await asyncio.gather(*(pool.request("GET", "/health") for _ in range(args.connections)))  # connect

        recorder = Recorder()
        fleet = Fleet(pool, agents, recorder)
        events = schedule(len(agents), args.seconds, rng)
        cpu_before = CpuSnapshot.take(server.pid, _libpq(database_url))
        elapsed = await run_schedule(events, fleet.send, recorder)
        if fleet.follow_ups:  # CSRs and reports started near the end
            for task in (await asyncio.wait(fleet.follow_ups, timeout=DRAIN_SECONDS))[1]:
                task.cancel()
        load = CpuSnapshot.take(server.pid, _libpq(database_url)).since(cpu_before, elapsed)

        offered = len(events) / args.seconds
        baseline = Recorder()
        probes = [Event(due=rng.uniform(0, args.baseline_seconds), route="health", agent=0)
                  for _ in range(round(offered * args.baseline_seconds))]  # fmt: skip
        probes.sort(key=lambda event: event.due)

        async def probe(_event: Event) -> None:
            await baseline.timed("health", pool.request("GET", "/health"))

        await run_schedule(probes, probe, baseline)
    finally:
        pool.close()
    report(args, recorder, baseline, offered=offered, elapsed=elapsed)
    print(f"CPU during the fleet period: {load}")


def report(
    args: argparse.Namespace, fleet: Recorder, baseline: Recorder, *, offered: float, elapsed: float
) -> None:
    answered = len(fleet.latency_ms["heartbeat"]) + len(fleet.latency_ms["work"])
    print(f"fleet of {args.agents} agents for {args.seconds:.0f} s over {args.connections} connections: "
          f"offered {offered:.1f} requests/s, achieved {answered / elapsed:.1f} requests/s "
          f"({answered} answered in {elapsed:.1f} s)")  # fmt: skip
    print(f"schedule lag (send start after due time): p99 {percentile(fleet.lag_ms, 0.99):.2f} ms, "
          f"max {max(fleet.lag_ms, default=0.0):.2f} ms")  # fmt: skip
    for route in ("heartbeat", "work", "csr", "result"):
        if fleet.latency_ms[route]:
            print(f"  {route:<9} {describe(fleet.latency_ms[route])}")
    print(f"  non-empty work responses: {fleet.non_empty_work}")
    windows = "  ".join(
        f"{index * WINDOW_SECONDS:.0f}s {percentile(values, 0.99):.0f}"
        for index, values in sorted(fleet.by_window.items())
    )
    print(f"  heartbeat and work p99 (ms) per {WINDOW_SECONDS:.0f} s from the start: {windows}")
    errors = ", ".join(f"{route} {status}: {n}" for (route, status), n in sorted(fleet.errors.items()))
    print(f"  errors: {errors or 'none'}")
    health = baseline.latency_ms["health"]
    print(f"raw primitive GET /health at the same rate for {args.baseline_seconds:.0f} s over the same pool "
          f"(errors: {sum(baseline.errors.values())}):")  # fmt: skip
    print(f"  {'health':<9} {describe(health)}")
    work_p99, heartbeat_p99 = (percentile(fleet.latency_ms[route], 0.99) for route in ("work", "heartbeat"))
    print(f"ratio work p99 / health p99: {work_p99 / percentile(health, 0.99):.2f}; "
          f"heartbeat p99 / health p99: {heartbeat_p99 / percentile(health, 0.99):.2f}")  # fmt: skip
    met = max(work_p99, heartbeat_p99) < AIM_P99_MS and not fleet.errors
    print(f"aim (p99 under {AIM_P99_MS:.0f} ms, zero errors): {'met' if met else 'NOT met'}")


def drop_database(url: str) -> None:
    with psycopg.connect(_libpq(url, database="postgres"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def _interrupt(_signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=120.0, help="measured period")
    parser.add_argument(
        "--baseline-seconds", type=float, help="GET /health at the same rate [30, at most --seconds]"
    )
    parser.add_argument("--connections", type=int, default=64, help="keep-alive HTTPS connections")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/certctl_bench_fleet",
        help="created fresh and dropped at the end; the name must start with certctl_bench",
    )
    args = parser.parse_args()
    args.baseline_seconds = args.baseline_seconds or min(30.0, args.seconds)
    name = make_url(args.database_url).database or ""
    if not name.startswith("certctl_bench"):
        raise SystemExit("the database is dropped and re-created: its name must start with certctl_bench")
    maintenance = make_url(args.database_url).set(database="postgres").render_as_string(hide_password=False)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress when piped
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on kill as on Ctrl-C
    print(f"machine busy before the bench (other load, 3 s sample): {machine_busy(3.0):.0%}")
    try:
        database_url = fresh_postgres(maintenance, name)
        with tempfile.TemporaryDirectory(prefix="certctl-bench-fleet-") as tmp, running_server(
            Path(tmp), database_url=database_url, workers=args.workers
        ) as server:  # fmt: skip
            uvloop.run(bench(server, database_url, args))
    except KeyboardInterrupt:
        print("interrupted: the server is stopped and the database dropped")
    finally:
        drop_database(args.database_url)


if __name__ == "__main__":
    main()
