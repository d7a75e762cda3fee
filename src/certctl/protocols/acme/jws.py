"""The JWS transport of ACME (RFC 8555 §6.2-§6.5), checked once for every POST.

Flattened JSON serialization only; the protected header carries ``alg`` (asymmetric only), ``nonce``,
``url`` (equal to the request URL) and exactly one of ``jwk`` (newAccount, revokeCert by certificate key)
or ``kid`` (the account URL). Signatures are verified with joserfc. The checks that need no database run
first; the nonce is spent last, so a request refused for any other reason does not burn it. With
``defer`` (PostgreSQL, handlers whose first statement can carry it) it is not spent here: the result's
``rider`` goes with the handler (see ``acme_nonces``).
"""

from __future__ import annotations

import base64
import binascii
import json
import warnings
from dataclasses import dataclass
from typing import Any, Literal, cast

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import JWKRegistry
from joserfc.jws import FlattenedJSONSerialization
from joserfc.registry import HeaderParameter

from certctl.services.acme_errors import AcmeError
from certctl.services.acme_server import AcmeServer
from certctl.store.db import Rider

ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA")
JOSE_TYPE = "application/jose+json"
MAX_HEADER_BYTES = 16384
KeyMode = Literal["jwk", "kid", "either"]
MAX_CACHED_KEYS = 10000
_KEYS: dict[str, tuple[Any, str, dict[str, Any]]] = {}

_REGISTRY = jws.JWSRegistry(
    header_registry={
        "nonce": HeaderParameter("Anti-replay nonce (RFC 8555 §6.5)", "str", required=True),
        "url": HeaderParameter("Request URL (RFC 8555 §6.4)", "str", required=True),
    },
    algorithms=list(ALGORITHMS),
)
_REGISTRY.max_header_length = MAX_HEADER_BYTES


@dataclass(frozen=True)
class Verified:
    """A request whose JWS checked out: its payload (None for POST-as-GET) and who signed it."""

    payload: dict[str, Any] | None
    account: dict[str, Any] | None
    jwk: dict[str, Any]
    thumbprint: str
    public_key: Any
    rider: Rider | None = None
    """The nonce's spend, still to be carried or settled (``defer``)."""


def _b64json(segment: Any, what: str) -> Any:
    if not isinstance(segment, str):
        raise AcmeError("malformed", f"the JWS {what} must be a base64url string")
    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        raise AcmeError("malformed", f"the JWS {what} is not base64url-encoded JSON") from None


def _parse(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        message = json.loads(body)
    except ValueError:
        raise AcmeError("malformed", "the body is not JSON") from None
    if not isinstance(message, dict) or "signatures" in message:
        raise AcmeError("malformed", "only the flattened JWS JSON serialization is accepted")
    if set(message) - {"protected", "payload", "signature"} or "header" in message:
        raise AcmeError("malformed", "the JWS must have only protected, payload and signature")
    for member in ("protected", "payload", "signature"):
        if not isinstance(message.get(member), str):
            raise AcmeError("malformed", f"the JWS {member} is missing")
    protected = _b64json(message["protected"], "protected header")
    if not isinstance(protected, dict):
        raise AcmeError("malformed", "the JWS protected header must be a JSON object")
    return message, protected


async def verify(
    server: AcmeServer, *, content_type: str, body: bytes, url: str, mode: KeyMode, defer: bool = False
) -> Verified:
    if content_type.split(";")[0].strip().lower() != JOSE_TYPE:
        raise AcmeError("malformed", f"the content type must be {JOSE_TYPE}", status=415)
    message, protected = _parse(body)
    alg = protected.get("alg")
    if alg not in ALGORITHMS:
        raise AcmeError(
            "badSignatureAlgorithm",
            f"the JWS algorithm {alg!r} is not accepted",
            extra={"algorithms": list(ALGORITHMS)},
        )
    nonce = protected.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise AcmeError("badNonce", "the JWS protected header has no nonce")
    issued = server.nonces.issued_at(nonce)
    if protected.get("url") != url:
        raise AcmeError("unauthorized", "the JWS url does not match the request URL")
    has_jwk, has_kid = "jwk" in protected, "kid" in protected
    if has_jwk == has_kid:
        raise AcmeError("malformed", "the JWS protected header needs exactly one of jwk and kid")
    if mode != "either" and (mode == "jwk") != has_jwk:
        raise AcmeError("malformed", f"this resource needs a JWS signed with {mode}")
    account: dict[str, Any] | None = None
    if has_kid:
        kid = protected["kid"]
        if not isinstance(kid, str) or "/acct/" not in kid:
            raise AcmeError("accountDoesNotExist", "the kid is not an account URL of this server")
        account = await server.accounts.by_id(kid.rsplit("/", 1)[1])
        jwk = dict(account["jwk"])
    else:
        jwk = protected["jwk"]
        if not isinstance(jwk, dict) or "d" in jwk or jwk.get("kty") == "oct":
            raise AcmeError("malformed", "the jwk must be a public asymmetric key")
    try:
        key, thumbprint, public_jwk = _imported(jwk, known=account["jwk_thumbprint"] if account else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            signed = jws.deserialize_json(cast(FlattenedJSONSerialization, message), key, registry=_REGISTRY)
    except JoseError as exc:
        raise AcmeError("malformed", f"the JWS does not verify: {exc.error}") from None
    except (ValueError, TypeError, KeyError):
        raise AcmeError("malformed", "the JWS key cannot be used") from None
    payload = _payload(signed.payload)
    rider = server.nonces.rider(nonce, issued) if defer else None
    if rider is None:
        await server.nonces.spend(nonce, issued)
    return Verified(
        payload=payload,
        account=account,
        jwk=dict(public_jwk),
        thumbprint=thumbprint,
        public_key=key.public_key,
        rider=rider,
    )


def _imported(jwk: dict[str, Any], *, known: str | None) -> tuple[Any, str, dict[str, Any]]:
    """The key a JWK describes, its RFC 7638 thumbprint and its public JWK. Registered accounts' keys
    (``known``: the JWK came from our database, not from the request, with its thumbprint) are
    imported once per process, bounded, and found by that thumbprint: every request of an account is
    signed by the same key."""
    found = _KEYS.get(known) if known is not None else None
    if found is None:
        key = JWKRegistry.import_key(jwk)
        found = (key, key.thumbprint(), key.as_dict(private=False))
        if known is not None:
            if len(_KEYS) >= MAX_CACHED_KEYS:
                _KEYS.clear()
            _KEYS[known] = found
    return found


def _payload(raw: bytes) -> dict[str, Any] | None:
    """Empty payload = POST-as-GET (RFC 8555 §6.3); else a JSON object."""
    if raw == b"":
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise AcmeError("malformed", "the JWS payload is not JSON") from None
    if not isinstance(value, dict):
        raise AcmeError("malformed", "the JWS payload must be a JSON object")
    return value
