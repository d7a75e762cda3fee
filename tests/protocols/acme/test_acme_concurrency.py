"""64 ACME accounts at once against a real ``certctl server`` process, on each database engine.

Every account registers and completes one order (http-01 answered by a local responder, names resolved
by pebble-challtestsrv) concurrently with the others. All must succeed within a bounded overall wait
(a deadlock or a lost validation would exceed it), and every object the server reports as
``processing`` must carry ``Retry-After`` (RFC 8555 §7.5.1, §7.4), which the clients here honour.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc import jws
from joserfc.jwk import ECKey

from certctl.services.acme_validation import INLINE_WAIT_SECONDS
from support.acme_client import REGISTRY, Http01Server
from support.csrs import csr_pem
from support.live import LiveServer, start_live_server

pytestmark = pytest.mark.peer("pebble-challtestsrv")
ACCOUNTS = 64
OVERALL_SECONDS = 300.0
JOSE = {"Content-Type": "application/jose+json"}


@pytest.fixture
def acme_server(
    database_url: str, resolver: str, responder: Http01Server, tmp_path: Path
) -> Iterator[LiveServer]:
    server = start_live_server(
        tmp_path,
        extra_env={
            "CERTCTL_DATABASE_URL": database_url,
            "CERTCTL_ACME_HTTP01_PORT": str(responder.port),
            "CERTCTL_ACME_DNS_RESOLVER": resolver,
        },
    )
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Observed:
    """Every ``processing`` answer seen, and those among them lacking ``Retry-After``."""

    processing: int = 0
    without_retry_after: list[str] = field(default_factory=list)


class Account:
    def __init__(self, http: httpx2.AsyncClient, directory: dict[str, Any], observed: Observed) -> None:
        self.http, self.directory, self.observed = http, directory, observed
        self.key = ECKey.generate_key("P-256")
        self.kid: str | None = None
        self.nonce: str | None = None

    async def post(self, url: str, payload: dict[str, Any] | None) -> httpx2.Response:
        if self.nonce is None:
            self.nonce = (await self.http.head(self.directory["newNonce"])).headers["Replay-Nonce"]
        header: dict[str, Any] = {"alg": "ES256", "nonce": self.nonce, "url": url}
        if self.kid is None:
            header["jwk"] = self.key.as_dict(private=False)
        else:
            header["kid"] = self.kid
        body = b"" if payload is None else json.dumps(payload).encode()
        signed = jws.serialize_json({"protected": header}, body, self.key, registry=REGISTRY)
        response = await self.http.post(url, content=json.dumps(signed), headers=JOSE)
        self.nonce = response.headers.get("Replay-Nonce")
        assert response.status_code < 300, f"{url}: {response.status_code} {response.text}"
        if (
            "json" in response.headers.get("content-type", "")
            and response.json().get("status") == "processing"
        ):
            self.observed.processing += 1
            if "Retry-After" not in response.headers:
                self.observed.without_retry_after.append(url)
        return response

    async def wait(self, url: str, until: str, response: httpx2.Response) -> dict[str, Any]:
        """Re-read ``url`` after ``Retry-After`` until its status is ``until``."""
        body: dict[str, Any] = response.json()
        while body["status"] != until:
            assert body["status"] in ("pending", "processing", "ready"), f"{url}: {body}"
            await asyncio.sleep(float(response.headers.get("Retry-After", "0.2")))
            response = await self.post(url, None)
            body = response.json()
        return body


async def _one_account(
    http: httpx2.AsyncClient,
    directory: dict[str, Any],
    responder: Http01Server,
    index: int,
    observed: Observed,
) -> x509.Certificate:
    account = Account(http, directory, observed)
    registered = await account.post(directory["newAccount"], {"termsOfServiceAgreed": True})
    account.kid = registered.headers["Location"]
    name = f"c{index}.concurrency.example.test"
    created = await account.post(directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]})
    order_url, order = created.headers["Location"], created.json()
    authz_url = order["authorizations"][0]
    authz = (await account.post(authz_url, None)).json()
    challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
    thumbprint = account.key.thumbprint()
    responder.tokens[challenge["token"]] = f"{challenge['token']}.{thumbprint}"
    if index % 8 == 0:  # a slow web server: the answer to the POST comes before the validation ends
        responder.delays[challenge["token"]] = INLINE_WAIT_SECONDS + 1.0
    answered = await account.post(challenge["url"], {})
    await account.wait(challenge["url"], "valid", answered)
    await account.wait(order_url, "ready", await account.post(order_url, None))
    der = x509.load_pem_x509_csr(csr_pem(name).encode()).public_bytes(serialization.Encoding.DER)
    csr = base64.urlsafe_b64encode(der).rstrip(b"=").decode()
    finalized = await account.post(order["finalize"], {"csr": csr})
    valid = await account.wait(order_url, "valid", finalized)
    chain = await account.post(valid["certificate"], None)
    leaf = x509.load_pem_x509_certificates(chain.content)[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [name]
    return leaf


async def _all_accounts(
    server: LiveServer, responder: Http01Server, observed: Observed
) -> list[x509.Certificate]:
    limits = httpx2.Limits(max_connections=ACCOUNTS, max_keepalive_connections=ACCOUNTS)
    context = ssl.create_default_context(cafile=str(server.ca_bundle))
    async with httpx2.AsyncClient(verify=context, limits=limits, timeout=httpx2.Timeout(120.0)) as http:
        directory = (await http.get(f"{server.url}/acme/directory")).json()
        jobs = (_one_account(http, directory, responder, index, observed) for index in range(ACCOUNTS))
        return list(await asyncio.wait_for(asyncio.gather(*jobs), OVERALL_SECONDS))


def test_64_concurrent_accounts_each_complete_an_order(
    acme_server: LiveServer, responder: Http01Server
) -> None:
    observed = Observed()
    leaves = asyncio.run(_all_accounts(acme_server, responder, observed))
    assert len({leaf.serial_number for leaf in leaves}) == ACCOUNTS
    assert observed.processing >= 1, "no challenge was ever seen processing"
    assert observed.without_retry_after == []
    with acme_server.client() as client:
        stored = client.get("/api/v1/certificates", params={"source": "acme", "limit": 200}).json()["items"]
    assert len(stored) == ACCOUNTS
