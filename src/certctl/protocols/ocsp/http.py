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
from email.utils import format_datetime
from urllib.parse import unquote

from fastapi import FastAPI, Request, Response

from certctl.errors import PayloadTooLarge, UnsupportedMediaType
from certctl.services.container import Services
from certctl.services.ocsp import OcspAnswer

REQUEST_TYPE = "application/ocsp-request"
RESPONSE_TYPE = "application/ocsp-response"
MAX_REQUEST_BYTES = 65_536
MAX_AGE_CEILING = 3600


def install(app: FastAPI, services: Services) -> None:
    @app.post("/ocsp", include_in_schema=False)
    async def ocsp_post(request: Request) -> Response:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != REQUEST_TYPE:
            raise UnsupportedMediaType(f"an OCSP request is sent as {REQUEST_TYPE} (RFC 6960 App. A.1)")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_REQUEST_BYTES:
                raise PayloadTooLarge(f"an OCSP request is at most {MAX_REQUEST_BYTES} bytes here")
        answer = await services.ocsp.respond(bytes(body))
        return _respond(answer, request=request, services=services)

    @app.get("/ocsp/{encoded:path}", include_in_schema=False)
    async def ocsp_get(encoded: str, request: Request) -> Response:
        if len(encoded) > MAX_REQUEST_BYTES * 2:
            raise PayloadTooLarge(f"an OCSP request is at most {MAX_REQUEST_BYTES} bytes here")
        answer = await services.ocsp.respond(_decode(encoded))
        return _respond(answer, request=request, services=services)


def _decode(encoded: str) -> bytes:
    """The DER of a GET request: URL-encoded base64 (App. A.1), standard or URL-safe alphabet; bytes
    that do not decode become an empty request, which is answered with malformedRequest."""
    text = unquote(encoded).strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _respond(answer: OcspAnswer, *, request: Request, services: Services) -> Response:
    if answer.this_update is None or answer.next_update is None:
        return Response(answer.der, media_type=RESPONSE_TYPE, headers={"Cache-Control": "no-store"})
    remaining = int((answer.next_update - services.context.clock.now()).total_seconds())
    max_age = max(0, min(remaining, MAX_AGE_CEILING))
    etag = answer.etag
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(answer.this_update, usegmt=True),
        "Expires": format_datetime(answer.next_update, usegmt=True),
        "Cache-Control": f"public, max-age={max_age}, no-transform, must-revalidate",
    }
    if etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(answer.der, media_type=RESPONSE_TYPE, headers=headers)
