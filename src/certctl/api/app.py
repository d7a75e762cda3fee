"""The FastAPI application factories: the HTTPS app (API, dashboard) and the plain-HTTP app (AIA)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import RedirectResponse
from starlette.types import ASGIApp

from certctl import __version__
from certctl.api import problems
from certctl.api.middleware import RequestMiddleware
from certctl.api.routers import (
    access,
    acme_eab,
    acme_renewal,
    agents,
    approvals,
    audit,
    breakglass,
    cas,
    catalog,
    certificates,
    deployments,
    federation,
    jobs,
    notifications,
    policies,
    revocation,
    roles,
    system,
    targets,
)
from certctl.auth.config import IdentityConfig
from certctl.auth.session_keys import SigningKeys
from certctl.errors import NotFound
from certctl.protocols.acme.http import AcmeEndpoint
from certctl.protocols.crl.http import install as install_crl_routes
from certctl.protocols.ocsp.http import OcspEndpoint
from certctl.services.container import Services
from certctl.store.db import read_only
from certctl.store.repositories import rows

log = logging.getLogger("certctl.api")

_MODULES = (
    system,
    access,
    roles,
    certificates,
    revocation,
    approvals,
    catalog,
    acme_renewal,
    cas,
    policies,
    audit,
    jobs,
    notifications,
    agents,
    targets,
    deployments,
    acme_eab,
    federation,
    breakglass,
)
ROUTERS = tuple(module.router for module in _MODULES)
"""Every router of the HTTPS app; the permission test walks these."""


def create_app(
    services: Services,
    *,
    bootstrap_token: str | None = None,
    max_body_bytes: int = 1_048_576,
    web: bool = True,
    identity: IdentityConfig | None = None,
) -> ASGIApp:
    identity = identity or IdentityConfig()
    keys = SigningKeys(
        services.context.engine,
        services.context.master_key,
        services.context.clock,
        window=identity.session.lifetime,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await keys.ensure()  # the first start makes the first session signing key
        await keys.load()  # and a start without one fails here
        if identity.breakglass_enabled:
            log.warning("break-glass sign-in is ENABLED at /auth/breakglass; turn it off after the incident")
        yield
        dashboard = getattr(app.state, "dashboard", None)
        if dashboard is not None:
            await dashboard.store.stop_sync()

    app = FastAPI(
        title="certctl",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.bootstrap_token = bootstrap_token
    app.state.identity = identity
    app.state.session_keys = keys
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    _mount_public(app, services)
    if web:
        from certctl.web.routes import install as install_web

        app.state.dashboard = install_web(app, services, identity, keys)
    else:

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/api/v1/docs")

    inner = OcspEndpoint(RequestMiddleware(app, max_body_bytes=max_body_bytes, hsts=True), services)
    return AcmeEndpoint(inner, services, max_body_bytes=max_body_bytes, hsts=True)


def create_public_app(services: Services) -> ASGIApp:
    """Plain HTTP: only what relying parties fetch by convention (RFC 5280 §4.2.1.13 / §4.2.2.1)."""
    app = FastAPI(title="certctl public", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.services = services
    problems.install(app)
    _mount_public(app, services)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    return OcspEndpoint(RequestMiddleware(app, max_body_bytes=65_536, hsts=False), services)


def _mount_public(app: FastAPI, services: Services) -> None:
    install_crl_routes(app, services)

    @app.get("/ca/{ca_file}", include_in_schema=False)
    async def ca_certificate(ca_file: str) -> Response:
        """AIA caIssuers: the issuing CA certificate in DER (``.crt``) or PEM (``.pem``)."""
        ca_id, _, extension = ca_file.rpartition(".")
        if extension not in ("crt", "pem", "der") or not ca_id:
            raise NotFound("unknown CA file; use /ca/<id>.crt or /ca/<id>.pem")
        async with read_only(services.context.engine) as connection:
            row: dict[str, Any] | None = await rows.get(connection, rows.CAS, ca_id)
        if row is None:
            raise NotFound(f"CA {ca_id!r} does not exist")
        if extension == "pem":
            return Response(row["cert_pem"], media_type="application/x-pem-file", headers=_cache_headers())
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        der = x509.load_pem_x509_certificate(row["cert_pem"].encode()).public_bytes(Encoding.DER)
        return Response(der, media_type="application/pkix-cert", headers=_cache_headers())


def _cache_headers() -> dict[str, str]:
    return {"Cache-Control": "public, max-age=3600"}
