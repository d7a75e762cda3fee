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
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from certctl.services import acme_dns_stub as dns_stub
from certctl.services import acme_http01 as http01
from certctl.services.acme import AcmeConfig
from certctl.services.acme_caa import check_caa
from certctl.services.acme_challenges_tlsalpn import check_tls_alpn01
from certctl.services.acme_errors import AcmeError
from certctl.services.context import ServiceContext
from certctl.settings import parse_listen
from certctl.store.db import autocommit_reads, hot
from certctl.store.repositories import acme

log = logging.getLogger("certctl.acme")
MAX_BODY = 8192


INLINE_WAIT_SECONDS = 2.0
"""How long the answer to a challenge POST waits for the validation it started."""


class ChallengeValidator:
    def __init__(self, context: ServiceContext, config: AcmeConfig) -> None:
        self._ctx = context
        self._config = config
        self._running: set[asyncio.Task[dict[str, Any] | None]] = set()
        self._dns: dns.asyncresolver.Resolver | None = None
        self._dns_address: tuple[str, int] | None = None

    def start(
        self, challenge_id: str, *, context: dict[str, Any] | None = None
    ) -> asyncio.Task[dict[str, Any] | None]:
        """Validate in the background; the task is kept referenced until it ends. ``context``: what
        :func:`validation_context` would read, when the caller has just read it (see ``context_of``)."""
        task = asyncio.get_running_loop().create_task(self.validate(challenge_id, context=context))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    @staticmethod
    def context_of(challenge: dict[str, Any], authz: dict[str, Any], thumbprint: str) -> dict[str, Any]:
        """A validation's context from a challenge just set processing, its authorization (as
        ``challenge_in_context`` reads them) and its account's key thumbprint."""
        return challenge | {
            "status": "processing",
            "identifier_type": authz["identifier_type"],
            "identifier_value": authz["identifier_value"],
            "wildcard": authz["wildcard"],
            "order_id": authz["order_id"],
            "order_authorizations": authz["order_authorizations"],
            "jwk_thumbprint": thumbprint,
        }

    async def inline(self, challenge_id: str, *, context: dict[str, Any]) -> dict[str, Any] | None:
        """Validate in the caller's task, so the answer to the client's POST carries the outcome with no
        hand-over to another task and back; past ``INLINE_WAIT_SECONDS`` the check is abandoned and run
        again in the background (the challenge stays processing; an outcome is stored once, by whichever
        run finds it still processing) and None is returned."""
        try:
            async with asyncio.timeout(INLINE_WAIT_SECONDS):
                return await self.validate(challenge_id, context=context)
        except TimeoutError:
            self.start(challenge_id, context=context)
            return None

    async def drain(self) -> None:
        """Wait for the validations under way (tests; orderly shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def rerun_stale(self) -> int:
        """Run again the validations a stopped process left ``processing`` (leader sweep)."""
        before = self._ctx.clock.now() - self._config.stale_validation_after
        async with autocommit_reads(self._ctx.engine) as connection:
            stale = await acme.stale_processing_challenges(connection, started_before=before, limit=100)
        for challenge_id in stale:
            await self.validate(challenge_id)
        return len(stale)

    async def validate(
        self, challenge_id: str, *, context: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Check the challenge and store the outcome: the challenge's new fields, None when it was not
        (or no longer) processing or the check could not run."""
        try:
            found = context
            if found is None:
                async with hot(self._ctx.engine) as connection:
                    found = await acme.validation_context(connection, challenge_id)
            if found is None or found["status"] != "processing":
                return None
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
            single = found["order_authorizations"] == 1
            return await self._record(
                challenge_id, found["authorization_id"], found["order_id"], error, single=single
            )
        except Exception:  # the challenge stays processing; the sweep runs it again
            log.warning("validation of ACME challenge %s failed to run", challenge_id, exc_info=True)
            return None

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

    async def _record(
        self, challenge_id: str, authz_id: str, order_id: str, error: AcmeError | None, *, single: bool
    ) -> dict[str, Any] | None:
        """Store the outcome; ``single``: the order has this one authorization (one statement)."""
        now = self._ctx.clock.now()
        problem = error.as_problem() if error else None
        async with hot(self._ctx.engine, transaction=not single) as connection:
            recorded = await acme.record_validation(
                connection,
                challenge_id=challenge_id,
                authz_id=authz_id,
                order_id=order_id,
                error=problem,
                now=now,
                alone=single,
            )
        if not recorded:
            return None
        return {
            "status": "invalid" if error else "valid",
            "error": problem,
            "validated_at": None if error else now,
            "updated_at": now,
        }

    async def _http01(self, name: str, token: str, key_authorization: str) -> None:
        """RFC 8555 §8.3: GET http://<name>:<port>/.well-known/acme-challenge/<token> must return the key
        authorization (trailing whitespace ignored). Redirects are not followed."""
        port = self._config.http01_port
        path = f"/.well-known/acme-challenge/{token}"
        host = f"[{name}]" if ":" in name else name  # an IPv6 identifier (RFC 8738 §3)
        last: AcmeError | None = None
        async with aclosing(self._address_batches(name)) as batches:
            async for batch in batches:
                for address in batch:
                    try:
                        status, content = await http01.fetch(
                            address,
                            port,
                            host=host,
                            path=path,
                            wait_seconds=self._config.validation_timeout_seconds,
                            max_body=MAX_BODY,
                        )
                    except http01.FetchError as exc:
                        last = AcmeError("connection", f"could not fetch {name}:{port}{path}: {exc}")
                        continue
                    if status != 200:
                        raise AcmeError(
                            "unauthorized", f"{name}:{port}{path} answered HTTP {status}, not 200"
                        )
                    body = content.decode("utf-8", "replace").rstrip()
                    if body != key_authorization:
                        raise AcmeError(
                            "incorrectResponse", f"{name}:{port}{path} served the wrong key authorization"
                        )
                    return
        raise last or AcmeError("connection", f"no address of {name} could be reached")

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
        """The configured DNS server, else the system's (``/etc/resolv.conf``); made once."""
        if self._dns is None:
            self._dns = self._make_resolver()
        return self._dns

    def _make_resolver(self) -> dns.asyncresolver.Resolver:
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
        found: list[str] = []
        async for batch in self._address_batches(name):
            found += batch
        return found

    async def _address_batches(self, name: str) -> AsyncGenerator[list[str], None]:
        """The name's addresses, IPv4 first: with a configured DNS server the AAAA query is made only
        when the IPv4 addresses did not serve (none, or none reachable), so a validation that succeeds
        over IPv4 costs one query. ``dns`` when the name has no address at all."""
        try:
            yield [str(ipaddress.ip_address(name))]
            return
        except ValueError:
            pass
        if self._config.dns_resolver is None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
            except OSError:
                raise AcmeError("dns", f"{name} does not resolve") from None
            found = [str(info[4][0]) for info in infos]
            yield sorted(dict.fromkeys(found), key=lambda a: ":" in a)
            return
        any_found = False
        for record_type in ("A", "AAAA"):
            addresses = await self._lookup(name, record_type)
            if addresses:
                any_found = True
                yield addresses
        if not any_found:
            raise AcmeError("dns", f"{name} has no A or AAAA record")

    async def _lookup(self, name: str, record_type: str) -> list[str]:
        """The configured DNS server's A or AAAA addresses of ``name`` (none: ``[]``): read directly when
        the answer is plain (:mod:`acme_dns_stub`), else through the full resolver."""
        server = self._dns_server()
        try:
            stub = await dns_stub.lookup(
                server,
                name,
                dns_stub.A if record_type == "A" else dns_stub.AAAA,
                wait_seconds=self._config.validation_timeout_seconds,
            )
        except TimeoutError:
            raise AcmeError("dns", f"DNS lookup of {name} failed") from None
        except OSError:
            stub = dns_stub.UNSURE
        if stub is not dns_stub.UNSURE:
            return stub
        try:
            answer = await self._resolver().resolve(name, record_type)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
            return []
        except dns.exception.DNSException:
            raise AcmeError("dns", f"DNS lookup of {name} failed") from None
        return [r.to_text() for r in answer]

    def _dns_server(self) -> tuple[str, int]:
        """The configured DNS server's address; parsed once."""
        if self._dns_address is None:
            assert self._config.dns_resolver is not None
            self._dns_address = parse_listen(self._config.dns_resolver)
        return self._dns_address
