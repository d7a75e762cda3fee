"""Who used the cores during a bench phase: the load generator (this process), the server's processes,
the PostgreSQL backends serving its database, and everything else on the machine (from /proc)."""

from __future__ import annotations

import os
import resource
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg

BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process, from /proc."""
    found = {}
    for pid in pids:
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def _jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far by the simulator, the server's processes and the database's backends,
    and the machine's jiffies: who used the cores during a phase."""

    simulator: float
    server: dict[int, float]
    database: dict[int, float]
    machine: tuple[int, int]

    @classmethod
    def take(cls, server_pid: int, database: str) -> CpuSnapshot:
        """``database``: a libpq connection string; its other sessions are the server's backends."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        workers = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
        server = _cpu_seconds([server_pid, *map(int, workers)])
        with psycopg.connect(database) as connection:
            backends = _cpu_seconds([int(row[0]) for row in connection.execute(BACKENDS)])
        return cls(usage.ru_utime + usage.ru_stime, server, backends, _jiffies())

    def since(self, before: CpuSnapshot, seconds: float) -> str:
        def spent(now: dict[int, float], then: dict[int, float]) -> float:
            return sum(value - then.get(pid, 0.0) for pid, value in now.items()) / seconds

        simulator = (self.simulator - before.simulator) / seconds
        server, database = spent(self.server, before.server), spent(self.database, before.database)
        busy, total = (now - then for now, then in zip(self.machine, before.machine, strict=True))
        others = max(0.0, busy / os.sysconf("SC_CLK_TCK") / seconds - simulator - server - database)
        return (
            f"simulator {simulator:.0%} of one core, server {server:.0%}, PostgreSQL backends "
            f"{database:.0%}, everything else {others:.0%}; machine {busy / total:.0%} busy "
            f"({os.cpu_count()} cores)"
        )


def machine_busy(seconds: float) -> float:
    """Share of all cores busy over the next ``seconds`` (before a bench: what else runs)."""
    before = _jiffies()
    time.sleep(seconds)
    busy, total = (now - then for now, then in zip(_jiffies(), before, strict=True))
    return busy / max(1, total)
