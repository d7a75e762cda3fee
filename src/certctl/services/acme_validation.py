"""Validation of ACME challenges by the server (RFC 8555 §8): http-01 (§8.3) over the configured port,
dns-01 (§8.4) by the TXT record ``_acme-challenge.<name>``, and tls-alpn-01 (RFC 8737, see
:mod:`certctl.services.acme_challenges_tlsalpn`). Names resolve through the configured DNS server, else
the system resolver.

Validation runs off the request path as an asyncio task of the process that accepted the challenge.
The challenge is ``processing`` in the database before the task starts, and the task's result lands in
one transaction (challenge, authorization, order). If the process stops in between, the challenge stays
``processing``; the leader's sweep finds it by its age and runs it again, so nothing is lost and running a
validation twice is harmless (the result is written only while the challenge is still ``processing``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import socket
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver
import httpx2

from certctl.services.acme import AcmeConfig
from certctl.services.acme_caa import check_caa
from certctl.services.acme_challenges_tlsalpn import check_tls_alpn01
from certctl.services.acme_errors import AcmeError
from certctl.services.context import ServiceContext
from certctl.settings import parse_listen
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import acme

log = logging.getLogger("certctl.acme")
MAX_BODY = 8192


class ChallengeValidator:
    def __init__(self, context: ServiceContext, config: AcmeConfig) -> None:
        self._ctx = context
        self._config = config
        self._running: set[asyncio.Task[None]] = set()
        self._client: httpx2.AsyncClient | None = None

    def start(self, challenge_id: str) -> None:
        """Validate in the background; the task is kept referenced until it ends."""
        task = asyncio.get_running_loop().create_task(self.validate(challenge_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def drain(self) -> None:
        """Wait for the validations under way (tests; orderly shutdown), then close the HTTP client."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def rerun_stale(self) -> int:
        """Run again the validations a stopped process left ``processing`` (leader sweep)."""
        before = self._ctx.clock.now() - self._config.stale_validation_after
        async with read_only(self._ctx.engine) as connection:
            stale = await acme.stale_processing_challenges(connection, started_before=before, limit=100)
        for challenge_id in stale:
            await self.validate(challenge_id)
        return len(stale)

    async def validate(self, challenge_id: str) -> None:
        try:
            async with read_only(self._ctx.engine) as connection:
                found = await acme.validation_context(connection, challenge_id)
            if found is None or found["status"] != "processing":
                return
            challenge = {k: found[k] for k in ("id", "authorization_id", "type", "token", "status")}
            key_authorization = f"{found['token']}.{found['jwk_thumbprint']}"
            error: AcmeError | None = None
            try:
                await self._check(challenge, found["identifier_value"], key_authorization)
                if self._config.caa_identities and found["identifier_type"] == "dns":
                    await check_caa(
                        self._resolver(),
                        found["identifier_value"],
                        wildcard=bool(found["wildcard"]),
                        identities=self._config.caa_identities,
                    )
            except AcmeError as exc:
                error = exc
            await self._record(challenge, found["authorization_id"], error)
        except Exception:  # the challenge stays processing; the sweep runs it again
            log.warning("validation of ACME challenge %s failed to run", challenge_id, exc_info=True)

    async def _check(self, challenge: dict[str, Any], name: str, key_authorization: str) -> None:
        """Run the check of the challenge's type; :class:`AcmeError` says why it failed."""
        kind = challenge["type"]
        if kind == "http-01":
            await self._http01(name, challenge["token"], key_authorization)
        elif kind == "dns-01":
            await self._dns01(name, key_authorization)
        elif kind == "tls-alpn-01":
            await check_tls_alpn01(
                name=name,
                addresses=await self._addresses(name),
                port=self._config.tlsalpn01_port,
                key_authorization=key_authorization,
                wait_seconds=self._config.validation_timeout_seconds,
            )
        else:
            raise AcmeError("serverInternal", f"challenge type {kind!r} is not validated here")

    async def _record(self, challenge: dict[str, Any], authz_id: str, error: AcmeError | None) -> None:
        now = self._ctx.clock.now()
        status = "invalid" if error else "valid"
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            values = {
                "status": status,
                "error": error.as_problem() if error else None,
                "validated_at": None if error else now,
                "updated_at": now,
            }
            if not await acme.swap_challenge_status(
                connection, challenge["id"], expected="processing", values=values
            ):
                return
            authz = await acme.get_authorization(connection, authz_id)  # another challenge may have won
            if authz is None or authz["status"] != "pending":
                return
            await acme.update_authorization(connection, authz["id"], {"status": status})
            order = await acme.get_order(connection, authz["order_id"])
            assert order is not None
            if error is not None:
                if order["status"] in ("pending", "ready"):
                    await acme.update_order(connection, order["id"], {"status": "invalid", "updated_at": now})
                return
            others = await acme.authorizations_of(connection, order["id"])
            if order["status"] == "pending" and all(
                a["status"] == "valid" or a["id"] == authz["id"] for a in others
            ):
                await acme.update_order(connection, order["id"], {"status": "ready", "updated_at": now})

    async def _http01(self, name: str, token: str, key_authorization: str) -> None:
        """RFC 8555 §8.3: GET http://<name>:<port>/.well-known/acme-challenge/<token> must return the key
        authorization (trailing whitespace ignored). Redirects are not followed."""
        addresses = await self._addresses(name)
        port = self._config.http01_port
        path = f"/.well-known/acme-challenge/{token}"
        last: AcmeError | None = None
        client = self._http01_client()
        for address in addresses:
            host = f"[{address}]" if ":" in address else address
            try:
                response = await client.get(f"http://{host}:{port}{path}", headers={"Host": name})
            except httpx2.TransportError as exc:
                last = AcmeError("connection", f"could not fetch {name}:{port}{path}: {type(exc).__name__}")
                continue
            if response.status_code != 200:
                raise AcmeError(
                    "unauthorized", f"{name}:{port}{path} answered HTTP {response.status_code}, not 200"
                )
            body = response.content[:MAX_BODY].decode("utf-8", "replace").rstrip()
            if body != key_authorization:
                raise AcmeError(
                    "incorrectResponse", f"{name}:{port}{path} served the wrong key authorization"
                )
            return
        raise last or AcmeError("connection", f"no address of {name} could be reached")

    def _http01_client(self) -> httpx2.AsyncClient:
        """Made once: plain http only, no redirects followed, no proxy from the environment, and no
        connection kept alive (each fetch opens its own, to the address just resolved). verify=False
        skips building a CA-bundle TLS context, which a client made per validation paid each time."""
        if self._client is None:
            self._client = httpx2.AsyncClient(
                timeout=httpx2.Timeout(self._config.validation_timeout_seconds),
                follow_redirects=False,
                trust_env=False,
                verify=False,
                limits=httpx2.Limits(max_keepalive_connections=0),
            )
        return self._client

    async def _dns01(self, name: str, key_authorization: str) -> None:
        """RFC 8555 §8.4: a TXT record at ``_acme-challenge.<name>`` (CNAMEs followed) must hold
        base64url(SHA-256(key authorization)); other TXT values there are ignored."""
        record = f"_acme-challenge.{name}"
        digest = hashlib.sha256(key_authorization.encode()).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=")
        try:
            answer = await self._resolver().resolve(record, "TXT")
        except dns.resolver.NoAnswer:
            raise AcmeError("unauthorized", f"no TXT record found at {record}") from None
        except dns.resolver.NXDOMAIN:
            raise AcmeError("dns", f"{record} does not exist (NXDOMAIN)") from None
        except dns.exception.DNSException as exc:
            raise AcmeError("dns", f"DNS lookup of TXT {record} failed: {type(exc).__name__}") from None
        values = [b"".join(rdata.strings) for rdata in answer]
        if not any(hmac.compare_digest(value, expected) for value in values):
            raise AcmeError("incorrectResponse", f"no TXT record at {record} matches the key authorization")

    def _resolver(self) -> dns.asyncresolver.Resolver:
        """The configured DNS server, else the system's (``/etc/resolv.conf``)."""
        if self._config.dns_resolver is None:
            resolver = dns.asyncresolver.Resolver()
        else:
            host, port = parse_listen(self._config.dns_resolver)
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [host]
            resolver.port = port
        resolver.lifetime = self._config.validation_timeout_seconds
        return resolver

    async def _addresses(self, name: str) -> list[str]:
        """IPv4 first, then IPv6: through the configured DNS server, or the system resolver."""
        try:
            return [str(ipaddress.ip_address(name))]
        except ValueError:
            pass
        if self._config.dns_resolver is None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
            except OSError:
                raise AcmeError("dns", f"{name} does not resolve") from None
            found = [str(info[4][0]) for info in infos]
            return sorted(dict.fromkeys(found), key=lambda a: ":" in a)
        resolver = self._resolver()
        addresses: list[str] = []
        for record_type in ("A", "AAAA"):
            try:
                answer = await resolver.resolve(name, record_type)
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
                continue
            except dns.exception.DNSException:
                raise AcmeError("dns", f"DNS lookup of {name} failed") from None
            addresses += [r.to_text() for r in answer]
        if not addresses:
            raise AcmeError("dns", f"{name} has no A or AAAA record")
        return addresses
