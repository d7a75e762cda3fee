"""ACME settings of a real ``certctl server`` process: the directory's ``meta`` shows the terms of
service and the website it was started with, an account must agree to the terms, and the per-address
account limit counts the real TCP peer (127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.acme_client import AcmeTestClient
from support.live import LiveServer, start_live_server

TERMS = "https://ca.example.test/terms-v2"
WEBSITE = "https://ca.example.test/"
ERR = "urn:ietf:params:acme:error:"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_live_server(
        tmp_path_factory.mktemp("acme-settings"),
        extra_env={
            "CERTCTL_ACME_TERMS_OF_SERVICE": TERMS,
            "CERTCTL_ACME_WEBSITE": WEBSITE,
            "CERTCTL_ACME_ACCOUNTS_PER_ADDRESS_HOUR": "2",
        },
    )
    try:
        yield server
    finally:
        server.stop()


def test_directory_meta_terms_and_the_address_limit(live: LiveServer, tmp_path: Path) -> None:
    with live.client() as http:
        acme = AcmeTestClient(http, f"{live.url}/acme/directory")
        meta = acme.directory["meta"]
        assert (meta["termsOfService"], meta["website"]) == (TERMS, WEBSITE)
        refused = acme.post(acme.directory["newAccount"], {"termsOfServiceAgreed": False})
        assert (refused.status_code, refused.json()["type"]) == (400, ERR + "userActionRequired")
        assert AcmeTestClient(http, f"{live.url}/acme/directory").register().status_code == 201
        assert AcmeTestClient(http, f"{live.url}/acme/directory").register().status_code == 201
        third = AcmeTestClient(http, f"{live.url}/acme/directory").register()
        assert third.status_code == 429, third.text
        assert third.json()["detail"].startswith("2 accounts were created from 127.0.0.1 in the last hour")
        assert int(third.headers["Retry-After"]) >= 1
