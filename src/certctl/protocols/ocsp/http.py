"""``POST /ocsp`` and ``GET /ocsp/<base64 request>``: the OCSP HTTP binding (RFC 6960 App. A.1).

Served on the plain HTTP listener and on HTTPS. A POST body must be ``application/ocsp-request`` (else
415) and at most 64 KiB (else 413); bytes that are not an OCSPRequest get a ``malformedRequest`` OCSP
response with HTTP 200, as App. A.1 and RFC 5019 §2.2.3 describe. GET responses without a nonce are
cacheable (RFC 5019 §6.2): ``Cache-Control: public, max-age`` never past nextUpdate, ``ETag`` (a hash of
the response), ``Last-Modified`` (thisUpdate) and ``Expires`` (nextUpdate), so a CDN can front them.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from email.utils import format_datetime
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from certctl.errors import PROBLEM_BASE
from certctl.observability.metrics import observe
from certctl.services.container import Services
from certctl.services.ocsp import OcspAnswer

REQUEST_TYPE = "application/ocsp-request"
RESPONSE_TYPE = "application/ocsp-response"
MAX_REQUEST_BYTES = 65_536
MAX_AGE_CEILING = 3600


class OcspEndpoint:
    """``/ocsp`` answered in front of the web framework: the hot path of a relying-party fleet.

    A cached answer costs one dictionary lookup, so routing, dependency injection and the request
    middleware would be most of the work; this ASGI layer answers OCSP itself and hands every other
    path to the wrapped application unchanged (ARCHITECTURE §5: hot paths stay close to the raw server).
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/ocsp" or path.startswith("/ocsp/")):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        try:
            request_der = await self._request_der(scope, path, headers, receive)
        except _Refused as refused:
            await _send(send, refused.status, _problem_headers(), refused.body)
            observe(
                method=scope["method"], scope=scope, status=refused.status, started=started, template="/ocsp"
            )
            return
        answer = await self.services.ocsp.respond(request_der)
        status, answer_headers, body = _answer(answer, headers.get(b"if-none-match", b""), self.services)
        await _send(send, status, answer_headers, body)
        observe(method=scope["method"], scope=scope, status=status, started=started, template="/ocsp")

    async def _request_der(
        self, scope: Scope, path: str, headers: dict[bytes, bytes], receive: Receive
    ) -> bytes:
        if scope["method"] == "GET" and path.startswith("/ocsp/"):
            encoded = path[len("/ocsp/") :]
            if len(encoded) > MAX_REQUEST_BYTES * 2:
                raise _Refused(
                    413, "payload-too-large", f"an OCSP request is at most {MAX_REQUEST_BYTES} bytes"
                )
            return _decode(encoded)
        if scope["method"] != "POST" or path != "/ocsp":
            raise _Refused(405, "method-not-allowed", "use POST /ocsp or GET /ocsp/<base64 request>")
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type != REQUEST_TYPE.encode():
            raise _Refused(415, "unsupported-media-type", f"an OCSP request is sent as {REQUEST_TYPE}")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _Refused(400, "bad-request", "the client went away")
            body.extend(message.get("body", b""))
            if len(body) > MAX_REQUEST_BYTES:
                raise _Refused(
                    413, "payload-too-large", f"an OCSP request is at most {MAX_REQUEST_BYTES} bytes"
                )
            if not message.get("more_body", False):
                return bytes(body)


class _Refused(Exception):
    def __init__(self, status: int, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.body = json.dumps(
            {
                "type": PROBLEM_BASE + problem,
                "title": detail,
                "status": status,
                "detail": detail,
                "instance": "/ocsp",
            }
        ).encode()


def _problem_headers() -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/problem+json")]


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _decode(encoded: str) -> bytes:
    """The DER of a GET request: URL-encoded base64 (App. A.1), standard or URL-safe alphabet; bytes
    that do not decode become an empty request, which is answered with malformedRequest."""
    text = unquote(encoded).strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _answer(
    answer: OcspAnswer, if_none_match: bytes, services: Services
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    content_type = (b"content-type", RESPONSE_TYPE.encode())
    if answer.this_update is None or answer.next_update is None:
        return 200, [content_type, (b"cache-control", b"no-store")], answer.der
    remaining = int((answer.next_update - services.context.clock.now()).total_seconds())
    max_age = max(0, min(remaining, MAX_AGE_CEILING))
    headers = [
        (b"etag", answer.etag.encode()),
        (b"last-modified", format_datetime(answer.this_update, usegmt=True).encode()),
        (b"expires", format_datetime(answer.next_update, usegmt=True).encode()),
        (b"cache-control", f"public, max-age={max_age}, no-transform, must-revalidate".encode()),
    ]
    if answer.etag.encode() in [tag.strip() for tag in if_none_match.split(b",")]:
        return 304, headers, b""
    return 200, [content_type, *headers], answer.der
