"""The ACME endpoints (RFC 8555 §7): one small handler per resource over the JWS transport in ``jws``.

Every response carries a fresh ``Replay-Nonce``, ``Link: <directory>;rel="index"`` and
``Cache-Control: no-store``; errors are ``application/problem+json`` with an ACME problem type.
Routes live outside ``/api/v1``: each authenticates by its JWS, not by an API key. They are answered by
:class:`certctl.protocols.acme.http.AcmeEndpoint` in front of the web framework (ARCHITECTURE §5: hot
paths stay close to the raw server): ``dispatch`` matches the path by its segments.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from certctl.protocols.acme import views
from certctl.protocols.acme.jws import KeyMode, Verified, verify
from certctl.services.acme import AcmeProfile
from certctl.services.acme_ari import RETRY_AFTER_SECONDS
from certctl.services.acme_eab import eab_rules
from certctl.services.acme_errors import AcmeError, not_found
from certctl.services.acme_keychange import KeyInUse
from certctl.services.acme_limits import address_key
from certctl.services.acme_profile_choice import advertised_profiles, choose_profile
from certctl.services.acme_server import AcmeServer
from certctl.store.db import riding

Handler = Callable[[AcmeServer, AcmeProfile, views.Urls, Verified, str, "Incoming"], Awaitable[Response]]


def _headers(server: AcmeServer, urls: views.Urls | None) -> dict[str, str]:
    headers = {"Replay-Nonce": server.nonces.issue(), "Cache-Control": "no-store"}
    if urls is not None:
        headers["Link"] = f'<{urls.directory()}>;rel="index"'
    return headers


def _json(server: AcmeServer, urls: views.Urls, body: Any, status: int = 200, **extra: str) -> Response:
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json",
        headers=_headers(server, urls) | extra,
    )


def _problem(server: AcmeServer, urls: views.Urls | None, error: AcmeError) -> Response:
    headers = _headers(server, urls)
    if error.retry_after is not None:
        headers = headers | {"Retry-After": str(error.retry_after)}
    return Response(
        json.dumps(error.as_problem()),
        status_code=error.status,
        media_type="application/problem+json",
        headers=headers,
    )


@dataclass(frozen=True)
class Incoming:
    """What the ACME edge needs of an HTTP request."""

    method: str
    base_url: str
    """The URL the client used up to the path, ``https://host[:port]/``."""
    path: str
    content_type: str
    body: bytes
    client: str = ""
    """The connection's peer address (empty when the server names none)."""


_POST_ROUTES: dict[str, tuple[KeyMode, Handler]] = {}
_POST_RESOURCES: dict[tuple[str, str], tuple[KeyMode, Handler]] = {}
_CARRIED: set[Handler] = set()
"""Handlers whose first statement carries the nonce's spend (no change of theirs comes before it)."""


async def dispatch(server: AcmeServer, incoming: Incoming) -> tuple[str, Response]:
    """Answer one request under ``/acme/``: the route template (for metrics) and the response."""
    parts = incoming.path[len("/acme/") :].split("/")
    if parts == ["directory"]:
        answer = await _only(("GET", "HEAD"), incoming, lambda: directory(server, incoming, None))
        return "/acme/directory", answer
    if len(parts) < 2 or not all(parts):
        return "unmatched", _problem(server, None, not_found("resource"))
    profile, resource, rest = parts[0], parts[1], parts[2:]
    if resource == "directory" and not rest:
        template, methods = "/acme/{profile}/directory", ("GET", "HEAD")
        return template, await _only(methods, incoming, lambda: directory(server, incoming, profile))
    if resource == "new-nonce" and not rest:
        template, methods = "/acme/{profile}/new-nonce", ("GET", "HEAD")
        return template, await _only(methods, incoming, lambda: _new_nonce(server, incoming, profile))
    if resource == "renewal-info" and len(rest) == 1:
        template, methods = "/acme/{profile}/renewal-info/{id}", ("GET", "HEAD")
        answer = await _only(methods, incoming, lambda: _renewal_info(server, incoming, profile, rest[0]))
        return template, answer
    if not rest and resource in _POST_ROUTES:
        mode, handler = _POST_ROUTES[resource]
        resource_id, template = "", f"/acme/{{profile}}/{resource}"
    elif (resource, "/".join(rest[1:])) in _POST_RESOURCES and rest:
        suffix = "/".join(rest[1:])
        mode, handler = _POST_RESOURCES[(resource, suffix)]
        resource_id = rest[0]
        template = f"/acme/{{profile}}/{resource}/{{id}}" + (f"/{suffix}" if suffix else "")
    else:
        return "unmatched", _problem(server, None, not_found("resource"))

    async def post() -> Response:
        return await _post(server, incoming, profile, mode, handler, resource_id)

    return template, await _only(("POST",), incoming, post)


def internal_error(server: AcmeServer) -> Response:
    """What a request that failed on our side gets: ``serverInternal`` (500) with a fresh nonce."""
    return _problem(server, None, AcmeError("serverInternal", "the server could not complete the request"))


async def _only(
    methods: tuple[str, ...], incoming: Incoming, answer: Callable[[], Awaitable[Response]]
) -> Response:
    if incoming.method not in methods:
        body = json.dumps(
            {
                "type": "urn:ietf:params:acme:error:malformed",
                "detail": f"use {' or '.join(methods)} here",
                "status": 405,
            }
        )
        headers = {"Allow": ", ".join(methods), "Cache-Control": "no-store"}
        return Response(body, status_code=405, media_type="application/problem+json", headers=headers)
    return await answer()


async def directory(server: AcmeServer, incoming: Incoming, profile: str | None) -> Response:
    urls = None
    try:
        found = await server.profiles.resolve(profile or server.config.default_profile)
        urls = views.Urls(incoming.base_url, found.name)
        required = eab_rules(found.row["rules"]).require_eab
        body = views.directory(
            urls,
            server.config,
            external_account_required=required,
            profiles=await advertised_profiles(server.context),
        )
        return _json(server, urls, body)
    except AcmeError as exc:
        return _problem(server, urls, exc)


async def _new_nonce(server: AcmeServer, incoming: Incoming, profile: str) -> Response:
    urls = views.Urls(incoming.base_url, profile)
    status = 200 if incoming.method == "HEAD" else 204
    return Response(status_code=status, headers=_headers(server, urls))


async def _renewal_info(server: AcmeServer, incoming: Incoming, profile: str, cert_id: str) -> Response:
    """RFC 9773 §4.2: unauthenticated GET of a certificate's suggested renewal window."""
    urls = views.Urls(incoming.base_url, profile)
    try:
        await server.profiles.resolve(profile)
        window = await server.ari.window(cert_id=cert_id)
    except AcmeError as exc:
        return _problem(server, urls, exc)
    body: dict[str, Any] = {
        "suggestedWindow": {"start": views.rfc3339(window.start), "end": views.rfc3339(window.end)}
    }
    if window.explanation_url:
        body["explanationURL"] = window.explanation_url
    response = _json(server, urls, body)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def _post(
    server: AcmeServer, incoming: Incoming, profile: str, mode: KeyMode, handler: Handler, resource_id: str
) -> Response:
    urls = views.Urls(incoming.base_url, profile)
    try:
        found = await server.profiles.resolve(profile)
        verified = await verify(
            server,
            content_type=incoming.content_type,
            body=incoming.body,
            url=incoming.base_url.rstrip("/") + incoming.path,
            mode=mode,
            defer=handler in _CARRIED,
        )
        if verified.rider is None:
            return await handler(server, found, urls, verified, resource_id, incoming)
        with riding(verified.rider):
            try:
                response = await handler(server, found, urls, verified, resource_id, incoming)
            except AcmeError:
                await server.nonces.settle(verified.rider)  # a replay answers badNonce instead
                raise
        await server.nonces.settle(verified.rider)
        return response
    except AcmeError as exc:
        return _problem(server, urls, exc)


def _account_of(verified: Verified) -> dict[str, Any]:
    assert verified.account is not None
    return verified.account


def _account_at(verified: Verified, account_id: str) -> dict[str, Any]:
    """The signing account, which must be the one the URL names."""
    account = _account_of(verified)
    if account["id"] != account_id:
        raise AcmeError("unauthorized", "the kid does not match the account URL")
    return account


async def _new_account(
    server: AcmeServer, profile: AcmeProfile, urls: views.Urls, verified: Verified, _: str, incoming: Incoming
) -> Response:
    account, created = await server.accounts.register(
        profile=profile.name,
        jwk=verified.jwk,
        thumbprint=verified.thumbprint,
        payload=verified.payload or {},
        require_eab=eab_rules(profile.row["rules"]).require_eab,
        url=urls.of("new-account"),
        address=address_key(incoming.client),
    )
    location = urls.of("acct", account["id"])
    return _json(server, urls, views.account(urls, account), 201 if created else 200, Location=location)


async def _account(
    server: AcmeServer,
    _profile: AcmeProfile,
    urls: views.Urls,
    verified: Verified,
    account_id: str,
    _incoming: Incoming,
) -> Response:
    account = _account_at(verified, account_id)
    updated = await server.accounts.update(account=account, payload=verified.payload)
    return _json(server, urls, views.account(urls, updated), Location=urls.of("acct", account_id))


async def _orders(
    server: AcmeServer,
    _profile: AcmeProfile,
    urls: views.Urls,
    verified: Verified,
    account_id: str,
    _incoming: Incoming,
) -> Response:
    account = _account_at(verified, account_id)
    ids = await server.accounts.order_ids(account=account)
    return _json(server, urls, {"orders": [urls.of("order", order_id) for order_id in ids]})


def _order_response(
    server: AcmeServer, urls: views.Urls, order: dict[str, Any], authz_ids: list[str], status: int = 200
) -> Response:
    extra = {"Location": urls.of("order", order["id"])}
    if order["status"] == "processing":
        extra["Retry-After"] = str(server.config.retry_after_seconds)
    return _json(server, urls, views.order(urls, order, authz_ids), status, **extra)


async def _new_order(
    server: AcmeServer,
    profile: AcmeProfile,
    urls: views.Urls,
    verified: Verified,
    _: str,
    _incoming: Incoming,
) -> Response:
    if verified.payload is None:
        raise AcmeError("malformed", "newOrder needs a payload")
    account = _account_of(verified)
    chosen = await choose_profile(
        server.profiles, directory=profile, requested=verified.payload.get("profile")
    )
    order, authz_ids = await server.orders.create(account=account, profile=chosen, payload=verified.payload)
    return _order_response(server, urls, order, authz_ids, 201)


async def _order(
    server: AcmeServer,
    _profile: AcmeProfile,
    urls: views.Urls,
    verified: Verified,
    order_id: str,
    _incoming: Incoming,
) -> Response:
    found, authz_ids = await server.orders.order(account=_account_of(verified), order_id=order_id)
    order = await server.certificates.refresh(found)
    await server.ari.supersede(order=order)
    return _order_response(server, urls, order, authz_ids)


async def _finalize(
    server: AcmeServer,
    profile: AcmeProfile,
    urls: views.Urls,
    verified: Verified,
    order_id: str,
    _incoming: Incoming,
) -> Response:
    account = _account_of(verified)
    claimed = None
    if verified.payload is not None:  # the usual case: the ready order is taken in the same statement
        claimed = await server.certificates.claim(account=account, order_id=order_id)
    if claimed is None:
        order, authz_ids = await server.orders.order(account=account, order_id=order_id)
    else:
        order, authz_ids = claimed
    if verified.payload is None:
        raise AcmeError("malformed", "finalize needs a payload with the CSR")
    if order["profile"] != profile.name:
        try:
            profile = await server.profiles.resolve(order["profile"])
        except AcmeError:
            if claimed is not None:
                await server.certificates.release(order_id)
            raise
    finalized = await server.certificates.finalize(
        account=account, order=order, profile=profile, payload=verified.payload, claimed=claimed is not None
    )
    await server.ari.supersede(order=finalized)
    return _order_response(server, urls, finalized, authz_ids)


async def _authorization(
    server: AcmeServer,
    _profile: AcmeProfile,
    urls: views.Urls,
    verified: Verified,
    authz_id: str,
    _incoming: Incoming,
) -> Response:
    account = _account_of(verified)
    if verified.payload is not None:
        if verified.payload.get("status") != "deactivated":
            raise AcmeError("malformed", "an authorization can only be deactivated")
        await server.orders.deactivate_authorization(account=account, authz_id=authz_id)
    authz, challenges = await server.orders.authorization(account=account, authz_id=authz_id)
    response = _json(server, urls, views.authorization(urls, authz, challenges))
    if any(c["status"] == "processing" for c in challenges):
        response.headers["Retry-After"] = str(server.config.retry_after_seconds)
    return response


async def _challenge(
    server: AcmeServer,
    _profile: AcmeProfile,
    urls: views.Urls,
    verified: Verified,
    challenge_id: str,
    _incoming: Incoming,
) -> Response:
    """A POST with a payload (``{}``) asks for validation; POST-as-GET only reads (RFC 8555 §7.5.1). The
    answer waits briefly for the validation it started, so it usually carries the outcome."""
    account = _account_of(verified)
    if verified.payload is None:
        challenge, authz = await server.orders.challenge(account=account, challenge_id=challenge_id)
    else:
        challenge, authz, started = await server.orders.respond(account=account, challenge_id=challenge_id)
        if started:
            context = server.validator.context_of(challenge, authz, account["jwk_thumbprint"])
            outcome = await server.validator.inline(challenge_id, context=context)
            if outcome is not None:
                challenge = challenge | outcome
    extra = {"Link": f'<{urls.of("authz", authz["id"])}>;rel="up"'}
    if challenge["status"] == "processing":
        extra["Retry-After"] = str(server.config.retry_after_seconds)
    response = _json(server, urls, views.challenge(urls, challenge))
    response.headers.append("Link", extra.pop("Link"))
    response.headers.update(extra)
    return response


async def _certificate(
    server: AcmeServer,
    _profile: AcmeProfile,
    urls: views.Urls,
    verified: Verified,
    version_id: str,
    _incoming: Incoming,
    *,
    alternate: bool = False,
) -> Response:
    """A certificate chain, with a ``Link: rel="alternate"`` header naming the other chain when there
    is one (RFC 8555 §7.4.2), on a line of its own beside the directory's."""
    pem, other = await server.certificates.chain_pem(
        account=_account_of(verified), version_id=version_id, alternate=alternate
    )
    response = Response(pem, media_type="application/pem-certificate-chain", headers=_headers(server, urls))
    if other:
        url = urls.of("cert", version_id) + ("" if alternate else "/alternate")
        response.raw_headers.append((b"link", f'<{url}>;rel="alternate"'.encode()))
    return response


_alternate_certificate: Handler = functools.partial(_certificate, alternate=True)


async def _revoke(
    server: AcmeServer,
    _profile: AcmeProfile,
    urls: views.Urls,
    verified: Verified,
    _: str,
    _incoming: Incoming,
) -> Response:
    if verified.payload is None:
        raise AcmeError("malformed", "revokeCert needs a payload")
    await server.certificates.revoke(
        account=verified.account, jwk_key=verified.public_key, payload=verified.payload
    )
    return Response(status_code=200, headers=_headers(server, urls))


async def _key_change(
    server: AcmeServer,
    _profile: AcmeProfile,
    urls: views.Urls,
    verified: Verified,
    _: str,
    _incoming: Incoming,
) -> Response:
    """RFC 8555 §7.3.5: a key already in use answers 409 with its account's URL as Location."""
    account = _account_of(verified)
    if verified.payload is None:
        raise AcmeError("malformed", "keyChange needs the inner JWS as payload")
    server.accounts.forget(account["id"])
    try:
        updated = await server.key_change.roll_over(
            account=account,
            account_url=urls.of("acct", account["id"]),
            url=urls.of("key-change"),
            payload=verified.payload,
        )
    except KeyInUse as exc:
        response = _problem(server, urls, exc)
        response.headers["Location"] = urls.of("acct", exc.account_id)
        return response
    finally:
        server.accounts.forget(account["id"])
    return _json(server, urls, views.account(urls, updated), Location=urls.of("acct", account["id"]))


_POST_ROUTES.update(
    {
        "new-account": ("jwk", _new_account),
        "new-order": ("kid", _new_order),
        "revoke-cert": ("either", _revoke),
        "key-change": ("kid", _key_change),
    }
)
_POST_RESOURCES.update(
    {
        ("acct", ""): ("kid", _account),
        ("acct", "orders"): ("kid", _orders),
        ("order", ""): ("kid", _order),
        ("order", "finalize"): ("kid", _finalize),
        ("authz", ""): ("kid", _authorization),
        ("chall", ""): ("kid", _challenge),
        ("cert", ""): ("kid", _certificate),
        ("cert", "alternate"): ("kid", _alternate_certificate),
    }
)
_CARRIED.update(
    {_new_order, _order, _finalize, _authorization, _challenge, _certificate, _alternate_certificate}
)
