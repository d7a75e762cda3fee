"""``GET /crl/<ca id>.crl`` (DER), ``.pem`` and ``-delta.crl``: CRLs as relying parties fetch them.

Served on the plain HTTP listener (where certificates' CRL distribution points point, RFC 5280
§4.2.1.13) and on HTTPS. The bytes come from memory or one read of ``crl_state``; they are never built
per request. ``ETag`` names the CRL number, ``Last-Modified`` is thisUpdate, and ``Cache-Control`` lets
caches keep a CRL no later than its nextUpdate (RFC 9111 §5.2.2.1), so a revocation shows within that.
"""

from __future__ import annotations

from email.utils import format_datetime

from fastapi import FastAPI, Request, Response

from certctl.errors import Conflict, NotFound
from certctl.pki.crl import crl_pem
from certctl.services.container import Services
from certctl.services.crls import PublishedCrl

DER_TYPE = "application/pkix-crl"
PEM_TYPE = "application/x-pem-file"
MAX_AGE_CEILING = 3600


def _parse(crl_file: str) -> tuple[str, bool, bool]:
    """(CA id, delta?, PEM?) from ``<id>.crl``, ``<id>.pem``, ``<id>-delta.crl`` or ``<id>-delta.pem``."""
    stem, _, extension = crl_file.rpartition(".")
    if extension not in ("crl", "pem") or not stem:
        raise NotFound("unknown CRL file; use /crl/<ca id>.crl, .pem or -delta.crl")
    delta = stem.endswith("-delta")
    ca_id = stem.removesuffix("-delta")
    if not ca_id:
        raise NotFound("unknown CRL file; use /crl/<ca id>.crl, .pem or -delta.crl")
    return ca_id, delta, extension == "pem"


def install(app: FastAPI, services: Services) -> None:
    @app.get("/crl/{crl_file}", include_in_schema=False)
    async def crl(crl_file: str, request: Request) -> Response:
        ca_id, delta, pem = _parse(crl_file)
        try:
            published = await services.crls.current(ca_id, delta=delta)
        except Conflict as exc:
            raise NotFound(f"no CRL is published for CA {ca_id!r}: {exc.message}") from exc
        return _respond(published, pem=pem, request=request, services=services)


def _respond(published: PublishedCrl, *, pem: bool, request: Request, services: Services) -> Response:
    etag = f'"{published.ca_id}-{published.number}{"-pem" if pem else ""}"'
    max_age = services.crls.schedule.max_age_seconds(
        next_update=published.next_update, now=services.context.clock.now(), ceiling=MAX_AGE_CEILING
    )
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(published.this_update, usegmt=True),
        "Cache-Control": f"public, max-age={max_age}",
    }
    if etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    if pem:
        return Response(crl_pem(published.der), media_type=PEM_TYPE, headers=headers)
    return Response(published.der, media_type=DER_TYPE, headers=headers)
