"""The ACME HTTP edge in front of the web framework, on both databases: wrong methods and unknown
resources answer ACME problems, an oversized body is refused before any work, every answer carries the
server's common headers, a challenge POST answers with the validation's outcome, two authorizations
of one order validated at the same moment leave the order ready, refused identifiers are named in
subproblems, and a certificate offers its alternate chain."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import urllib.request
from typing import Any

import pytest
from cryptography import x509

from support.acme_client import CHALLTESTSRV_MANAGEMENT, AcmeTestClient, Http01Server
from support.acme_inprocess import AcmeApp, issue

pytestmark = pytest.mark.peer("pebble-challtestsrv")
ERR = "urn:ietf:params:acme:error:"


def _client(app: AcmeApp) -> AcmeTestClient:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    assert acme.register().status_code == 201
    return acme


def test_wrong_method_unknown_resource_and_oversized_body(app: AcmeApp) -> None:
    acme = _client(app)
    new_order = acme.directory["newOrder"]
    wrong = app.client.get(new_order)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.headers["content-type"] == "application/problem+json"
    assert wrong.json()["type"] == ERR + "malformed"
    assert app.client.post("https://testserver/acme/directory").status_code == 405

    for path in ("/acme/", "/acme/default/nonsense", "/acme/default/order", "/acme/default/acct/x/y"):
        unknown = app.client.post("https://testserver" + path, content=b"{}")
        assert unknown.status_code == 404, path
        assert unknown.json()["type"] == ERR + "malformed", path

    huge = app.client.post(
        new_order, content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/jose+json"}
    )
    assert huge.status_code == 413
    assert huge.json()["type"] == ERR + "malformed"
    assert "exceeds" in huge.json()["detail"]


def test_every_answer_carries_the_common_headers(app: AcmeApp) -> None:
    acme = _client(app)
    for response in (
        app.client.get(acme.directory_url),
        app.client.head(acme.directory["newNonce"]),
        acme.post(acme.directory["newOrder"], {"identifiers": []}),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert len(response.headers["x-request-id"]) == 16
        assert response.headers["replay-nonce"]
        assert response.headers["cache-control"] == "no-store"
    head = app.client.head(acme.directory_url)
    assert head.status_code == 200


def test_challenge_answer_carries_the_outcome(app: AcmeApp, responder: Http01Server) -> None:
    acme = _client(app)
    for served, status in ((True, "valid"), (False, "invalid")):
        name = f"inline-{status}.example.test"
        order = acme.new_order(name).json()
        authz = acme.post(order["authorizations"][0], None).json()
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        if served:
            responder.tokens[challenge["token"]] = f"{challenge['token']}.{acme.thumbprint()}"
        answered = acme.post(challenge["url"], {})
        assert answered.status_code == 200, answered.text
        assert answered.json()["status"] == status
        if served:
            assert "validated" in answered.json()
        else:
            assert answered.json()["error"]["type"] == ERR + "unauthorized"
        assert acme.post(order["authorizations"][0], None).json()["status"] == status


def test_two_authorizations_validated_at_once_make_the_order_ready(
    app: AcmeApp, responder: Http01Server
) -> None:
    acme = _client(app)
    created = acme.new_order("a.twin.example.test", "b.twin.example.test")
    order_url, order = created.headers["Location"], created.json()
    challenge_ids = []
    for authz_url in order["authorizations"]:
        authz = acme.post(authz_url, None).json()
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        responder.tokens[challenge["token"]] = f"{challenge['token']}.{acme.thumbprint()}"
        challenge_ids.append(challenge["url"].rsplit("/", 1)[1])
    account = app.call(app.services.acme.accounts.by_id, acme.kid.rsplit("/", 1)[1])  # type: ignore[union-attr]

    async def both() -> list[Any]:
        orders = app.services.acme.orders
        for challenge_id in challenge_ids:
            await orders.respond(account=account, challenge_id=challenge_id)
        validator = app.services.acme.validator
        return list(await asyncio.gather(*(validator.validate(c) for c in challenge_ids)))

    outcomes = app.call(both)
    assert [outcome["status"] for outcome in outcomes] == ["valid", "valid"]
    assert acme.post(order_url, None).json()["status"] == "ready"
    assert json.loads(acme.post(order_url, None).text)["authorizations"] == order["authorizations"]


def test_a_fault_of_ours_is_a_server_internal_problem(
    app: AcmeApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    acme = _client(app)
    order_url = acme.new_order("fault.example.test").headers["Location"]

    async def broken(**_kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(app.services.acme.orders, "order", broken)
    answer = acme.post(order_url, None)
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == ERR + "serverInternal"
    assert "database" not in answer.text  # the cause is logged, not sent
    assert answer.headers["replay-nonce"]
    assert any("ACME request POST" in record.getMessage() for record in caplog.records)


def _add_record(resolver: str, kind: str, host: str, addresses: list[str]) -> None:
    body = json.dumps({"host": host, "addresses": addresses}).encode()
    request = urllib.request.Request(
        CHALLTESTSRV_MANAGEMENT[resolver] + f"/add-{kind}", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


def test_http01_falls_back_to_ipv6_when_ipv4_does_not_serve(
    app: AcmeApp, responder: Http01Server, resolver: str
) -> None:
    """The AAAA lookup is made only when the IPv4 addresses did not serve: here the A record points at
    an address where nothing listens, and the key authorization is served on ::1."""
    name = "dual.example.test"
    _add_record(resolver, "a", name + ".", ["127.0.0.2"])
    _add_record(resolver, "aaaa", name + ".", ["::1"])

    class V6Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

    tokens: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = tokens.get(self.path.rsplit("/", 1)[-1], "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    v6 = V6Server(("::1", responder.port), Handler)
    thread = threading.Thread(target=v6.serve_forever, daemon=True)
    thread.start()
    try:
        acme = _client(app)
        order = acme.new_order(name).json()
        authz = acme.post(order["authorizations"][0], None).json()
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        tokens[challenge["token"]] = f"{challenge['token']}.{acme.thumbprint()}"
        answered = acme.post(challenge["url"], {})
        assert answered.json()["status"] == "valid", answered.text
    finally:
        v6.shutdown()
        v6.server_close()


def test_an_order_of_many_names_is_stored_whole(app: AcmeApp) -> None:
    """Past four names an order is stored by three statements in one transaction instead of one."""
    acme = _client(app)
    names = [f"n{i}.many.example.test" for i in range(6)]
    created = acme.new_order(*names)
    assert created.status_code == 201, created.text
    order = created.json()
    assert len(order["authorizations"]) == 6
    seen = set()
    for authz_url in order["authorizations"]:
        authz = acme.post(authz_url, None).json()
        assert authz["status"] == "pending"
        assert sorted(c["type"] for c in authz["challenges"]) == ["dns-01", "http-01", "tls-alpn-01"]
        seen.add(authz["identifier"]["value"])
    assert seen == set(names)
    assert acme.post(created.headers["Location"], None).json()["identifiers"] == [
        {"type": "dns", "value": name} for name in names
    ]


def test_refused_identifiers_are_named_in_subproblems(app: AcmeApp) -> None:
    """RFC 8555 §6.7.1: every refused identifier of a newOrder gets its own subproblem naming it; one
    refusal keeps its own type, several of one type share it, mixed types are ``malformed``."""
    acme = _client(app)

    def order(*identifiers: Any) -> Any:
        return acme.post(acme.directory["newOrder"], {"identifiers": list(identifiers)})

    wildcard = {"type": "dns", "value": "*.sub.example.test"}
    bad_name = {"type": "dns", "value": "bad_name.example.test"}
    fine = {"type": "dns", "value": "fine.example.test"}
    one = order(fine, wildcard)
    assert one.status_code == 400 and one.json()["type"] == ERR + "rejectedIdentifier"
    assert one.json()["subproblems"] == [
        {
            "type": ERR + "rejectedIdentifier",
            "detail": one.json()["detail"],
            "identifier": wildcard,
        }
    ]
    same = order(wildcard, fine, bad_name).json()
    assert same["type"] == ERR + "rejectedIdentifier"
    assert same["detail"] == "2 of the 3 identifiers were refused (see subproblems)"
    assert [p["identifier"] for p in same["subproblems"]] == [wildcard, bad_name]
    mixed = order({"type": "email", "value": "a@example.test"}, bad_name, "not an object").json()
    assert mixed["type"] == ERR + "malformed"
    kinds = [(p["type"].removeprefix(ERR), p.get("identifier")) for p in mixed["subproblems"]]
    assert kinds == [
        ("unsupportedIdentifier", {"type": "email", "value": "a@example.test"}),
        ("rejectedIdentifier", bad_name),
        ("malformed", None),
    ]


def test_certificate_download_offers_the_chain_with_its_root(app: AcmeApp, responder: Http01Server) -> None:
    """RFC 8555 §7.4.2: the default chain ends below the root; ``Link: rel="alternate"`` (a header line
    of its own beside the directory's ``rel="index"``) names the same leaf with the root appended, and
    that answer links back. The alternate of a certificate that is not the account's is not found."""
    acme = _client(app)
    order, leaf = issue(acme, responder, "chains.example.test")
    default = acme.post(order["certificate"], None)
    assert default.status_code == 200
    links = default.headers.get_list("link")
    alternate_url = order["certificate"] + "/alternate"
    assert f'<{alternate_url}>;rel="alternate"' in links
    assert any(link.endswith(';rel="index"') for link in links)
    alternate = acme.post(alternate_url, None)
    assert alternate.status_code == 200
    assert alternate.headers["content-type"] == "application/pem-certificate-chain"
    assert f'<{order["certificate"]}>;rel="alternate"' in alternate.headers.get_list("link")
    shorter = x509.load_pem_x509_certificates(default.content)
    longer = x509.load_pem_x509_certificates(alternate.content)
    assert shorter[0] == longer[0] == leaf
    assert longer[:-1] == shorter
    assert shorter[-1].issuer == longer[-1].subject == longer[-1].issuer  # the root, self-signed
    stranger = _client(app)
    missing = stranger.post(alternate_url, None)
    assert (missing.status_code, missing.json()["type"]) == (404, ERR + "malformed")
