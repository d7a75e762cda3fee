"""The OpenID Provider fixture against certctl.auth.oidc_tokens: a real oidc-provider issues ID tokens
through the authorization code flow with PKCE and sends back-channel logout tokens; our validation
accepts them, and refuses forged variants signed with the provider's own keys."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from certctl.auth.oidc_tokens import (
    Discovery,
    JwksCache,
    ProviderMetadata,
    TokenRejected,
    pkce_pair,
    validate_id_token,
    validate_logout_token,
)
from support.oidc_provider import OpenIdProvider, free_port, logout_receiver, openid_provider_fixture

openid_provider = openid_provider_fixture()
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def fetch_json(url: str) -> dict[str, Any]:
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(url)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document


@dataclass
class SignIn:
    client_id: str
    client_secret: str
    redirect_uri: str
    nonce: str
    tokens: dict[str, Any]
    browser: httpx2.Client


def metadata_of(provider: OpenIdProvider) -> ProviderMetadata:
    return run(Discovery(fetch_json).get(provider.issuer))


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def sign_in(
    provider: OpenIdProvider,
    browser: httpx2.Client,
    *,
    login: str = "alice",
    alg: str = "RS256",
    backchannel_logout_uri: str | None = None,
    post_logout_redirect_uris: tuple[str, ...] = (),
) -> SignIn:
    """Register a client, drive the code flow with PKCE in ``browser`` and redeem the code."""
    redirect_uri = f"http://127.0.0.1:{free_port()}/auth/oidc/callback"  # never served: only captured
    client_id, client_secret = provider.register_client(
        [redirect_uri],
        backchannel_logout_uri=backchannel_logout_uri,
        post_logout_redirect_uris=post_logout_redirect_uris,
        id_token_signed_response_alg=alg,
    )
    assert client_secret
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    url = provider.authorize_url(
        client_id=client_id, redirect_uri=redirect_uri, state=state, nonce=nonce, code_challenge=challenge
    )
    callback = provider.login(browser, url, login=login)
    assert callback.startswith(redirect_uri + "?")
    answer = query_of(callback)
    assert answer["state"] == state
    assert answer["iss"] == provider.issuer  # RFC 9207
    with httpx2.Client(timeout=30) as http:
        response = http.post(
            metadata_of(provider).token_endpoint,
            auth=(client_id, client_secret),
            data={
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
        )
    assert response.status_code == 200, response.text
    return SignIn(client_id, client_secret, redirect_uri, nonce, response.json(), browser)


def check_id_token(
    provider: OpenIdProvider, token: str, *, client_id: str, nonce: str, access_token: str | None
) -> dict[str, Any]:
    return run(
        validate_id_token(
            token,
            metadata=metadata_of(provider),
            jwks=JwksCache(fetch_json),
            client_id=client_id,
            nonce=nonce,
            access_token=access_token,
            now=datetime.now(UTC),
        )
    )


def test_discovery_advertises_what_the_relying_party_relies_on(openid_provider: OpenIdProvider) -> None:
    metadata = metadata_of(openid_provider)
    assert metadata.issuer == openid_provider.issuer
    assert set(metadata.id_token_signing_alg_values_supported) == {
        "RS256",
        "PS256",
        "ES256",
        "ES384",
        "EdDSA",
    }
    assert metadata.code_challenge_methods_supported == ("S256",)
    assert metadata.authorization_response_iss_parameter_supported
    assert metadata.backchannel_logout_supported and metadata.backchannel_logout_session_supported
    assert metadata.end_session_endpoint == openid_provider.issuer + "/session/end"
    published = run(fetch_json(metadata.jwks_uri))["keys"]
    ours = openid_provider.public_jwks()["keys"]
    assert {key["kid"]: key.get("n", key.get("x")) for key in published} == {
        key["kid"]: key.get("n", key.get("x")) for key in ours
    }
    assert not any("d" in key for key in published)


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "EdDSA"])
def test_code_flow_id_token_validates_with_at_hash_and_nonce(
    openid_provider: OpenIdProvider, alg: str
) -> None:
    with openid_provider.client() as browser:
        done = sign_in(openid_provider, browser, alg=alg)
    access_token = done.tokens["access_token"]
    claims = check_id_token(
        openid_provider,
        done.tokens["id_token"],
        client_id=done.client_id,
        nonce=done.nonce,
        access_token=access_token,
    )
    assert claims["sub"] == "alice"
    assert claims["groups"] == ["pki-admins"]
    assert claims["email"] == "alice@example.test"
    assert claims["at_hash"]
    with pytest.raises(TokenRejected) as caught:
        check_id_token(
            openid_provider,
            done.tokens["id_token"],
            client_id=done.client_id,
            nonce=done.nonce,
            access_token=access_token + "x",
        )
    assert caught.value.reason == "at_hash_mismatch"


def test_unknown_login_has_no_groups_and_pkce_is_mandatory(openid_provider: OpenIdProvider) -> None:
    with openid_provider.client() as browser:
        done = sign_in(openid_provider, browser, login="dave")
        claims = check_id_token(
            openid_provider,
            done.tokens["id_token"],
            client_id=done.client_id,
            nonce=done.nonce,
            access_token=done.tokens["access_token"],
        )
        assert (claims["sub"], claims["email"], claims.get("groups", [])) == ("dave", "dave@example.test", [])
        without_pkce = openid_provider.authorize_url(
            client_id=done.client_id, redirect_uri=done.redirect_uri, state="s", nonce="n", code_challenge="x"
        ).replace("&code_challenge=x&code_challenge_method=S256", "")
        refused = openid_provider.login(browser, without_pkce)
    assert query_of(refused)["error"] == "invalid_request", refused
    assert "PKCE" in query_of(refused)["error_description"]


def test_sign_uses_the_provider_keys_and_forged_variants_are_refused(openid_provider: OpenIdProvider) -> None:
    with openid_provider.client() as browser:
        done = sign_in(openid_provider, browser, alg="ES256")
    claims = openid_provider.id_token_claims(
        client_id=done.client_id, nonce=done.nonce, access_token="forged-access", alg="ES256"
    )
    accepted = check_id_token(
        openid_provider,
        openid_provider.sign(claims, alg="ES256"),
        client_id=done.client_id,
        nonce=done.nonce,
        access_token="forged-access",
    )
    assert accepted["groups"] == ["pki-admins"]
    forged = {
        "alg_not_allowed": openid_provider.sign(claims, alg="none"),
        "wrong_iss": openid_provider.sign({**claims, "iss": "http://127.0.0.1:1"}, alg="ES256"),
        "at_hash_missing": openid_provider.sign({**claims, "at_hash": None}, alg="ES256"),
    }
    forged["alg_not_allowed "] = openid_provider.sign(claims, alg="HS256", secret=done.client_secret)
    for reason, token in forged.items():
        with pytest.raises(TokenRejected) as caught:
            check_id_token(
                openid_provider,
                token,
                client_id=done.client_id,
                nonce=done.nonce,
                access_token="forged-access",
            )
        assert caught.value.reason == reason.strip()
        assert token not in str(caught.value)


@pytest.mark.parametrize("https", [True, False], ids=["https", "http"])
def test_end_session_sends_a_back_channel_logout_token_that_validates(
    openid_provider: OpenIdProvider, https: bool
) -> None:
    post_logout = f"http://127.0.0.1:{free_port()}/signed-out"
    with logout_receiver(openid_provider, https=https) as receiver, openid_provider.client() as browser:
        done = sign_in(
            openid_provider,
            browser,
            login="bob",
            backchannel_logout_uri=receiver.url,
            post_logout_redirect_uris=(post_logout,),
        )
        id_token = done.tokens["id_token"]
        claims = check_id_token(
            openid_provider,
            id_token,
            client_id=done.client_id,
            nonce=done.nonce,
            access_token=done.tokens["access_token"],
        )
        final = openid_provider.end_session(
            browser, id_token_hint=id_token, post_logout_redirect_uri=post_logout, state="bye"
        )
    assert final == post_logout + "?state=bye"
    assert len(receiver.tokens) == 1, openid_provider.log_tail()
    logout = run(
        validate_logout_token(
            receiver.tokens[0],
            metadata=metadata_of(openid_provider),
            jwks=JwksCache(fetch_json),
            client_id=done.client_id,
            now=datetime.now(UTC),
        )
    )
    assert (logout.sub, logout.sid, logout.iss) == ("bob", claims["sid"], openid_provider.issuer)
    assert logout.jti
