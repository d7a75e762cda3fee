"""A small ACME client for tests (joserfc): signs flattened JWS requests and can break them on purpose."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from joserfc import jws
from joserfc.jwk import ECKey, JWKRegistry
from joserfc.registry import HeaderParameter

REGISTRY = jws.JWSRegistry(
    header_registry={"nonce": HeaderParameter("nonce", "str"), "url": HeaderParameter("url", "str")},
    algorithms=["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA", "HS256"],
)
REGISTRY.max_header_length = 16384


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class AcmeTestClient:
    """``http`` is anything with httpx-style ``get``/``head``/``post`` (Starlette's TestClient, httpx2)."""

    http: Any
    directory_url: str
    key: Any = field(default_factory=lambda: ECKey.generate_key("P-256"))
    alg: str = "ES256"
    kid: str | None = None
    directory: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory = self.http.get(self.directory_url).json()

    def nonce(self) -> str:
        return str(self.http.head(self.directory["newNonce"]).headers["Replay-Nonce"])

    def thumbprint(self) -> str:
        return str(self.key.thumbprint())

    def sign(
        self,
        url: str,
        payload: dict[str, Any] | None,
        *,
        use_jwk: bool | None = None,
        protected: dict[str, Any] | None = None,
        key: Any = None,
    ) -> dict[str, Any]:
        """A flattened JWS; ``protected`` overrides or (with value None) removes header members."""
        signing_key = key or self.key
        header: dict[str, Any] = {"alg": self.alg, "nonce": self.nonce(), "url": url}
        if use_jwk or (use_jwk is None and self.kid is None):
            header["jwk"] = signing_key.as_dict(private=False)
        else:
            header["kid"] = self.kid
        for name, value in (protected or {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        body = b"" if payload is None else json.dumps(payload).encode()
        alg = header.get("alg", self.alg)
        signed = jws.serialize_json(
            {"protected": header}, body, signing_key, algorithms=[alg], registry=REGISTRY
        )
        return dict(signed)

    def post(self, url: str, payload: dict[str, Any] | None, **kwargs: Any) -> Any:
        message = kwargs.pop("message", None) or self.sign(url, payload, **kwargs)
        return self.http.post(
            url, content=json.dumps(message), headers={"Content-Type": "application/jose+json"}
        )

    def post_raw(self, url: str, message: dict[str, Any], content_type: str = "application/jose+json") -> Any:
        return self.http.post(url, content=json.dumps(message), headers={"Content-Type": content_type})

    def register(self) -> Any:
        response = self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True})
        self.kid = response.headers.get("Location")
        return response

    def new_order(self, *names: str) -> Any:
        identifiers = [{"type": "dns", "value": name} for name in names]
        return self.post(self.directory["newOrder"], {"identifiers": identifiers})

    def csr_b64(self, csr_pem: str) -> str:
        from cryptography import x509

        csr = x509.load_pem_x509_csr(csr_pem.encode())
        return b64url(csr.public_bytes(serialization.Encoding.DER))


def import_key(data: dict[str, Any]) -> Any:
    return JWKRegistry.import_key(data)


class Http01Server:
    """A tiny http-01 responder on loopback: serves ``/.well-known/acme-challenge/<token>`` from a dict."""

    def __init__(self) -> None:
        import http.server
        import threading
        import time

        tokens: dict[str, str] = {}
        self.tokens = tokens
        delays: dict[str, float] = {}
        self.delays = delays
        """Seconds to wait before answering a token (a slow web server)."""

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = self.path.rsplit("/", 1)[-1]
                time.sleep(delays.get(token, 0.0))
                body = tokens.get(token)
                self.send_response(200 if body else 404)
                self.end_headers()
                self.wfile.write((body or "").encode())

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


CHALLTESTSRV_MANAGEMENT: dict[str, str] = {}
"""DNS address -> management URL of each ``pebble-challtestsrv`` started here (to add CAA records)."""


def start_challtestsrv() -> tuple[Any, str]:
    """``pebble-challtestsrv`` answering every name with 127.0.0.1; (process, ``host:port`` of its DNS).
    Its management URL is in :data:`CHALLTESTSRV_MANAGEMENT` under that address."""
    import socket
    import subprocess
    import time

    def free() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    dns_port, management = free(), free()
    process = subprocess.Popen(
        [
            "pebble-challtestsrv",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-dns01",
            f"127.0.0.1:{dns_port}",
            "-management",
            f"127.0.0.1:{management}",
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", management), timeout=0.5):
                CHALLTESTSRV_MANAGEMENT[f"127.0.0.1:{dns_port}"] = f"http://127.0.0.1:{management}"
                return process, f"127.0.0.1:{dns_port}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("pebble-challtestsrv did not start")
