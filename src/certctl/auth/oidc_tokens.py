"""OpenID Connect token validation: ID tokens (Core 1.0 §3.1.3.7) and logout tokens (Back-Channel Logout
1.0 §2.6), with cached discovery (Discovery 1.0 §4) and JWKS.

Pure code: the HTTP GET is injected as :data:`Fetch`, the time is passed in, nothing touches a database.
Every refusal is a :class:`TokenRejected` whose ``reason`` is a stable code for the audit trail; no message
carries the token or anything read from it. Discovery and JWKS failures fail closed: nothing validates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError, SecurityWarning
from joserfc.jwk import JWKRegistry, Key

ALLOWED_ALGS: frozenset[str] = frozenset({"RS256", "PS256", "ES256", "ES384", "EdDSA"})
"""Asymmetric algorithms only: never ``none`` and never HS*, whose key would be the client secret."""

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_TOKEN_LENGTH = 65_536
MIN_RSA_BITS = 2048

# Per alg: the key type and curve that verify it (RFC 7518 §3, RFC 8037 §3.1) and the hash that builds
# at_hash (Core 1.0 §3.1.3.6: the hash of the alg; SHA-512 for EdDSA over Ed25519).
_ALGS: dict[str, tuple[str, str | None, Callable[[bytes], Any]]] = {
    "RS256": ("RSA", None, hashlib.sha256),
    "PS256": ("RSA", None, hashlib.sha256),
    "ES256": ("EC", "P-256", hashlib.sha256),
    "ES384": ("EC", "P-384", hashlib.sha384),
    "EdDSA": ("OKP", "Ed25519", hashlib.sha512),
}

Fetch = Callable[[str], Awaitable[dict[str, Any]]]
"""GET a URL and return its parsed JSON object; raises on any failure (transport, status, parse)."""


class TokenRejected(Exception):
    """A token, discovery document or key set was refused.

    ``reason`` is a short snake_case code for audit rows; ``str(exc)`` is a readable sentence that never
    contains the token or any part of it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def at_hash(access_token: str, alg: str) -> str:
    """The ``at_hash`` of an access token for a signing alg: left half of its hash, base64url, no padding."""
    if alg not in _ALGS:
        raise ValueError(f"no at_hash is defined here for alg {alg}")
    digest: bytes = _ALGS[alg][2](access_token.encode("utf-8")).digest()
    return _b64url(digest[: len(digest) // 2])


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE ``(code_verifier, code_challenge)`` with method S256 (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(64)  # 86 characters from the unreserved set
    return verifier, _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _optional_url(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} is not a string")
    return value


def _required_url(document: Mapping[str, Any], name: str) -> str:
    value = _optional_url(document, name)
    if not value:
        raise ValueError(f"{name} is missing")
    return value


@dataclass(frozen=True)
class ProviderMetadata:
    """What this relying party uses from an OpenID Provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    id_token_signing_alg_values_supported: tuple[str, ...]
    authorization_response_iss_parameter_supported: bool
    backchannel_logout_supported: bool
    backchannel_logout_session_supported: bool
    code_challenge_methods_supported: tuple[str, ...]
    userinfo_endpoint: str | None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ProviderMetadata:
        """Read a discovery document (Discovery 1.0 §3); raises ValueError when a required member is
        missing or a member has the wrong type."""
        if not isinstance(document, Mapping):
            raise ValueError("the discovery document is not a JSON object")
        return cls(
            issuer=_required_url(document, "issuer"),
            authorization_endpoint=_required_url(document, "authorization_endpoint"),
            token_endpoint=_required_url(document, "token_endpoint"),
            jwks_uri=_required_url(document, "jwks_uri"),
            end_session_endpoint=_optional_url(document, "end_session_endpoint"),
            id_token_signing_alg_values_supported=_strings(
                document.get("id_token_signing_alg_values_supported")
            ),
            authorization_response_iss_parameter_supported=(
                document.get("authorization_response_iss_parameter_supported") is True
            ),
            backchannel_logout_supported=document.get("backchannel_logout_supported") is True,
            backchannel_logout_session_supported=(
                document.get("backchannel_logout_session_supported") is True
            ),
            code_challenge_methods_supported=_strings(document.get("code_challenge_methods_supported")),
            userinfo_endpoint=_optional_url(document, "userinfo_endpoint"),
        )


class Discovery:
    """Caches discovery documents per issuer (TTL, default 1 h).

    ``await get(issuer)`` fetches ``{issuer}/.well-known/openid-configuration`` and requires its ``issuer``
    to equal the configured one exactly (Discovery 1.0 §4.3). A document that cannot be fetched or read
    raises ``discovery_unavailable``: sign-in fails closed rather than trust stale or partial data."""

    def __init__(
        self, fetch: Fetch, *, ttl: float = 3600, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, ProviderMetadata]] = {}

    async def get(self, issuer: str) -> ProviderMetadata:
        cached = self._entries.get(issuer)
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        self._entries.pop(issuer, None)
        fetched_at = self._clock()
        try:
            document = await self._fetch(issuer.rstrip("/") + "/.well-known/openid-configuration")
            metadata = ProviderMetadata.from_document(document)
        except Exception:
            raise TokenRejected(
                "discovery_unavailable", "The identity provider's discovery document could not be read."
            ) from None
        if metadata.issuer != issuer:
            raise TokenRejected(
                "discovery_issuer_mismatch",
                "The identity provider's discovery document names a different issuer.",
            )
        self._entries[issuer] = (fetched_at, metadata)
        return metadata

    def forget(self, issuer: str | None = None) -> None:
        if issuer is None:
            self._entries.clear()
        else:
            self._entries.pop(issuer, None)


def _verification_key(member: Any) -> Key | None:
    """A JWK Set member as a public signing key, or None when it cannot or must not be used."""
    if not isinstance(member, dict) or member.get("kty") not in ("RSA", "EC", "OKP"):
        return None  # symmetric keys never verify ID tokens
    if member.get("use", "sig") != "sig" or "verify" not in member.get("key_ops", ["verify"]):
        return None
    try:
        key = JWKRegistry.import_key(member)
    except Exception:  # keys come from the network: an unreadable member is skipped (RFC 7517 §5)
        return None
    if key.key_type == "RSA" and getattr(key.raw_value, "key_size", 0) < MIN_RSA_BITS:
        return None
    return key


def _import_verification_keys(document: Any) -> tuple[Key, ...]:
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    return tuple(key for key in map(_verification_key, document["keys"]) if key is not None)


def _fits(key: Key, alg: str) -> bool:
    key_type, curve, _ = _ALGS[alg]
    return key.key_type == key_type and key.get("crv") == curve and key.get("alg", alg) == alg


def _select(keys: tuple[Key, ...], kid: str | None, alg: str) -> Key | None:
    """The key for a token header, None when no key matches (yet)."""
    if kid is not None:
        named = [key for key in keys if key.kid == kid]
        if not named:
            return None
        fitting = [key for key in named if _fits(key, alg)]
        if not fitting:
            raise TokenRejected("key_alg_mismatch", "The key named by the token does not fit its algorithm.")
        return fitting[0]
    fitting = [key for key in keys if _fits(key, alg)]
    if len(fitting) > 1:
        raise TokenRejected("kid_ambiguous", "The token names no key and several published keys fit.")
    return fitting[0] if fitting else None


class JwksCache:
    """Signing keys per ``jwks_uri``, cached (TTL, default 1 h).

    A key id that is not cached triggers one refetch (at most once per ``refetch_interval`` seconds per
    URI, so forged kids cannot hammer the provider), then ``unknown_kid``: a key added by rotation
    validates after the refetch, a removed key stops validating after a refetch or the TTL. A fetch
    failure with no fresh key set raises ``jwks_unavailable`` (fail closed)."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl: float = 3600,
        refetch_interval: float = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._entries: dict[str, tuple[float, tuple[Key, ...]]] = {}
        self._last_fetch: dict[str, float] = {}

    async def key_for(self, jwks_uri: str, kid: str | None, alg: str) -> Key:
        if alg not in ALLOWED_ALGS:
            raise TokenRejected("alg_not_allowed", "The token's signing algorithm is not allowed.")
        cached = self._entries.get(jwks_uri)
        if cached is None or self._clock() - cached[0] >= self._ttl:
            keys = await self._refresh(jwks_uri)
        else:
            keys = cached[1]
        key = _select(keys, kid, alg)
        last = self._last_fetch.get(jwks_uri)
        if key is None and (last is None or self._clock() - last >= self._refetch_interval):
            key = _select(await self._refresh(jwks_uri), kid, alg)
        if key is None:
            raise TokenRejected("unknown_kid", "No key published by the identity provider matches the token.")
        return key

    async def _refresh(self, jwks_uri: str) -> tuple[Key, ...]:
        started = self._clock()
        self._last_fetch[jwks_uri] = started  # before awaiting: concurrent callers see the throttle
        try:
            keys = _import_verification_keys(await self._fetch(jwks_uri))
        except Exception:
            raise TokenRejected(
                "jwks_unavailable", "The identity provider's signing keys could not be fetched."
            ) from None
        self._entries[jwks_uri] = (started, keys)
        return keys

    def forget(self, jwks_uri: str | None = None) -> None:
        if jwks_uri is None:
            self._entries.clear()
            self._last_fetch.clear()
        else:
            self._entries.pop(jwks_uri, None)
            self._last_fetch.pop(jwks_uri, None)


def _malformed() -> TokenRejected:
    return TokenRejected("malformed", "The token is not a well-formed signed JWT.")


def _read_header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise _malformed()
    parts = token.split(".")
    if len(parts) != 3:
        raise _malformed()  # encrypted ID tokens (JWE, five parts) are not supported
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, RecursionError):
        raise _malformed() from None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise _malformed()
    if not isinstance(header.get("kid", ""), str):
        raise _malformed()
    return header


def _media_type(value: Any) -> str:
    kind = str(value).lower()
    return kind.removeprefix("application/")


async def _verified_claims(
    token: str, *, metadata: ProviderMetadata, jwks: JwksCache
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a token whose signature verifies with the provider's published key."""
    header = _read_header(token)
    alg = header["alg"]
    if alg not in ALLOWED_ALGS:
        raise TokenRejected("alg_not_allowed", "The token's signing algorithm is not allowed.")
    if alg not in metadata.id_token_signing_alg_values_supported:
        raise TokenRejected(
            "alg_not_advertised", "The token's signing algorithm is not one the identity provider advertises."
        )
    key = await jwks.key_for(metadata.jwks_uri, header.get("kid"), alg)
    registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # EdDSA is allowed on purpose
            signed = jws.deserialize_compact(token, key, registry=registry)
    except BadSignatureError:
        raise TokenRejected("bad_signature", "The token's signature does not verify.") from None
    except (JoseError, ValueError, TypeError):
        raise _malformed() from None
    try:
        claims = json.loads(signed.payload or b"")
    except (ValueError, RecursionError):
        raise _malformed() from None
    if not isinstance(claims, dict):
        raise _malformed()
    return header, claims


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected("malformed", f"The token's {name} claim is not a number.")
    return float(value)


def _check_registered_claims(
    claims: Mapping[str, Any],
    *,
    metadata: ProviderMetadata,
    client_id: str,
    now: datetime,
    iat_window: timedelta,
    leeway: timedelta,
    exp_required: bool,
) -> datetime:
    """``iss``, ``aud``/``azp``, ``exp``, ``nbf`` and ``iat`` (Core 1.0 §3.1.3.7 steps 2-10); returns iat."""
    if claims.get("iss") != metadata.issuer:
        raise TokenRejected("wrong_iss", "The token was not issued by the configured identity provider.")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or client_id not in audiences:
        raise TokenRejected("wrong_aud", "The token is not intended for this client.")
    azp = claims.get("azp")
    if len(audiences) > 1 and azp is None:
        raise TokenRejected("azp_missing", "The token has several audiences but no authorized party.")
    if azp is not None and azp != client_id:
        raise TokenRejected("azp_mismatch", "The token's authorized party is not this client.")
    moment = now.timestamp()
    slack = leeway.total_seconds()
    expires = _number(claims, "exp")
    if expires is None and exp_required:
        raise TokenRejected("exp_missing", "The token has no expiry.")
    if expires is not None and moment > expires + slack:
        raise TokenRejected("expired", "The token has expired.")
    not_before = _number(claims, "nbf")
    if not_before is not None and moment + slack < not_before:
        raise TokenRejected("not_yet_valid", "The token is not valid yet.")
    issued = _number(claims, "iat")
    if issued is None:
        raise TokenRejected("iat_missing", "The token has no issued-at time.")
    if issued > moment + slack or issued < moment - iat_window.total_seconds():
        raise TokenRejected("iat_out_of_window", "The token's issued-at time is outside the accepted window.")
    return datetime.fromtimestamp(issued, UTC)


def _same(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))


async def validate_id_token(
    token: str,
    *,
    metadata: ProviderMetadata,
    jwks: JwksCache,
    client_id: str,
    nonce: str,
    access_token: str | None,
    now: datetime,
    iat_window: timedelta = timedelta(minutes=10),
    leeway: timedelta = timedelta(seconds=60),
) -> dict[str, Any]:
    """Validate an ID token from the token endpoint (Core 1.0 §3.1.3.7) and return its claims.

    ``at_hash`` is required whenever an access token came with it (stricter than §3.1.3.8, which makes it
    optional in the code flow): it binds the access token to the signed ID token."""
    header, claims = await _verified_claims(token, metadata=metadata, jwks=jwks)
    if _media_type(header.get("typ", "JWT")) == "logout+jwt":
        raise TokenRejected("wrong_typ", "A logout token is not an ID token.")
    _check_registered_claims(
        claims,
        metadata=metadata,
        client_id=client_id,
        now=now,
        iat_window=iat_window,
        leeway=leeway,
        exp_required=True,
    )
    presented_nonce = claims.get("nonce")
    if not nonce or not isinstance(presented_nonce, str) or not _same(presented_nonce, nonce):
        raise TokenRejected("nonce_mismatch", "The token's nonce does not match this sign-in.")
    if access_token is not None:
        presented_hash = claims.get("at_hash")
        if not isinstance(presented_hash, str) or not presented_hash:
            raise TokenRejected("at_hash_missing", "The token does not bind the access token (no at_hash).")
        if not _same(presented_hash, at_hash(access_token, header["alg"])):
            raise TokenRejected("at_hash_mismatch", "The token's at_hash does not match the access token.")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise TokenRejected("sub_missing", "The token has no subject.")
    return claims


@dataclass(frozen=True)
class LogoutClaims:
    """What a valid logout token says: end the sessions of ``sub`` and/or session ``sid`` at ``iss``."""

    sub: str | None
    sid: str | None
    jti: str
    iat: datetime
    iss: str


def _optional_string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TokenRejected("malformed", f"The token's {name} claim is not a string.")
    return value


async def validate_logout_token(
    token: str,
    *,
    metadata: ProviderMetadata,
    jwks: JwksCache,
    client_id: str,
    now: datetime,
    iat_window: timedelta = timedelta(minutes=10),
    leeway: timedelta = timedelta(seconds=60),
) -> LogoutClaims:
    """Validate a back-channel logout token (Back-Channel Logout 1.0 §2.6). Replay of ``jti`` is the
    caller's check, against stored identifiers."""
    header, claims = await _verified_claims(token, metadata=metadata, jwks=jwks)
    if _media_type(header.get("typ", "JWT")) not in ("logout+jwt", "jwt"):
        raise TokenRejected("wrong_typ", "The token's type is not a logout token.")
    issued = _check_registered_claims(
        claims,
        metadata=metadata,
        client_id=client_id,
        now=now,
        iat_window=iat_window,
        leeway=leeway,
        exp_required=False,
    )
    events = claims.get("events")
    if not isinstance(events, dict):
        raise TokenRejected("logout_missing_events", "The logout token has no events claim.")
    if not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
        raise TokenRejected(
            "logout_missing_events", "The logout token's events claim has no back-channel logout event."
        )
    subject, session = _optional_string(claims, "sub"), _optional_string(claims, "sid")
    if subject is None and session is None:
        raise TokenRejected(
            "logout_missing_sub_sid", "The logout token names neither a subject nor a session."
        )
    if "nonce" in claims:
        raise TokenRejected("logout_has_nonce", "A logout token must not carry a nonce.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise TokenRejected("logout_missing_jti", "The logout token has no identifier (jti).")
    return LogoutClaims(sub=subject, sid=session, jti=jti, iat=issued, iss=metadata.issuer)
