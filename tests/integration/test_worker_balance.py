"""``certctl server --workers N``: the workers share the listening sockets and keep-alive connections
spread evenly over them (``server.balance``), instead of all landing on whichever worker the kernel
woke first; a stopped worker holds nothing up (the others take the connections, at once once its
figure is stale); the load table ignores workers that stopped publishing."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from certctl.server import balance
from support.live import LiveServer, start_live_server


def test_load_table_finds_the_least_loaded_live_other_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    table = balance.LoadTable(3)
    assert table.least_other(0) is None  # nobody else has published yet
    table.publish(0, 5)
    table.publish(1, 2)
    table.publish(2, 4)
    assert table.least_other(0) == 2
    assert table.least_other(1) == 4
    monkeypatch.setattr(balance, "STALE_SECONDS", 0.05)
    time.sleep(0.1)
    table.publish(0, 5)
    assert table.least_other(0) is None  # the others went quiet: a dead worker does not count
    assert table.least_other(1) == 5


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_live_server(tmp_path_factory.mktemp("workers"), extra_env={"CERTCTL_WORKERS": "2"})
    try:
        yield server
    finally:
        server.stop()


def _workers(server: LiveServer) -> list[int]:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return sorted(int(pid) for pid in children)


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":  # ESTABLISHED, server side
                    inodes.add(fields[9])
    return inodes


def _held(server: LiveServer) -> dict[int, int]:
    """Established connections on the HTTPS port per worker process."""
    port = int(server.url.rsplit(":", 1)[1])
    inodes = _established_inodes(port)
    held = {}
    for pid in _workers(server):
        count = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                count += 1
        held[pid] = count
    return held


def _connect(server: LiveServer) -> ssl.SSLSocket:
    """A keep-alive HTTPS connection that has had one answer (so a worker has taken it)."""
    context = ssl.create_default_context(cafile=str(server.ca_bundle))
    port = int(server.url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    return sock


def _wait_for(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)


def test_keep_alive_connections_spread_evenly(two_workers: LiveServer) -> None:
    connections = [_connect(two_workers) for _ in range(8)]
    try:
        _wait_for(lambda: sum(_held(two_workers).values()) == 8)
        held = _held(two_workers)
        assert len(held) == 2
        assert sum(held.values()) == 8
        assert max(held.values()) - min(held.values()) <= 1, held
    finally:
        for sock in connections:
            sock.close()


def test_a_stopped_worker_holds_nothing_up(two_workers: LiveServer) -> None:
    first, second = _workers(two_workers)
    os.kill(first, signal.SIGSTOP)
    try:
        connections = [_connect(two_workers) for _ in range(4)]  # each answered, none left waiting
        try:
            assert _held(two_workers)[second] >= 4
        finally:
            for sock in connections:
                sock.close()
    finally:
        os.kill(first, signal.SIGCONT)
    with _connect(two_workers):  # the stopped worker is back and serving
        pass
