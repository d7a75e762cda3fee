"""Complete ACME orders per second: certctl against Pebble, the reference ACME CA, in the same run.

Each of ``--concurrency`` accounts (8 and 64 by default) gets a nonce and registers once (timed apart),
then loops: newOrder for one fresh name -> authorization -> answer its http-01 challenge -> finalize
with a fresh CSR -> download the chain, reading again only what is not final yet, as lego does: the
authorization is polled until valid unless the challenge's answer already says valid, the order is
polled until ready only if finalize answers ``orderNotReady``, and until valid only if finalize answers
``processing``. ``--always-poll`` instead polls the authorization after every challenge and the order
before every finalize (the flow of the runs before 2026-11-30). An order counts when its chain arrives;
its latency runs from newOrder to the chain. Every
response's ``Replay-Nonce`` is kept for the account's next request (as real clients do), and the HTTP
connections are kept alive (one pool per CA and concurrency, as many connections as accounts).

Modes, one after the other for each concurrency:

- ``certctl http-01``: ``certctl server`` (SQLite with one worker by default, ``--database-url`` for
  PostgreSQL) validating http-01 on ``CERTCTL_ACME_HTTP01_PORT`` = the bench's responder, names
  resolved through ``CERTCTL_ACME_DNS_RESOLVER`` = a pebble-challtestsrv started here.
- ``pebble http-01``: Pebble validating on the same responder through the same DNS.
- ``pebble always-valid``: Pebble with ``PEBBLE_VA_ALWAYS_VALID=1`` (the challenge is still posted).

Both CAs are polled the same way: a fixed ``--poll-ms`` between reads, whatever ``Retry-After`` says
(certctl answers 1 s, Pebble sends none), so the figure measures the CA rather than the back-off.
Printed: orders/s, p50/p99 per order, errors, polls per order, the bench process's CPU (client and
responder) and the CA's CPU (all its processes), and the ratio certctl / Pebble per concurrency.

    python bench/acme.py [--seconds 20] [--concurrency 8,64] [--orders N] [--workers 1]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/certctl_bench_acme] [--always-poll]
        [--only TEXT] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from _acme_peers import Responder, challenge_dns, pebble, process_cpu_seconds
from _http1 import ConnectionPool, Reply, TransportError
from _server import BenchServer, client, free_port, fresh_postgres, running_server

JOSE = "application/jose+json"
DOMAIN = "bench.example.com"


class OrderFailed(Exception):
    """One order did not complete; the message is the error's short label."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Stats:
    latency_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    polls: int = 0
    bad_nonces: int = 0


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _flattened(protected: dict[str, Any], payload: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """RFC 7515 flattened JSON serialization."""
    header = b64url(json.dumps(protected, separators=(",", ":")).encode())
    body = b64url(payload)
    signature = b64url(sign(f"{header}.{body}".encode()))
    return json.dumps({"protected": header, "payload": body, "signature": signature}).encode()


class Account:
    """One ACME account: its JWS key (ES256), its ``kid`` once registered and the nonce from the last
    answer. Signing calls the primitive directly, as a compiled client would."""

    def __init__(self, http: ConnectionPool, directory: dict[str, Any], stats: Stats) -> None:
        self.http, self.directory, self.stats = http, directory, stats
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }  # RFC 7638 member order: sorted, so this serialization is also the thumbprint input
        digest = hashes.Hash(hashes.SHA256())
        digest.update(json.dumps(self.jwk, separators=(",", ":")).encode())
        self.thumbprint = b64url(digest.finalize())
        self.csr_key = ec.generate_private_key(ec.SECP256R1())
        self.kid: str | None = None
        self.nonce: str | None = None

    def _sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    async def post(self, url: str, payload: dict[str, Any] | None) -> Reply:
        """A signed POST (``None`` = POST-as-GET); a badNonce answer is retried with the fresh nonce."""
        for _ in range(3):
            if self.nonce is None:
                self.nonce = (await self.http.request("HEAD", _path(self.directory["newNonce"]))).headers[
                    "replay-nonce"
                ]
            header: dict[str, Any] = {"alg": "ES256", "nonce": self.nonce, "url": url}
            if self.kid is None:
                header["jwk"] = self.jwk
            else:
                header["kid"] = self.kid
            body = b"" if payload is None else json.dumps(payload).encode()
            signed = _flattened(header, body, self._sign)
            response = await self.http.request("POST", _path(url), content=signed, content_type=JOSE)
            self.nonce = response.headers.get("replay-nonce")
            if response.status == 400 and b"badNonce" in response.body:
                self.stats.bad_nonces += 1
                continue
            return response
        return response

    async def register(self, eab: tuple[str, str] | None = None) -> None:
        """newAccount; ``eab`` = (kid, base64url HMAC key) adds an external account binding."""
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if eab is not None:
            kid, hmac_key = eab
            secret = base64.urlsafe_b64decode(hmac_key + "=" * (-len(hmac_key) % 4))

            def mac(data: bytes) -> bytes:
                signer = hmac.HMAC(secret, hashes.SHA256())
                signer.update(data)
                return signer.finalize()

            header = {"alg": "HS256", "kid": kid, "url": self.directory["newAccount"]}
            binding = _flattened(header, json.dumps(self.jwk).encode(), mac)
            payload["externalAccountBinding"] = json.loads(binding)
        response = await self.post(self.directory["newAccount"], payload)
        if response.status not in (200, 201):
            raise SystemExit(f"newAccount answered {response.status}: {response.text[:300]}")
        self.kid = response.headers["location"]

    def csr(self, name: str) -> str:
        built = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(self.csr_key, hashes.SHA256())
        )
        return b64url(built.public_bytes(serialization.Encoding.DER))


async def _expect(account: Account, step: str, url: str, payload: dict[str, Any] | None) -> Reply:
    response = await account.post(url, payload)
    if response.status >= 300:
        problem = (
            response.json().get("type", "") if "json" in response.headers.get("content-type", "") else ""
        )
        raise OrderFailed(f"{step} {response.status} {problem.rsplit(':', 1)[-1]}".strip())
    return response


async def _poll(account: Account, step: str, url: str, until: str, poll: float) -> dict[str, Any]:
    """Read ``url`` every ``poll`` seconds until its status is ``until`` (``invalid`` fails the order)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(poll)
        account.stats.polls += 1
        body: dict[str, Any] = (await _expect(account, step, url, None)).json()
        if body["status"] == until:
            return body
        if body["status"] == "invalid":
            raise OrderFailed(f"{step} invalid")
    raise OrderFailed(f"{step} timeout")


async def one_order(
    account: Account, responder: Responder, name: str, poll: float, *, always_poll: bool
) -> None:
    created = await _expect(
        account, "newOrder", account.directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]}
    )
    order_url, order = created.headers["location"], created.json()
    for authz_url in order["authorizations"]:
        authz = (await _expect(account, "authz", authz_url, None)).json()
        if authz["status"] == "valid":
            continue
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        responder.tokens[challenge["token"]] = f"{challenge['token']}.{account.thumbprint}"
        try:
            answer = (await _expect(account, "challenge", challenge["url"], {})).json()
            if answer.get("status") == "invalid":
                raise OrderFailed("challenge invalid")
            if always_poll or answer.get("status") != "valid":
                await _poll(account, "authz", authz_url, "valid", poll)
        finally:
            responder.tokens.pop(challenge["token"], None)
    if always_poll and order["status"] != "ready":
        order = await _poll(account, "order", order_url, "ready", poll)
    csr = {"csr": account.csr(name)}
    finalized = await account.post(order["finalize"], csr)
    if finalized.status == 403 and b"orderNotReady" in finalized.body:
        await _poll(account, "order", order_url, "ready", poll)
        finalized = await account.post(order["finalize"], csr)
    if finalized.status >= 300:
        raise OrderFailed(f"finalize {finalized.status}")
    order = finalized.json()
    if order["status"] != "valid":
        order = await _poll(account, "order", order_url, "valid", poll)
    chain = await _expect(account, "certificate", order["certificate"], None)
    if not chain.text.startswith("-----BEGIN CERTIFICATE-----"):
        raise OrderFailed("certificate not PEM")


@dataclass(frozen=True)
class Target:
    label: str
    directory_url: str
    ca_file: Path
    pid: int
    eab: Callable[[], Awaitable[tuple[str, str]]] | None = None
    """Makes one EAB key (kid, HMAC key) per account, for a directory that requires a binding."""


@dataclass(frozen=True)
class Result:
    label: str
    concurrency: int
    orders: int
    seconds: float
    accounts_per_second: float
    stats: Stats
    client_cpu: float
    ca_cpu: float

    @property
    def rate(self) -> float:
        return self.orders / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        values = sorted(self.stats.latency_ms)
        return values[max(0, math.ceil(share * len(values)) - 1)] if values else float("nan")


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(
    target: Target,
    responder: Responder,
    *,
    concurrency: int,
    seconds: float,
    orders: int,
    poll: float,
    always_poll: bool,
) -> Result:
    """Register ``concurrency`` accounts, then run orders for ``seconds`` (or until ``orders`` started)."""
    stats = Stats()
    http = ConnectionPool(target.directory_url, cafile=target.ca_file, size=concurrency, timeout=60.0)
    try:
        directory = (await http.request("GET", _path(target.directory_url))).json()
        accounts = [Account(http, directory, stats) for _ in range(concurrency)]
        bindings = [await target.eab() if target.eab else None for _ in accounts]
        started = time.perf_counter()
        registered = await asyncio.gather(
            *(a.register(b) for a, b in zip(accounts, bindings, strict=True)), return_exceptions=True
        )
        accounts_per_second = concurrency / (time.perf_counter() - started)
        failed = [r for r in registered if isinstance(r, BaseException)]
        for failure in failed:
            if not isinstance(failure, (TransportError, OrderFailed)):
                raise failure
            stats.errors[f"newAccount {failure}"] += 1
        if failed:  # a CA that cannot register every account gets no order run (reported as errors)
            return Result(target.label, concurrency, 0, 1.0, accounts_per_second, stats, 0.0, 0.0)
        budget = iter(range(orders or 10**9))
        prefix = os.urandom(3).hex()
        deadline = time.perf_counter() + seconds

        async def worker(account: Account) -> None:
            for sequence in budget:
                if time.perf_counter() >= deadline:
                    return
                began = time.perf_counter()
                try:
                    await one_order(
                        account,
                        responder,
                        f"o{sequence}-{prefix}.{DOMAIN}",
                        poll,
                        always_poll=always_poll,
                    )
                except OrderFailed as failure:
                    stats.errors[str(failure)] += 1
                except TransportError as error:
                    stats.errors[str(error)] += 1
                else:
                    stats.latency_ms.append((time.perf_counter() - began) * 1000)

        client_before, ca_before = _cpu_self(), process_cpu_seconds(target.pid)
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(a) for a in accounts)), seconds + 180)
        elapsed = time.perf_counter() - started
        client_cpu = (_cpu_self() - client_before) / elapsed
        ca_cpu = (process_cpu_seconds(target.pid) - ca_before) / elapsed
    finally:
        http.close()
    return Result(
        target.label,
        concurrency,
        len(stats.latency_ms),
        elapsed,
        accounts_per_second,
        stats,
        client_cpu,
        ca_cpu,
    )


def trusted_target(server: BenchServer) -> Target:
    """A profile in trusted (internal-PKI) mode: EAB required, orders ready without challenges."""
    rules = {"name": "bench-trusted", "rules": {"acme": {"require_eab": True, "validation": "trusted"}}}
    with client(server) as admin:
        admin.post("/api/v1/profiles", json=rules).raise_for_status()

    async def make_key() -> tuple[str, str]:
        with client(server) as admin:
            made = admin.post("/api/v1/acme/eab-keys", json={"profile": "bench-trusted"})
        made.raise_for_status()
        return str(made.json()["kid"]), str(made.json()["hmac_key"])

    directory = f"{server.url}/acme/bench-trusted/directory"
    return Target("certctl trusted+EAB", directory, server.ca, server.pid, eab=make_key)


def report(result: Result) -> None:
    errors = sum(result.stats.errors.values())
    detail = ", ".join(f"{k}: {v}" for k, v in result.stats.errors.most_common(4))
    polls = result.stats.polls / max(1, result.orders + errors)
    print(
        f"{result.label:<22} c={result.concurrency:<3} orders={result.orders:<6} "
        f"{result.rate:8.1f} orders/s  p50 {result.percentile(0.5):7.1f} ms"
        f"  p99 {result.percentile(0.99):7.1f} ms"
        f"  errors {errors}{f' ({detail})' if detail else ''}  polls/order {polls:.1f}"
        f"  bad nonces {result.stats.bad_nonces}  accounts/s {result.accounts_per_second:.0f}"
        f"  client CPU {result.client_cpu:.0%}  CA CPU {result.ca_cpu:.0%}",
        flush=True,
    )


async def run(args: argparse.Namespace, workdir: Path) -> None:
    responder = Responder()
    await responder.start(free_port())
    concurrencies = [int(value) for value in args.concurrency.split(",")]
    try:
        with ExitStack() as stack:
            dns = stack.enter_context(challenge_dns(workdir))
            os.environ |= {
                "CERTCTL_ACME_HTTP01_PORT": str(responder.port),
                "CERTCTL_ACME_DNS_RESOLVER": dns,
                "CERTCTL_ACME_DEFAULT_PROFILE": "bench",
                "CERTCTL_ACME_ORDERS_PER_ACCOUNT_HOUR": "0",  # Pebble has no limits either
                "CERTCTL_ACME_AUTHZ_REUSE_HOURS": "0",  # every order proves its names, as with Pebble
            }
            database_url = (
                fresh_postgres(args.database_url, "certctl_bench_acme") if args.database_url else None
            )
            server = stack.enter_context(
                running_server(workdir / "certctl", database_url=database_url, workers=args.workers)
            )
            engine = "PostgreSQL" if database_url else "SQLite"
            flow = "always poll" if args.always_poll else "poll only what is not final"
            print(f"certctl: {engine}, {args.workers} worker(s); {flow}, every {args.poll_ms} ms", flush=True)
            targets = [
                Target("certctl http-01", f"{server.url}/acme/bench/directory", server.ca, server.pid),
                trusted_target(server),
            ]
            for label, always in (("pebble http-01", False), ("pebble always-valid", True)):
                if args.only and args.only not in label:
                    continue
                found = stack.enter_context(
                    pebble(
                        workdir / label.replace(" ", "-"),
                        http01_port=responder.port,
                        dns=dns,
                        always_valid=always,
                    )
                )
                targets.append(Target(label, found.directory_url, found.ca_file, found.pid))
            targets = [target for target in targets if not args.only or args.only in target.label]
            results: dict[tuple[str, int], Result] = {}
            for concurrency in concurrencies:
                for target in targets:
                    result = await measure(
                        target, responder, concurrency=concurrency, seconds=args.seconds,
                        orders=args.orders, poll=args.poll_ms / 1000, always_poll=args.always_poll,
                    )  # fmt: skip
                    results[(target.label, concurrency)] = result
                    report(result)
            print(f"responder answered {responder.served} http-01 fetches")
            pairs = (("certctl http-01", "pebble http-01"), ("certctl trusted+EAB", "pebble always-valid"))
            for concurrency in concurrencies:
                for ours, peer in pairs:
                    if (ours, concurrency) not in results or (peer, concurrency) not in results:
                        continue
                    theirs = results[(peer, concurrency)].rate
                    ratio = results[(ours, concurrency)].rate / theirs if theirs else float("nan")
                    print(f"c={concurrency}: {ours} / {peer}: {ratio:.2f}")
    finally:
        await responder.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measured period per mode and concurrency"
    )
    parser.add_argument(
        "--concurrency", default="8,64", help="comma-separated numbers of concurrent accounts"
    )
    parser.add_argument(
        "--orders", type=int, default=0, help="at most this many orders per run (0: no limit)"
    )
    parser.add_argument("--workers", type=int, default=1, help="certctl server worker processes")
    parser.add_argument("--poll-ms", type=int, default=20, help="pause before each status read")
    parser.add_argument(
        "--always-poll",
        action="store_true",
        help="poll the authorization after each challenge and the order before finalize, whatever they said",
    )
    parser.add_argument("--database-url", help="PostgreSQL server URL (a fresh database is created)")
    parser.add_argument("--only", help="run only the modes whose label contains this text")
    parser.add_argument("--smoke", action="store_true", help="a few seconds at concurrency 4")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.concurrency, args.orders = 2.0, "4", 40
    with tempfile.TemporaryDirectory(prefix="certctl-bench-acme-") as workdir:
        uvloop.run(run(args, Path(workdir)))


if __name__ == "__main__":
    main()
