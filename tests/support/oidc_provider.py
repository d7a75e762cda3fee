"""A real OpenID Provider (npm ``oidc-provider`` 9) on a free loopback port, for SSO tests.

``tests/fixtures/oidc_provider.mjs`` runs the provider; this module writes its configuration (signing keys
generated here, so tests can also forge tokens with the provider's own keys), starts ``node``, waits for
its ready line and stops it by PID. :class:`OpenIdProvider` registers clients dynamically, drives the
development login and consent forms and the RP-initiated logout form with a plain HTTP client, and signs
arbitrary claims.

The provider trusts a test CA for back-channel logout over HTTPS (``NODE_EXTRA_CA_CERTS``): a relying
party under test serves ``rp_cert_file``/``rp_key_file`` (127.0.0.1 and localhost), or passes its own CA
in ``extra_ca_files`` at start. Plain-HTTP loopback relying parties work too.

Install the peer with ``cd tests/fixtures && npm install --no-audit --no-fund``. When ``node`` or the
package is missing the fixture skips, or fails with ``CERTCTL_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import select
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2
import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, KeySet, OctKey, OKPKey, RSAKey

from certctl.auth.oidc_tokens import at_hash
from certctl.pki.tls import make_bootstrap_tls

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SCRIPT = FIXTURES / "oidc_provider.mjs"
PACKAGE = FIXTURES / "node_modules" / "oidc-provider" / "package.json"
INSTALL_COMMAND = "cd tests/fixtures && npm install --no-audit --no-fund"
REQUIRE_PEERS = os.environ.get("CERTCTL_REQUIRE_PEERS") == "1"

DEFAULT_ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {"email": "alice@example.test", "name": "Alice Admin", "groups": ["pki-admins"]},
    "bob": {"email": "bob@example.test", "name": "Bob Viewer", "groups": ["pki-viewers"]},
    "carol": {"email": "carol@example.test", "name": "Carol Unmapped", "groups": ["unmapped"]},
}
"""Any other login id signs in too, with email ``<id>@example.test`` and no groups."""

KEY_FOR_ALG = {"RS256": "rsa", "PS256": "rsa", "ES256": "ec-p256", "ES384": "ec-p384", "EdDSA": "ed25519"}
DEFAULT_SCOPE = "openid email profile groups"


class ProviderError(RuntimeError):
    """The provider answered something a test flow did not expect (its page text is in the message)."""


def missing_peer() -> str | None:
    """Why the provider cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not PACKAGE.exists():
        return f"npm package oidc-provider is not installed (run: {INSTALL_COMMAND})"
    return None


def require_peer() -> None:
    """Skip the test when the provider cannot run, or fail it with CERTCTL_REQUIRE_PEERS=1."""
    reason = missing_peer()
    if reason is None:
        return
    if REQUIRE_PEERS:
        pytest.fail(f"required peer missing: {reason}")
    pytest.skip(f"needs the OpenID Provider peer: {reason} (set CERTCTL_REQUIRE_PEERS=1 to fail)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def provider_keys() -> KeySet:
    """One signing key per allowed algorithm family: RSA (RS256/PS256), P-256, P-384, Ed25519."""
    return KeySet(
        [
            RSAKey.generate_key(2048, {"kid": "rsa", "use": "sig"}),
            ECKey.generate_key("P-256", {"kid": "ec-p256", "use": "sig"}),
            ECKey.generate_key("P-384", {"kid": "ec-p384", "use": "sig"}),
            OKPKey.generate_key("Ed25519", {"kid": "ed25519", "use": "sig"}),
        ]
    )


@dataclass
class _Form:
    action: str
    inputs: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(_Form(action=values.get("action", "")))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1].inputs[values["name"]] = values.get("value", "")

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


def _parse(page: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(page)
    return parser


@dataclass
class OpenIdProvider:
    issuer: str
    jwks_private: KeySet
    """The provider's signing keys, private parts included (the provider signs with these)."""
    directory: Path
    process: subprocess.Popen[bytes]
    log: Path
    rp_ca_file: Path
    """CA the provider trusts for HTTPS back-channel logout (with any ``extra_ca_files``)."""
    rp_cert_file: Path
    rp_key_file: Path
    """A server certificate for 127.0.0.1/localhost under ``rp_ca_file``, for relying parties under test."""
    accounts: dict[str, dict[str, Any]]

    @property
    def port(self) -> int:
        return int(urlsplit(self.issuer).port or 0)

    def client(self) -> httpx2.Client:
        """A fresh HTTP client (own cookie jar: one browser) for the provider."""
        return httpx2.Client(timeout=30)

    def discovery(self) -> dict[str, Any]:
        with self.client() as http:
            response = http.get(self.issuer + "/.well-known/openid-configuration")
            response.raise_for_status()
            document: dict[str, Any] = response.json()
            return document

    def public_jwks(self) -> dict[str, Any]:
        return dict(self.jwks_private.as_dict(private=False))

    def rp_server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting the relying-party certificate the provider trusts."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.rp_cert_file, self.rp_key_file)
        return context

    def register_client(
        self,
        redirect_uris: Sequence[str],
        backchannel_logout_uri: str | None = None,
        post_logout_redirect_uris: Sequence[str] = (),
        token_endpoint_auth_method: str = "client_secret_basic",
        *,
        id_token_signed_response_alg: str = "RS256",
        scope: str | None = None,
    ) -> tuple[str, str | None]:
        """Dynamic client registration (RFC 7591); returns (client_id, client_secret or None)."""
        metadata: dict[str, Any] = {
            "redirect_uris": list(redirect_uris),
            "response_types": ["code"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": token_endpoint_auth_method,
            "id_token_signed_response_alg": id_token_signed_response_alg,
            "post_logout_redirect_uris": list(post_logout_redirect_uris),
        }
        if backchannel_logout_uri is not None:
            metadata |= {
                "backchannel_logout_uri": backchannel_logout_uri,
                "backchannel_logout_session_required": True,
            }
        if scope is not None:
            metadata["scope"] = scope
        with self.client() as http:
            response = http.post(self.issuer + "/reg", json=metadata)
        if response.status_code != 201:
            raise ProviderError(f"registration refused ({response.status_code}): {response.text[:500]}")
        registered = response.json()
        return registered["client_id"], registered.get("client_secret")

    def authorize_url(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_challenge: str,
        scope: str = DEFAULT_SCOPE,
        **extra: str,
    ) -> str:
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            **extra,
        }
        return f"{self.issuer}/auth?{urlencode(query)}"

    def _own(self, url: str) -> bool:
        mine, other = urlsplit(self.issuer), urlsplit(url)
        return (mine.scheme, mine.netloc) == (other.scheme, other.netloc)

    def _walk(
        self, http: httpx2.Client, response: httpx2.Response, answer: Callable[[_Form], dict[str, str]]
    ) -> str:
        """Follow redirects within the provider and answer its forms; return the first URL outside it,
        or the URL of the first provider page without a form."""
        for _ in range(20):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if not self._own(location):
                    return location
                response = http.get(location, follow_redirects=False)
                continue
            page = _parse(response.text)
            if response.status_code != 200:
                raise ProviderError(f"provider answered {response.status_code}: {' '.join(page.text)[:800]}")
            if not page.forms:
                return str(response.url)
            form = page.forms[0]
            response = http.post(
                urljoin(str(response.url), form.action), data=answer(form), follow_redirects=False
            )
        raise ProviderError("the provider kept redirecting")

    def login(
        self, http_client: httpx2.Client, authorize_url: str, login: str = "alice", *, password: str = "x"
    ) -> str:
        """Drive the development login and consent forms; return the redirect to the relying party
        (``...?code=...&state=...&iss=...``, or an error redirect). Provider cookies stay in the client."""

        def answer(form: _Form) -> dict[str, str]:
            prompt = form.inputs.get("prompt")
            if prompt == "login":
                return {"prompt": "login", "login": login, "password": password}
            if prompt == "consent":
                return {"prompt": "consent"}
            raise ProviderError(f"unexpected provider form (prompt {prompt!r})")

        response = http_client.get(authorize_url, follow_redirects=False)
        return self._walk(http_client, response, answer)

    def end_session(
        self,
        http_client: httpx2.Client,
        *,
        id_token_hint: str | None = None,
        client_id: str | None = None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
        everywhere: bool = True,
    ) -> str:
        """RP-initiated logout in the browser ``http_client`` (whose cookies hold the provider session):
        confirm the provider's logout form, which sends back-channel logout tokens to the session's
        clients (all of them with ``everywhere``). Returns the final URL (the post-logout redirect, or
        the provider's success page)."""
        query = {
            name: value
            for name, value in {
                "id_token_hint": id_token_hint,
                "client_id": client_id,
                "post_logout_redirect_uri": post_logout_redirect_uri,
                "state": state,
            }.items()
            if value is not None
        }
        response = http_client.get(f"{self.issuer}/session/end", params=query, follow_redirects=False)

        def answer(form: _Form) -> dict[str, str]:
            if "xsrf" not in form.inputs:
                raise ProviderError("unexpected provider form on logout")
            return {**form.inputs, **({"logout": "yes"} if everywhere else {})}

        return self._walk(http_client, response, answer)

    def key(self, alg: str = "RS256", kid: str | None = None) -> Key:
        return self.jwks_private.get_by_kid(kid or KEY_FOR_ALG[alg])

    def sign(
        self,
        claims: Mapping[str, Any],
        alg: str = "RS256",
        kid: str | None = None,
        headers: Mapping[str, Any] | None = None,
        *,
        secret: str | None = None,
    ) -> str:
        """Sign ``claims`` with the provider's own key for ``alg`` (or ``kid``), as forged-token tests need.

        ``alg='none'`` gives an unsigned token; ``HS*`` signs with ``secret`` (e.g. the client secret)."""
        header: dict[str, Any] = {"typ": "JWT", "alg": alg}
        if alg == "none":
            header |= dict(headers or {})
            return ".".join([_b64json(header), _b64json(dict(claims)), ""])
        key: Key
        if alg.startswith("HS"):
            if secret is None:
                raise ValueError("HS* tokens need a secret")
            key = OctKey.import_key(secret.encode())
        else:
            key = self.key(alg, kid)
            header["kid"] = key.kid
        header |= dict(headers or {})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            return jwt.encode(header, dict(claims), key, algorithms=[alg])

    def id_token_claims(
        self,
        *,
        client_id: str,
        nonce: str,
        sub: str = "alice",
        access_token: str | None = None,
        alg: str = "RS256",
        now: datetime | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Claims of an ID token as this provider would issue it (for forging variants of one)."""
        issued = int((now or datetime.now(UTC)).timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client_id,
            "sub": sub,
            "iat": issued,
            "exp": issued + 3600,
            "nonce": nonce,
            **self.accounts.get(sub, {}),
        }
        if access_token is not None:
            claims["at_hash"] = at_hash(access_token, alg)
        claims |= overrides
        return {name: value for name, value in claims.items() if value is not None}

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _b64json(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _wait_ready(process: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    buffered = b""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProviderError(f"oidc-provider exited {process.returncode}:\n{log.read_text()[-3000:]}")
        readable, _, _ = select.select([process.stdout], [], [], 0.2)
        if not readable:
            continue
        buffered += os.read(process.stdout.fileno(), 4096)
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            if line.startswith(b"{") and json.loads(line).get("ready") is True:
                return
    raise ProviderError(f"oidc-provider did not become ready:\n{log.read_text()[-3000:]}")


def start_openid_provider(
    directory: Path,
    *,
    accounts: Mapping[str, Mapping[str, Any]] | None = None,
    ttl: Mapping[str, int] | None = None,
    extra_ca_files: Sequence[Path] = (),
) -> OpenIdProvider:
    """Start the provider on a free loopback port; the caller stops it (``stop()``)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    keys = provider_keys()
    chosen_accounts = {name: dict(claims) for name, claims in (accounts or DEFAULT_ACCOUNTS).items()}
    tls = make_bootstrap_tls(hostnames=["localhost"], ip_addresses=["127.0.0.1"], now=datetime.now(UTC))
    rp_ca, rp_cert, rp_key = directory / "rp-ca.pem", directory / "rp.crt", directory / "rp.key"
    rp_ca.write_bytes(tls.ca_cert_pem)
    rp_cert.write_bytes(tls.server_cert_pem)
    rp_key.write_bytes(tls.server_key_pem)
    rp_key.chmod(0o600)
    trusted = directory / "trusted-rp-cas.pem"
    trusted.write_bytes(tls.ca_cert_pem + b"".join(Path(path).read_bytes() for path in extra_ca_files))
    config = {
        "port": port,
        "issuer": issuer,
        "jwks": keys.as_dict(private=True),
        "accounts": chosen_accounts,
        "ttl": dict(ttl or {}),
        "cookieKeys": [os.urandom(24).hex()],
    }
    config_file = directory / "provider.json"
    config_file.write_text(json.dumps(config))
    config_file.chmod(0o600)
    log = directory / "provider.log"
    env = os.environ | {"NODE_EXTRA_CA_CERTS": str(trusted), "NODE_ENV": "test"}
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["node", str(SCRIPT), str(config_file)],
            cwd=FIXTURES,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=output,
        )
    provider = OpenIdProvider(
        issuer=issuer,
        jwks_private=keys,
        directory=directory,
        process=process,
        log=log,
        rp_ca_file=rp_ca,
        rp_cert_file=rp_cert,
        rp_key_file=rp_key,
        accounts=chosen_accounts,
    )
    try:
        _wait_ready(process, log)
    except BaseException:
        provider.stop()
        raise
    return provider


def openid_provider_fixture(
    *,
    scope: Any = "session",
    accounts: Mapping[str, Mapping[str, Any]] | None = None,
    ttl: Mapping[str, int] | None = None,
) -> Any:
    """A pytest fixture that starts one provider for its scope (default: the session) and stops it after.

    Use in a test module: ``openid_provider = openid_provider_fixture()``."""

    @pytest.fixture(scope=scope)
    def openid_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
        require_peer()
        provider = start_openid_provider(tmp_path_factory.mktemp("oidc-provider"), accounts=accounts, ttl=ttl)
        try:
            yield provider
        finally:
            provider.stop()

    return openid_provider


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified (tests read what the provider issued)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


Forge = Callable[[dict[str, Any], dict[str, Any]], str]
"""Given the provider's real token answer and the claims of its ID token, return the ID token to hand
to the relying party instead."""


class TokenAnswerRewriter(httpx2.AsyncBaseTransport):
    """An outbound transport for a relying party under test: every request goes to the real provider;
    the token endpoint's JSON answer is recorded and, when ``forge`` is set, its ``id_token`` replaced.
    Requests to a path in ``unreachable`` fail as if the provider were down there (e.g. its JWKS)."""

    def __init__(self, token_path: str = "/token") -> None:
        self._real = httpx2.AsyncHTTPTransport()
        self.token_path = token_path
        self.forge: Forge | None = None
        self.unreachable: set[str] = set()
        self.answers: list[dict[str, Any]] = []
        """Every real token endpoint answer, in order (ID, access and refresh tokens)."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path in self.unreachable:
            raise httpx2.ConnectError("unreachable in this test", request=request)
        response = await self._real.handle_async_request(request)
        if request.url.path != self.token_path:
            return response
        content = await response.aread()
        await response.aclose()
        if response.status_code != 200:
            return httpx2.Response(response.status_code, content=content, request=request)
        answer: dict[str, Any] = json.loads(content)
        self.answers.append(dict(answer))
        if self.forge is not None:
            answer["id_token"] = self.forge(dict(answer), unverified_claims(answer["id_token"]))
        return httpx2.Response(200, json=answer, request=request)

    async def aclose(self) -> None:
        await self._real.aclose()


@dataclass
class LogoutReceiver:
    """A relying party's back-channel logout endpoint on loopback that records each logout token."""

    url: str
    tokens: list[str] = field(default_factory=list)

    def tokens_for(self, client_id: str) -> list[str]:
        return [token for token in self.tokens if unverified_claims(token).get("aud") == client_id]


@contextmanager
def logout_receiver(provider: OpenIdProvider, *, https: bool = False) -> Iterator[LogoutReceiver]:
    """Start a :class:`LogoutReceiver` (answers 200 to every POST) and stop it after."""
    receiver = LogoutReceiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            with lock:
                receiver.tokens.extend(parse_qs(body).get("logout_token", []))
            self.send_response(200)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if https:
        server.socket = provider.rp_server_context().wrap_socket(server.socket, server_side=True)
    scheme = "https" if https else "http"
    receiver.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/auth/oidc/back-channel-logout"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class RelyingPartyBrowser:
    """One browser between an in-process relying party (a TestClient over the app) and the provider:
    its own cookie jar for the app (swapped in for each request) and its own HTTP client for the
    provider (whose cookies hold the provider session)."""

    def __init__(
        self, app: Any, provider: OpenIdProvider, *, user_agent: str = "Mozilla/5.0 (tests)"
    ) -> None:
        self.app = app
        self.provider = provider
        self.jar = httpx2.Cookies()
        self.idp = provider.client()
        self.user_agent = user_agent

    def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Any:
        saved = self.app.cookies
        self.app.cookies = self.jar
        try:
            return self.app.request(
                method,
                url,
                headers={"User-Agent": self.user_agent} | dict(headers or {}),
                follow_redirects=False,
                **kwargs,
            )
        finally:
            self.jar = self.app.cookies
            self.app.cookies = saved

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def cookie(self, name: str) -> str | None:
        value: str | None = self.jar.get(name)
        return value

    def start(self, provider_name: str, *, next_path: str = "/dashboard") -> str:
        """``/auth/oidc/<name>/start``: returns the authorization URL the app redirects to."""
        response = self.get(f"/auth/oidc/{provider_name}/start", params={"next": next_path})
        if response.status_code != 303:
            raise ProviderError(f"sign-in start answered {response.status_code}: {response.text[:500]}")
        return str(response.headers["location"])

    def authorize(self, authorize_url: str, login: str) -> str:
        """Sign in at the provider; returns the redirect back to the app (the callback URL)."""
        return self.provider.login(self.idp, authorize_url, login=login)

    def sign_in(self, provider_name: str, login: str) -> Any:
        """The whole flow; returns the app's answer to the callback."""
        return self.get(self.authorize(self.start(provider_name), login))

    def close(self) -> None:
        self.idp.close()


RP_CALLBACK = "https://testserver/auth/oidc/callback"
RP_SIGNED_OUT = "https://testserver/login"
RP_SESSION_COOKIE = "__Host-certctl_session"
RP_PROVIDERS_API = "/api/v1/auth/oidc/providers"
"""The in-process app's callback and sign-in page (TestClient base URL), and its session cookie."""


@dataclass
class RelyingParty:
    """One app (in-process) registered at the provider as its own client, with its outbound seam."""

    api: Any
    """The in-process harness (``support.apps.ApiHarness``)."""
    provider: OpenIdProvider
    receiver: LogoutReceiver
    transport: TokenAnswerRewriter
    name: str
    client_id: str
    client_secret: str
    http: httpx2.AsyncClient
    browsers: list[RelyingPartyBrowser]

    def browser(self, user_agent: str = "Mozilla/5.0 (tests)") -> RelyingPartyBrowser:
        opened = RelyingPartyBrowser(self.api.client, self.provider, user_agent=user_agent)
        self.browsers.append(opened)
        return opened

    def signed_in(self, login: str) -> RelyingPartyBrowser:
        browser = self.browser()
        done = browser.sign_in(self.name, login)
        assert done.status_code == 200, done.text
        assert done.headers["refresh"] == "0; url=/dashboard"
        assert browser.cookie(RP_SESSION_COOKIE)
        return browser

    def close(self) -> None:
        for browser in self.browsers:
            browser.close()
        self.api.run(self.http.aclose)


def dashboard_of(api: Any) -> Any:
    """The app's ``Dashboard`` (its ``oidc`` attribute is the sign-in whose outbound HTTP we swap)."""
    app: Any = api.client.app
    while not hasattr(app, "state"):
        app = app.app
    return app.state.dashboard


def add_relying_party(
    api: Any,
    provider: OpenIdProvider,
    receiver: LogoutReceiver,
    *,
    mappings: dict[str, str] | None = None,
) -> RelyingParty:
    """Register a client at the provider, add it through the API with the given group -> role mappings,
    and route the app's outbound HTTP through a rewriting transport."""
    client_id, client_secret = provider.register_client(
        [RP_CALLBACK], backchannel_logout_uri=receiver.url, post_logout_redirect_uris=[RP_SIGNED_OUT]
    )
    assert client_secret
    name = "corp-" + secrets.token_hex(3)
    body = {
        "name": name,
        "display_name": "Corp SSO",
        "issuer": provider.issuer,
        "client_id": client_id,
        "client_secret": client_secret,
    }
    created = api.post(RP_PROVIDERS_API, json=body)
    assert created.status_code == 201, created.text
    for group, role in (mappings or {}).items():
        added = api.post(f"{RP_PROVIDERS_API}/{name}/mappings", json={"group": group, "role": role})
        assert added.status_code == 201, added.text
    transport = TokenAnswerRewriter(urlsplit(provider.discovery()["token_endpoint"]).path)
    http = httpx2.AsyncClient(transport=transport, timeout=20)
    dashboard_of(api).oidc.http = http
    return RelyingParty(api, provider, receiver, transport, name, client_id, client_secret, http, [])
