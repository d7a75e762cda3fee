"""Start-up of the control plane: data dir, master key, migrations, TLS, demo data, listeners, workers.

Both listeners (HTTPS for the API and dashboard, plain HTTP for AIA/CRL/OCSP) run in each worker
process. With ``--workers N`` the sockets are bound once and the process forks N workers that share them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn

from certctl.api.app import create_app, create_public_app
from certctl.domain.clock import SystemClock
from certctl.errors import ConfigurationError
from certctl.keys.envelope import MasterKey, load_master_key
from certctl.scheduler.runner import scheduler_loop, worker_loop
from certctl.server.balance import BalancedServer, LoadTable
from certctl.server.coalesce import CoalescingHttpToolsProtocol
from certctl.server.tls_files import TlsFiles, ensure_tls, server_ssl_context
from certctl.services.acme import AcmeConfig
from certctl.services.container import Services, build_services
from certctl.settings import Settings
from certctl.store.db import dispose, make_engine, migrate, unit_of_work
from certctl.store.repositories import audit, certificates

log = logging.getLogger("certctl.server")
SEAL_INTERVAL = 0.5
STATUS_REFRESH_EVERY = 10  # seal ticks: statuses are refreshed every 5 s
CRL_CHECK_EVERY = 120  # seal ticks: CRLs that are stale or past half their validity are reissued every 60 s


@dataclass(frozen=True)
class Prepared:
    settings: Settings
    master_key: MasterKey
    tls: TlsFiles


def prepare(settings: Settings) -> Prepared:
    """Everything done once before listening; raises ConfigurationError with a clear message."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    master_key = load_master_key(
        env_value=settings.master_key, key_file=settings.master_key_file, data_dir=settings.data_dir
    )
    migrate(settings.resolved_database_url)
    host, _ = settings.listen_address
    tls = ensure_tls(
        data_dir=settings.data_dir,
        cert_file=settings.tls_cert_file,
        key_file=settings.tls_key_file,
        listen_host=host,
        now=SystemClock().now(),
    )
    if tls.generated:
        log.info("made a bootstrap CA for the HTTPS listener; clients trust %s", tls.ca_file)
    return Prepared(settings=settings, master_key=master_key, tls=tls)


def services_for(settings: Settings, master_key: MasterKey, *, pool_size: int = 20) -> Services:
    return build_services(
        engine=make_engine(settings.resolved_database_url, pool_size=pool_size),
        master_key=master_key,
        identity=settings.identity(),
        public_http_url=settings.resolved_public_http_url,
        expiring_within=timedelta(days=settings.expiring_threshold_days),
        approval_ttl=timedelta(hours=settings.approval_ttl_hours),
        crl_keep_expired=settings.crl_keep_expired,
        ocsp_sign_with_ca=settings.ocsp_sign_with_ca,
        acme=AcmeConfig(
            default_profile=settings.acme_default_profile,
            http01_port=settings.acme_http01_port,
            tlsalpn01_port=settings.acme_tlsalpn01_port,
            dns_resolver=settings.acme_dns_resolver,
            terms_of_service=settings.acme_terms_of_service,
            website=settings.acme_website,
            issuer=settings.acme_issuer,
            caa_identities=tuple(i.strip() for i in settings.acme_caa_identities.split(",") if i.strip()),
            authz_reuse=timedelta(hours=settings.acme_authz_reuse_hours),
            orders_per_account_hour=settings.acme_orders_per_account_hour,
            failures_per_identifier_hour=settings.acme_failures_per_identifier_hour,
            orders_per_domain_hour=settings.acme_orders_per_domain_hour,
            accounts_per_address_hour=settings.acme_accounts_per_address_hour,
        ),
    )


async def maintenance_loop(services: Services) -> None:
    """Seal the audit chain twice a second (small batches keep writers' latency flat) and refresh
    certificate statuses every few seconds (indexed, set-based). Runs in one worker per process group;
    replicas serialise on the chain head row, so running it on each replica is safe."""
    tick = 0
    while True:
        await asyncio.sleep(SEAL_INTERVAL)
        tick += 1
        try:
            async with unit_of_work(services.context.engine) as uow:
                await audit.seal_pending(uow.connection)
            if tick % STATUS_REFRESH_EVERY == 0:
                now = services.context.clock.now()
                async with unit_of_work(services.context.engine) as uow:
                    await certificates.refresh_statuses(
                        uow.connection, now=now, expiring_from=now + services.context.expiring_within
                    )
                await services.approvals.expire_due()
            if tick % CRL_CHECK_EVERY == 1:
                await services.crls.refresh_due()
                await services.acme.sweep()
        except Exception:  # keep serving; the next tick retries
            log.warning("maintenance tick failed; retrying", exc_info=True)


def bind(address: tuple[str, int]) -> socket.socket:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def serve(
    prepared: Prepared,
    sockets: tuple[socket.socket, socket.socket],
    *,
    leader: bool,
    shared: tuple[tuple[LoadTable, LoadTable], int] | None = None,
) -> None:
    """One worker. ``shared``: the listeners' load tables and this worker's index, when several workers
    share the sockets (``server.balance``)."""
    settings = prepared.settings
    services = services_for(settings, prepared.master_key)
    app = create_app(
        services,
        bootstrap_token=settings.bootstrap_token,
        max_body_bytes=settings.max_body_bytes,
        identity=settings.identity(),
    )
    public_app = create_public_app(services)
    https_config = _listener_config(app, settings)
    https_config.load()
    https_config.ssl = server_ssl_context(prepared.tls, min_version=settings.tls_min_version)
    http_config = _listener_config(public_app, settings)
    if shared is None:
        https_server, http_server = uvicorn.Server(https_config), uvicorn.Server(http_config)
    else:
        (https_table, http_table), index = shared
        https_server = BalancedServer(https_config, table=https_table, index=index)
        http_server = BalancedServer(http_config, table=http_table, index=index)
    gc.freeze()  # start-up objects live forever: keep them out of every later collection
    maintenance = asyncio.create_task(maintenance_loop(services)) if leader else None
    scheduling = [asyncio.create_task(worker_loop(services))]  # jobs run in every worker process
    if leader:  # the lease row then picks one leader among all replicas
        scheduling.append(asyncio.create_task(scheduler_loop(services)))
    try:
        await asyncio.gather(
            https_server.serve(sockets=[sockets[0]]), http_server.serve(sockets=[sockets[1]])
        )
    finally:
        for task in scheduling:
            task.cancel()
        await asyncio.gather(*scheduling, return_exceptions=True)
        if maintenance is not None:
            maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await maintenance
        await dispose(services.context.engine)


def _listener_config(app: Any, settings: Settings) -> uvicorn.Config:
    """A listener's server settings: no access log or Server header, client addresses as connected, each
    response written out in one piece (``server.coalesce``)."""
    return uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        http=CoalescingHttpToolsProtocol,
    )


def run_loop(main: Coroutine[None, None, None]) -> None:
    """uvloop when installed (``certctl[server]`` brings it through uvicorn[standard]), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def run(prepared: Prepared) -> None:
    settings = prepared.settings
    sockets = (bind(settings.listen_address), bind(settings.http_listen_address))
    if settings.workers == 1:
        run_loop(serve(prepared, sockets, leader=True))
        return
    tables = (LoadTable(settings.workers), LoadTable(settings.workers))
    children: list[int] = []
    for index in range(settings.workers):
        pid = os.fork()
        if pid == 0:
            try:
                run_loop(serve(prepared, sockets, leader=index == 0, shared=(tables, index)))
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)


def banner(prepared: Prepared, *, admin_key_file: Path | None) -> str:
    settings = prepared.settings
    host, port = settings.listen_address
    shown = f"[{host}]" if ":" in host else host
    lines = [
        f"certctl dashboard: https://{shown}:{port}/",
        f"  API:             https://{shown}:{port}/api/v1  (OpenAPI at /api/v1/openapi.json)",
        f"  AIA/CRL (HTTP):  {settings.resolved_public_http_url}/",
    ]
    if prepared.tls.ca_file is not None:
        lines.append(f"  TLS CA to trust: {prepared.tls.ca_file.resolve()}")
    if admin_key_file is not None:
        lines.append(f"  admin API key:   {admin_key_file.resolve()}  (sign in to the dashboard with it)")
    return "\n".join(lines)


def print_banner(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
