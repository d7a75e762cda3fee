"""``/acme/`` answered in front of the web framework, like ``/ocsp`` (ARCHITECTURE §5).

An ACME order is nine or so small JWS requests; routing through every API route, dependency injection
and the framework's middleware layers cost more CPU than most of them do themselves. This ASGI layer
reads the body (refusing it past the size cap), hands the request to ``routes.dispatch`` and sends the
answer with the headers every response of the server carries (request id, security headers, HSTS),
recording the same request metrics. Every other path goes to the wrapped application unchanged.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from certctl.api.middleware import SECURITY_HEADERS
from certctl.observability.metrics import observe
from certctl.protocols.acme.routes import Incoming, dispatch, internal_error
from certctl.services.container import Services

DEFAULT_PORTS = {"http": 80, "https": 443}
log = logging.getLogger("certctl.acme")


class AcmeEndpoint:
    def __init__(self, app: ASGIApp, services: Services, *, max_body_bytes: int, hsts: bool) -> None:
        self.app = app
        self.server = services.acme
        self.max_body_bytes = max_body_bytes
        self.extra_headers = list(SECURITY_HEADERS)
        if hsts:
            self.extra_headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/acme/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        host, content_type, declared = "", "", None
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        body = await self._body(receive, declared)
        if body is None:
            await self._send(send, 413, [(b"content-type", b"application/problem+json")], self._too_large())
            observe(method=scope["method"], scope=scope, status=413, started=started, template="/acme")
            return
        incoming = Incoming(
            method=scope["method"],
            base_url=_base_url(scope, host),
            path=path,
            content_type=content_type,
            body=body,
            client=client[0] if (client := scope.get("client")) else "",
        )
        try:
            template, response = await dispatch(self.server, incoming)
        except Exception:  # a fault of ours (database down, a bug): logged, answered as an ACME problem
            log.exception("ACME request %s %s failed", scope["method"], path)
            template, response = "/acme", internal_error(self.server)
        await self._send(send, response.status_code, response.raw_headers, bytes(response.body))
        observe(
            method=scope["method"],
            scope=scope,
            status=response.status_code,
            started=started,
            template=template,
        )

    async def _body(self, receive: Receive, declared: bytes | None) -> bytes | None:
        """The whole body, or None past the cap (declared or streamed)."""
        if declared is not None:
            try:
                if int(declared) > self.max_body_bytes:
                    return None
            except ValueError:
                pass
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _send(self, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        headers = [
            *headers,
            (b"x-request-id", secrets.token_hex(8).encode()),
            *self.extra_headers,
        ]
        if not any(name == b"content-length" for name, _ in headers):
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _too_large(self) -> bytes:
        return json.dumps(
            {
                "type": "urn:ietf:params:acme:error:malformed",
                "detail": f"the request body exceeds {self.max_body_bytes} bytes",
                "status": 413,
            }
        ).encode()


def _base_url(scope: Scope, host: str) -> str:
    """As the web framework computes it: the Host header, else the server address (default port
    omitted)."""
    scheme = scope.get("scheme", "http")
    root = scope.get("root_path", "")
    if host:
        return f"{scheme}://{host}{root}/"
    server = scope.get("server")
    if not server:
        return f"{scheme}://localhost{root}/"
    address, port = server
    if port == DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{address}{root}/"
    return f"{scheme}://{address}:{port}{root}/"
