"""ID token and logout token validation, discovery and JWKS caching (certctl.auth.oidc_tokens).

Tokens are built with joserfc and this test's own keys; the fetcher is an in-memory map of URL -> JSON
that counts requests, and the clock is a plain number the test moves."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import string
import warnings
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey

from certctl.auth.oidc_tokens import (
    ALLOWED_ALGS,
    BACKCHANNEL_LOGOUT_EVENT,
    Discovery,
    JwksCache,
    LogoutClaims,
    ProviderMetadata,
    TokenRejected,
    at_hash,
    pkce_pair,
    validate_id_token,
    validate_logout_token,
)

ISSUER = "https://idp.example.test"
JWKS_URI = ISSUER + "/jwks"
DISCOVERY_URI = ISSUER + "/.well-known/openid-configuration"
CLIENT_ID = "certctl-dashboard"
NONCE = "n-0S6_WzA2Mj"
ACCESS_TOKEN = "access-token-value-7Hq2"
NOW = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)
T = TypeVar("T")


KEYS: dict[str, Key] = {
    "rsa-1": RSAKey.generate_key(2048, {"kid": "rsa-1"}),
    "rsa-2": RSAKey.generate_key(2048, {"kid": "rsa-2"}),
    "ec-256": ECKey.generate_key("P-256", {"kid": "ec-256"}),
    "ec-384": ECKey.generate_key("P-384", {"kid": "ec-384"}),
    "ed-1": OKPKey.generate_key("Ed25519", {"kid": "ed-1"}),
}
KEY_FOR_ALG = {"RS256": "rsa-1", "PS256": "rsa-1", "ES256": "ec-256", "ES384": "ec-384", "EdDSA": "ed-1"}


def public_jwks(*kids: str) -> dict[str, Any]:
    return {"keys": [KEYS[kid].as_dict(private=False) for kid in kids]}


class Fetcher:
    """GET over a dict of url -> JSON; records every URL asked for; raises for a failing URL."""

    def __init__(self, documents: dict[str, Any]) -> None:
        self.documents = documents
        self.failing: set[str] = set()
        self.calls: list[str] = []

    async def __call__(self, url: str) -> dict[str, Any]:
        self.calls.append(url)
        if url in self.failing:
            raise ConnectionError("connection refused")
        return copy.deepcopy(self.documents[url])  # type: ignore[no-any-return]

    def count(self, url: str) -> int:
        return self.calls.count(url)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def discovery_document(**overrides: Any) -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/auth",
        "token_endpoint": ISSUER + "/token",
        "jwks_uri": JWKS_URI,
        "end_session_endpoint": ISSUER + "/session/end",
        "userinfo_endpoint": ISSUER + "/me",
        "id_token_signing_alg_values_supported": sorted(ALLOWED_ALGS),
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "code_challenge_methods_supported": ["S256"],
        **overrides,
    }


METADATA = ProviderMetadata.from_document(discovery_document())


class World:
    """A provider's documents, a counting fetcher, a movable clock and one JWKS cache over them."""

    def __init__(self, *kids: str) -> None:
        self.fetcher = Fetcher({JWKS_URI: public_jwks(*(kids or tuple(KEYS)))})
        self.clock = Clock()
        self.jwks = JwksCache(self.fetcher, clock=self.clock)

    def publish(self, *kids: str) -> None:
        self.fetcher.documents[JWKS_URI] = public_jwks(*kids)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def sign(
    claims: dict[str, Any],
    *,
    alg: str = "RS256",
    kid: str | None = None,
    omit_kid: bool = False,
    **header: Any,
) -> str:
    key = KEYS[kid or KEY_FOR_ALG[alg]]
    protected = {"alg": alg, **({} if omit_kid else {"kid": key.kid}), **header}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(protected, claims, key, algorithms=[alg])


def id_claims(alg: str = "RS256", **overrides: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "alice",
        "iat": int(NOW.timestamp()) - 5,
        "exp": int(NOW.timestamp()) + 300,
        "nonce": NONCE,
        "at_hash": at_hash(ACCESS_TOKEN, alg),
        "email": "alice@example.test",
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def logout_claims(**overrides: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "alice",
        "sid": "session-77",
        "iat": int(NOW.timestamp()) - 5,
        "exp": int(NOW.timestamp()) + 120,
        "jti": "logout-jti-1",
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def check_id_token(
    token: str,
    world: World | None = None,
    *,
    metadata: ProviderMetadata = METADATA,
    access_token: str | None = ACCESS_TOKEN,
    nonce: str = NONCE,
) -> dict[str, Any]:
    jwks = (world or World()).jwks
    return run(
        validate_id_token(
            token,
            metadata=metadata,
            jwks=jwks,
            client_id=CLIENT_ID,
            nonce=nonce,
            access_token=access_token,
            now=NOW,
        )
    )


def check_logout_token(token: str, world: World | None = None) -> LogoutClaims:
    jwks = (world or World()).jwks
    return run(validate_logout_token(token, metadata=METADATA, jwks=jwks, client_id=CLIENT_ID, now=NOW))


def rejected(reason: str, token: str, call: Any, *args: Any, **kwargs: Any) -> TokenRejected:
    """Run ``call`` expecting TokenRejected(reason); its message must not carry the token or a piece of it."""
    with pytest.raises(TokenRejected) as caught:
        call(token, *args, **kwargs)
    error = caught.value
    assert error.reason == reason, str(error)
    text = f"{error} {error!r} {error.args}"
    assert token not in text
    for segment in token.split("."):
        assert len(segment) < 8 or segment not in text
    assert error.__cause__ is None
    return error


@pytest.mark.parametrize("alg", sorted(ALLOWED_ALGS))
def test_a_valid_id_token_is_accepted_for_each_allowed_alg(alg: str) -> None:
    claims = check_id_token(sign(id_claims(alg), alg=alg))
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.test"


def test_alg_none_is_refused_even_when_advertised() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(id_claims()).encode()).rstrip(b"=").decode()
    token = f"{header}.{payload}."
    metadata = ProviderMetadata.from_document(
        discovery_document(id_token_signing_alg_values_supported=["none"])
    )
    rejected("alg_not_allowed", token, check_id_token, metadata=metadata)
    rejected("alg_not_allowed", token, check_id_token)


def test_hs256_signed_with_the_client_secret_is_refused() -> None:
    secret = OctKey.import_key(CLIENT_ID.encode())
    token = jwt.encode({"alg": "HS256"}, id_claims(), secret, algorithms=["HS256"])
    metadata = ProviderMetadata.from_document(
        discovery_document(id_token_signing_alg_values_supported=["RS256", "HS256"])
    )
    rejected("alg_not_allowed", token, check_id_token, metadata=metadata)


def test_an_allowed_alg_the_provider_did_not_advertise_is_refused() -> None:
    metadata = ProviderMetadata.from_document(
        discovery_document(id_token_signing_alg_values_supported=["RS256"])
    )
    rejected("alg_not_advertised", sign(id_claims("ES256"), alg="ES256"), check_id_token, metadata=metadata)


def test_a_signature_by_another_key_under_the_same_kid_is_refused() -> None:
    impostor = RSAKey.generate_key(2048, {"kid": "rsa-1"})
    token = jwt.encode({"alg": "RS256", "kid": "rsa-1"}, id_claims(), impostor, algorithms=["RS256"])
    rejected("bad_signature", token, check_id_token)


def test_a_kid_of_a_key_of_another_type_is_refused() -> None:
    token = sign(id_claims("ES256"), alg="ES256", kid="ec-256")
    header, payload, signature = token.split(".")
    forged_header = base64.urlsafe_b64encode(b'{"alg":"ES256","kid":"rsa-1"}').rstrip(b"=").decode()
    rejected("key_alg_mismatch", f"{forged_header}.{payload}.{signature}", check_id_token)
    assert header != forged_header


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example.test"}, "wrong_iss"),
        ({"iss": ISSUER + "/"}, "wrong_iss"),
        ({"aud": "another-client"}, "wrong_aud"),
        ({"aud": ["another-client"]}, "wrong_aud"),
        ({"aud": [CLIENT_ID, "another-client"]}, "azp_missing"),
        ({"aud": [CLIENT_ID, "another-client"], "azp": "another-client"}, "azp_mismatch"),
        ({"azp": "another-client"}, "azp_mismatch"),
        ({"exp": int(NOW.timestamp()) - 61}, "expired"),
        ({"exp": None}, "exp_missing"),
        ({"iat": int(NOW.timestamp()) - 601}, "iat_out_of_window"),
        ({"iat": int(NOW.timestamp()) + 61}, "iat_out_of_window"),
        ({"iat": None}, "iat_missing"),
        ({"iat": "yesterday"}, "malformed"),
        ({"nbf": int(NOW.timestamp()) + 120}, "not_yet_valid"),
        ({"nonce": "n-other"}, "nonce_mismatch"),
        ({"nonce": None}, "nonce_mismatch"),
        ({"at_hash": None}, "at_hash_missing"),
        ({"at_hash": at_hash("another-access-token", "RS256")}, "at_hash_mismatch"),
        ({"sub": ""}, "sub_missing"),
        ({"sub": None}, "sub_missing"),
    ],
)
def test_each_claim_rule_refuses_its_violation(overrides: dict[str, Any], reason: str) -> None:
    rejected(reason, sign(id_claims(**overrides)), check_id_token)


def test_accepted_edges_several_audiences_with_azp_leeway_and_no_access_token() -> None:
    several = id_claims(aud=[CLIENT_ID, "another-client"], azp=CLIENT_ID)
    assert check_id_token(sign(several))["azp"] == CLIENT_ID
    assert check_id_token(sign(id_claims(exp=int(NOW.timestamp()) - 30)))
    assert check_id_token(sign(id_claims(iat=int(NOW.timestamp()) + 30)))
    assert check_id_token(sign(id_claims(at_hash=None)), access_token=None)


def test_at_hash_uses_the_hash_of_the_alg() -> None:
    # OpenID Connect Core 1.0 Appendix A.3 example.
    assert at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", "RS256") == "77QmUPtjPfzWtF2AnpK9RQ"
    digest = hashlib.sha384(b"tok").digest()
    assert at_hash("tok", "ES384") == base64.urlsafe_b64encode(digest[:24]).rstrip(b"=").decode()
    digest = hashlib.sha512(b"tok").digest()
    assert at_hash("tok", "EdDSA") == base64.urlsafe_b64encode(digest[:32]).rstrip(b"=").decode()
    wrong_length = sign(id_claims("ES384", at_hash=at_hash(ACCESS_TOKEN, "RS256")), alg="ES384")
    rejected("at_hash_mismatch", wrong_length, check_id_token)


@pytest.mark.parametrize(
    "token",
    ["", "not-a-jwt", "a.b", "a.b.c.d.e", "e30.e30.e30", "!!!.e30.e30", "eyJhbGciOjF9.e30.e30"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenRejected) as caught:
        check_id_token(token)
    assert caught.value.reason == "malformed"


def test_a_logout_token_is_not_an_id_token() -> None:
    token = sign(id_claims(), typ="logout+jwt")
    rejected("wrong_typ", token, check_id_token)


def test_a_token_without_kid_uses_the_one_key_that_fits() -> None:
    world = World("rsa-1", "ec-256")
    assert check_id_token(sign(id_claims(), kid="rsa-1", omit_kid=True), world)
    two_rsa = World("rsa-1", "rsa-2")
    rejected("kid_ambiguous", sign(id_claims(), kid="rsa-1", omit_kid=True), check_id_token, two_rsa)


def test_unknown_kid_triggers_exactly_one_throttled_refetch_then_is_refused() -> None:
    world = World("rsa-1")
    assert check_id_token(sign(id_claims()), world)
    assert world.fetcher.count(JWKS_URI) == 1
    world.clock.advance(11)
    ghost = sign(id_claims(), kid="rsa-2")
    rejected("unknown_kid", ghost, check_id_token, world)
    assert world.fetcher.count(JWKS_URI) == 2
    rejected("unknown_kid", ghost, check_id_token, world)
    assert world.fetcher.count(JWKS_URI) == 2  # throttled: the last fetch was under 10 s ago
    assert check_id_token(sign(id_claims()), world)
    assert world.fetcher.count(JWKS_URI) == 2


def test_key_rotation_new_key_accepted_after_refetch_removed_key_refused_after_ttl() -> None:
    world = World("rsa-1")
    assert check_id_token(sign(id_claims()), world)
    world.publish("rsa-1", "rsa-2")
    world.clock.advance(30)
    assert check_id_token(sign(id_claims(), kid="rsa-2"), world)
    assert world.fetcher.count(JWKS_URI) == 2
    world.publish("rsa-2")
    world.clock.advance(60)
    assert check_id_token(sign(id_claims(), kid="rsa-1"), world)  # still cached within the TTL
    world.clock.advance(3600)
    rejected("unknown_kid", sign(id_claims(), kid="rsa-1"), check_id_token, world)
    assert check_id_token(sign(id_claims(), kid="rsa-2"), world)


def test_jwks_fetch_failure_fails_closed() -> None:
    world = World("rsa-1")
    world.fetcher.failing.add(JWKS_URI)
    rejected("jwks_unavailable", sign(id_claims()), check_id_token, world)
    world.fetcher.failing.clear()
    assert check_id_token(sign(id_claims()), world)
    world.fetcher.failing.add(JWKS_URI)
    world.clock.advance(3600)
    rejected("jwks_unavailable", sign(id_claims()), check_id_token, world)


def test_a_key_set_that_is_not_a_jwks_fails_closed_and_unusable_members_are_skipped() -> None:
    world = World("rsa-1")
    world.fetcher.documents[JWKS_URI] = {"keys": "nope"}
    rejected("jwks_unavailable", sign(id_claims()), check_id_token, world)
    world.jwks.forget()
    secret = OctKey.import_key(CLIENT_ID.encode()).as_dict()
    encryption = {**KEYS["rsa-2"].as_dict(private=False), "use": "enc"}
    world.fetcher.documents[JWKS_URI] = {"keys": [secret, encryption, {"kty": "RSA"}, 7]}
    rejected("unknown_kid", sign(id_claims(), kid="rsa-2"), check_id_token, world)


def test_logout_token_valid() -> None:
    result = check_logout_token(sign(logout_claims(), typ="logout+jwt"))
    assert result == LogoutClaims(
        sub="alice", sid="session-77", jti="logout-jti-1", iat=NOW - timedelta(seconds=5), iss=ISSUER
    )
    only_sid = check_logout_token(sign(logout_claims(sub=None, exp=None)))
    assert (only_sid.sub, only_sid.sid) == (None, "session-77")


@pytest.mark.parametrize(
    ("overrides", "header", "reason"),
    [
        ({"nonce": NONCE}, {}, "logout_has_nonce"),
        ({"events": None}, {}, "logout_missing_events"),
        ({"events": ["logout"]}, {}, "logout_missing_events"),
        ({"events": {"http://schemas.openid.net/event/other": {}}}, {}, "logout_missing_events"),
        ({"events": {BACKCHANNEL_LOGOUT_EVENT: "yes"}}, {}, "logout_missing_events"),
        ({"sub": None, "sid": None}, {}, "logout_missing_sub_sid"),
        ({"jti": None}, {}, "logout_missing_jti"),
        ({"iat": int(NOW.timestamp()) - 3600}, {}, "iat_out_of_window"),
        ({"exp": int(NOW.timestamp()) - 120}, {}, "expired"),
        ({"iss": "https://evil.example.test"}, {}, "wrong_iss"),
        ({"aud": "another-client"}, {}, "wrong_aud"),
        ({}, {"typ": "at+jwt"}, "wrong_typ"),
    ],
)
def test_logout_token_rules(overrides: dict[str, Any], header: dict[str, Any], reason: str) -> None:
    rejected(reason, sign(logout_claims(**overrides), **header), check_logout_token)


def test_logout_token_uses_the_same_alg_allow_list() -> None:
    secret = OctKey.import_key(CLIENT_ID.encode())
    token = jwt.encode({"alg": "HS256"}, logout_claims(), secret, algorithms=["HS256"])
    rejected("alg_not_allowed", token, check_logout_token)


def test_discovery_is_cached_and_checks_the_issuer() -> None:
    fetcher, clock = Fetcher({DISCOVERY_URI: discovery_document()}), Clock()
    discovery = Discovery(fetcher, clock=clock)
    assert run(discovery.get(ISSUER)) == METADATA
    assert run(discovery.get(ISSUER)) == METADATA
    assert fetcher.count(DISCOVERY_URI) == 1
    clock.advance(3600)
    assert run(discovery.get(ISSUER)).jwks_uri == JWKS_URI
    assert fetcher.count(DISCOVERY_URI) == 2
    fetcher.documents[DISCOVERY_URI] = discovery_document(issuer="https://evil.example.test")
    discovery.forget(ISSUER)
    with pytest.raises(TokenRejected) as caught:
        run(discovery.get(ISSUER))
    assert caught.value.reason == "discovery_issuer_mismatch"


@pytest.mark.parametrize(
    "document", [None, ["issuer"], discovery_document(jwks_uri=None), discovery_document(token_endpoint=7)]
)
def test_discovery_that_cannot_be_read_fails_closed(document: Any) -> None:
    fetcher = Fetcher({DISCOVERY_URI: document})
    with pytest.raises(TokenRejected) as caught:
        run(Discovery(fetcher).get(ISSUER))
    assert caught.value.reason == "discovery_unavailable"
    fetcher.failing.add(DISCOVERY_URI)
    with pytest.raises(TokenRejected) as caught:
        run(Discovery(fetcher).get(ISSUER))
    assert caught.value.reason == "discovery_unavailable"


def test_pkce_pair_is_s256_over_a_fresh_verifier() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(string.ascii_letters + string.digits + "-._~")
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == expected
    assert pkce_pair()[0] != verifier
