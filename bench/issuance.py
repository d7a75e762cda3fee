"""End-to-end issuance through the REST API: CSR in, stored and audited certificate out.

64 concurrent keep-alive clients (wrk, driven by a Lua script that posts a different CSR and a unique
name each time) against ``certctl server`` on SQLite and on PostgreSQL. Prints certificates/s, p50/p99
latency, the number of stored certificates and audit rows, and the ratio to raw ``cryptography``
build+sign (one core) measured in the same run.

    python bench/issuance.py [--seconds 20] [--connections 64] [--workers N] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from _server import client, fresh_postgres, running_server

CSR_POOL = 512
LUA = """
local csrs = dofile("%(pool)s")
local counter = 0
local threads_started = 0
setup = function(thread) threads_started = threads_started + 1; thread:set("tid", threads_started) end
init = function() math.randomseed(tid * 7919 + os.time()) end
request = function()
  counter = counter + 1
  local i = (counter %% #csrs) + 1
  local body = '{"name":"b' .. tid .. '-' .. counter .. '-' .. math.random(1, 1000000000) ..
    '","issuer":"bench","profile":"bench","csr":"' .. csrs[i] .. '"}'
  return wrk.format("POST", "/api/v1/certificates", {
    ["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status, summary.errors.timeout))
end
"""


def make_csrs(count: int) -> list[str]:
    key = ec.generate_private_key(ec.SECP256R1())
    pool = []
    for index in range(count):
        name = f"host{index}.bench.example.com"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        pool.append(csr.public_bytes(serialization.Encoding.PEM).decode())
    return pool


def raw_sign_rate(seconds: float = 3.0) -> float:
    """Certificates/s that bare cryptography builds and signs on one core (same key types)."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Raw CA")])
    now = datetime.now(UTC)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        name = f"host{done}.bench.example.com"
        (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        done += 1
    return done / (time.perf_counter() - started)


def run_wrk(
    url: str, key: str, pool_file: Path, *, seconds: int, connections: int, workdir: Path
) -> dict[str, float]:
    script = workdir / "issue.lua"
    script.write_text(LUA % {"pool": pool_file, "key": key})
    threads = min(2, connections)
    result = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
         "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", result.stdout)
    if not match:
        raise SystemExit(f"wrk printed no result:\n{result.stdout}\n{result.stderr}")
    requests, duration_us, p50_us, p99_us, status_errors, timeouts = map(int, match.groups())
    return {
        "requests": requests,
        "rate": requests / (duration_us / 1e6),
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
        "non_2xx": status_errors,
        "timeouts": timeouts,
    }


def write_pool(csrs: list[str], path: Path) -> None:
    escaped = [json.dumps(c)[1:-1] for c in csrs]
    path.write_text("return {\n" + ",\n".join(f"[==[{e}]==]" for e in escaped) + "\n}\n")


def bench_engine(
    label: str, database_url: str | None, args: argparse.Namespace, pool: Path, raw: float, workers: int
) -> None:
    with tempfile.TemporaryDirectory(prefix=f"certctl-bench-{label}-") as tmp:
        workdir = Path(tmp)
        with running_server(workdir, database_url=database_url, workers=workers) as server:
            run_wrk(server.url, server.key, pool, seconds=3, connections=args.connections, workdir=workdir)
            with client(server) as c:
                before = c.get("/api/v1/stats").json()["total"]
            result = run_wrk(
                server.url,
                server.key,
                pool,
                seconds=args.seconds,
                connections=args.connections,
                workdir=workdir,
            )
            with client(server) as c:
                stored = c.get("/api/v1/stats").json()["total"] - before
            audit = server.verify_audit()
    print(
        f"issuance[{label}] workers={workers} clients={args.connections}: "
        f"{result['rate']:.0f} certificates/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms; "
        f"answered {result['requests']:.0f}, stored {stored}, non-2xx {result['non_2xx']:.0f}, "
        f"timeouts {result['timeouts']:.0f}; audit: {audit}; "
        f"ratio to raw cryptography build+sign on one core ({raw:.0f}/s): {result['rate'] / raw:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--workers", type=int, default=None, help="server workers [SQLite: 1 (one writer), PostgreSQL: 2]"
    )
    parser.add_argument("--postgres", default=os.environ.get("CERTCTL_TEST_DATABASE_URL"))
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/issuance.py needs wrk (Debian package wrk)")
    raw = raw_sign_rate()
    print(f"raw cryptography build+sign (ECDSA P-256, one core): {raw:.0f} certificates/s")
    with tempfile.TemporaryDirectory() as tmp:
        pool = Path(tmp) / "csrs.lua"
        write_pool(make_csrs(CSR_POOL), pool)
        engines = args.engines.split(",")
        if "sqlite" in engines:
            bench_engine("sqlite", None, args, pool, raw, args.workers or 1)
        if "postgresql" in engines:
            if not args.postgres:
                print("issuance[postgresql]: skipped (give --postgres or CERTCTL_TEST_DATABASE_URL)")
            else:
                database = fresh_postgres(args.postgres, "certctl_bench")
                bench_engine("postgresql", database, args, pool, raw, args.workers or 2)


if __name__ == "__main__":
    main()
