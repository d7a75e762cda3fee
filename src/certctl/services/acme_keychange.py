"""Account key rollover (RFC 8555 §7.3.5).

The outer JWS (checked by the transport) is signed with the account's current key (``kid``); its
payload is an inner flattened JWS signed with the new key, with ``jwk`` = the new key, the same ``url``
as the outer one and no ``nonce``, whose payload is ``{"account": <account URL>, "oldKey": <current
JWK>}``. A new key that already belongs to an account is refused with 409 and that account's URL.
"""

from __future__ import annotations

import base64
import binascii
import json
import warnings
from typing import Any, cast

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import JWKRegistry
from joserfc.jws import FlattenedJSONSerialization
from joserfc.registry import HeaderParameter
from sqlalchemy.exc import IntegrityError

from certctl.services.acme_errors import AcmeError
from certctl.services.context import ServiceContext
from certctl.store.db import autocommit_reads, unit_of_work
from certctl.store.repositories import acme

ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA")
_INNER_REGISTRY = jws.JWSRegistry(
    header_registry={"url": HeaderParameter("Request URL (RFC 8555 §6.4)", "str", required=True)},
    algorithms=list(ALGORITHMS),
)
_INNER_REGISTRY.max_header_length = 16384


class KeyInUse(AcmeError):
    """The new key is another account's (RFC 8555 §7.3.5: 409 with that account's URL as Location)."""

    def __init__(self, account_id: str) -> None:
        super().__init__("conflict", "the new key already belongs to an account", status=409)
        self.account_id = account_id


def _b64json(segment: str, what: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        raise AcmeError("malformed", f"the inner JWS {what} is not base64url-encoded JSON") from None


def _thumbprint(jwk: Any, what: str) -> str:
    if not isinstance(jwk, dict) or "d" in jwk or jwk.get("kty") == "oct":
        raise AcmeError("malformed", f"{what} must be a public asymmetric JWK")
    try:
        return str(JWKRegistry.import_key(jwk).thumbprint())
    except (JoseError, ValueError, TypeError, KeyError):
        raise AcmeError("malformed", f"{what} is not a usable JWK") from None


def verify_inner(message: dict[str, Any], *, url: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The inner JWS checked (RFC 8555 §7.3.5 steps 2-5): (its payload, the new public JWK, its
    thumbprint). Everything wrong is ``malformed``, an unusable algorithm ``badSignatureAlgorithm``."""
    if set(message) != {"protected", "payload", "signature"} or not all(
        isinstance(v, str) for v in message.values()
    ):
        raise AcmeError("malformed", "the keyChange payload must be a flattened JWS")
    protected = _b64json(message["protected"], "protected header")
    if not isinstance(protected, dict):
        raise AcmeError("malformed", "the inner JWS protected header must be a JSON object")
    if protected.get("alg") not in ALGORITHMS:
        raise AcmeError(
            "badSignatureAlgorithm",
            f"the inner JWS algorithm {protected.get('alg')!r} is not accepted",
            extra={"algorithms": list(ALGORITHMS)},
        )
    if "kid" in protected or "jwk" not in protected:
        raise AcmeError("malformed", "the inner JWS must carry the new key as jwk, without kid")
    if "nonce" in protected:
        raise AcmeError("malformed", "the inner JWS must not carry a nonce")
    if protected.get("url") != url:
        raise AcmeError("malformed", "the inner JWS url differs from the outer one")
    thumbprint = _thumbprint(protected["jwk"], "the new key")
    try:
        key = JWKRegistry.import_key(protected["jwk"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            signed = jws.deserialize_json(
                cast(FlattenedJSONSerialization, message), key, registry=_INNER_REGISTRY
            )
    except JoseError as exc:
        raise AcmeError("malformed", f"the inner JWS does not verify: {exc.error}") from None
    except (ValueError, TypeError, KeyError):
        raise AcmeError("malformed", "the inner JWS key cannot be used") from None
    try:
        payload = json.loads(signed.payload)
    except ValueError:
        raise AcmeError("malformed", "the inner JWS payload is not JSON") from None
    if not isinstance(payload, dict):
        raise AcmeError("malformed", "the inner JWS payload must be a JSON object")
    return payload, dict(key.as_dict(private=False)), thumbprint


class AcmeKeyChange:
    def __init__(self, context: ServiceContext) -> None:
        self._ctx = context

    async def roll_over(
        self, *, account: dict[str, Any], account_url: str, url: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace the account's key (RFC 8555 §7.3.5); the updated account."""
        inner, new_jwk, new_thumbprint = verify_inner(payload, url=url)
        if inner.get("account") != account_url:
            raise AcmeError("malformed", "the inner payload's account is not the signing account")
        if _thumbprint(inner.get("oldKey"), "oldKey") != account["jwk_thumbprint"]:
            raise AcmeError("malformed", "oldKey is not the account's current key")
        if new_thumbprint == account["jwk_thumbprint"]:
            raise AcmeError("malformed", "the new key is the account's current key")
        async with autocommit_reads(self._ctx.engine) as connection:
            holder = await acme.account_by_thumbprint(connection, new_thumbprint)
        if holder is not None:
            raise KeyInUse(holder["id"])
        changes = {"jwk": new_jwk, "jwk_thumbprint": new_thumbprint}
        try:
            async with unit_of_work(self._ctx.engine) as uow:
                await acme.update_account(uow.connection, account["id"], changes)
        except IntegrityError:
            async with autocommit_reads(self._ctx.engine) as connection:
                holder = await acme.account_by_thumbprint(connection, new_thumbprint)
            raise KeyInUse(holder["id"] if holder else account["id"]) from None
        return account | changes
