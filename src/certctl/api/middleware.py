"""Pure-ASGI middleware on every request: request id, body size cap and SHA-256, metrics, headers.

The body is hashed as it streams (for the audit trail) and refused with 413 past the configured size,
whether or not the client sent a Content-Length.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certctl.errors import PROBLEM_BASE
from certctl.observability.metrics import observe
from certctl.services.audit import RequestInfo

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so the framework passes it through unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the request body exceeds {limit} bytes")


def _too_large(limit: int, path: str) -> bytes:
    return json.dumps(
        {
            "type": PROBLEM_BASE + "payload-too-large",
            "title": "The request body is too large",
            "status": 413,
            "detail": f"the request body exceeds {limit} bytes",
            "instance": path,
        }
    ).encode()


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, hsts: bool) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.extra_headers = list(SECURITY_HEADERS)
        if hsts:
            self.extra_headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info = RequestInfo(request_id=secrets.token_hex(8), started=started)
        scope.setdefault("state", {})["certctl_info"] = info
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _send_problem(send, 413, _too_large(self.max_body_bytes, scope["path"]))
            observe(method=scope["method"], scope=scope, status=413, started=started)
            return
        if _needs_json(scope):
            await _send_problem(send, 415, _unsupported(scope["path"]))
            observe(method=scope["method"], scope=scope, status=415, started=started)
            return
        digest = hashlib.sha256()
        received = 0
        limit = self.max_body_bytes

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise BodyTooLarge(limit)
                digest.update(chunk)
                if not message.get("more_body", False) and received:
                    info.body_sha256 = digest.hexdigest()
            return message

        status_holder = [500]
        response_started = False

        async def wrapped_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", info.request_id.encode()))
                headers.extend(self.extra_headers)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, counting_receive, wrapped_send)
        except BodyTooLarge:
            if not response_started:
                status_holder[0] = 413
                await _send_problem(send, 413, _too_large(limit, scope["path"]))
        finally:
            observe(method=scope["method"], scope=scope, status=status_holder[0], started=started)


def _unsupported(path: str) -> bytes:
    return json.dumps(
        {
            "type": PROBLEM_BASE + "unsupported-media-type",
            "title": "Unsupported media type",
            "status": 415,
            "detail": "send the request body as application/json",
            "instance": path,
        }
    ).encode()


def _needs_json(scope: Scope) -> bool:
    """A body sent to /api/v1 must be JSON; anything else is refused before it reaches a handler."""
    if scope["method"] not in ("POST", "PUT", "PATCH") or not scope["path"].startswith("/api/"):
        return False
    content_type = b""
    has_body = False
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            content_type = value.split(b";", 1)[0].strip().lower()
        elif name == b"content-length":
            has_body = value.strip() not in (b"0", b"")
        elif name == b"transfer-encoding":
            has_body = True
    if not has_body:
        return False
    return not (content_type == b"application/json" or content_type.endswith(b"+json"))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_problem(send: Send, status: int, body: bytes) -> None:
    headers: list[Any] = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
