"""All use cases wired together once per process, from the settings and the database engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from certctl.auth.agents import AgentAuthenticator
from certctl.auth.api_keys import KeyAuthenticator
from certctl.auth.config import IdentityConfig
from certctl.connectors.issuers.base import discover_issuers
from certctl.domain.agents import DeploymentReason
from certctl.domain.clock import Clock, SystemClock
from certctl.domain.revocation import CrlSchedule
from certctl.errors import ValidationFailed
from certctl.keys.envelope import MasterKey
from certctl.services.access_control import AccessControlService
from certctl.services.acme import AcmeConfig
from certctl.services.acme_server import AcmeServer, build_acme
from certctl.services.agent_work import AgentWorkService
from certctl.services.agents import AgentService
from certctl.services.api_keys import ApiKeyService
from certctl.services.approvals import ApprovalService
from certctl.services.breakglass import BreakGlassService
from certctl.services.ca_material import CaMaterialCache
from certctl.services.cas import CaService
from certctl.services.catalog import ISSUERS, OWNERS, PROFILES, TEAMS, CatalogService
from certctl.services.context import ServiceContext
from certctl.services.crls import CrlService
from certctl.services.deployments import DeploymentService
from certctl.services.holds import approval_tier_guard
from certctl.services.identity import IdentityService
from certctl.services.inventory import InventoryService
from certctl.services.issuance import IssuanceService
from certctl.services.jobs import JobService
from certctl.services.lookups import RowCache
from certctl.services.notification_config import NotificationConfigService
from certctl.services.notification_events import NotificationProducer, NotificationSchedule
from certctl.services.notifications import NotificationService
from certctl.services.ocsp import OcspService
from certctl.services.policies import PolicyService
from certctl.services.renewals import RenewalService
from certctl.services.revocation import RevocationService
from certctl.services.targets import TargetService
from certctl.store.repositories import rows


@dataclass
class Services:
    context: ServiceContext
    authenticator: KeyAuthenticator
    access: AccessControlService
    api_keys: ApiKeyService
    cas: CaService
    issuance: IssuanceService
    approvals: ApprovalService
    inventory: InventoryService
    teams: CatalogService
    owners: CatalogService
    profiles: CatalogService
    issuers: CatalogService
    policies: PolicyService
    profile_cache: RowCache
    issuer_cache: RowCache
    ca_cache: CaMaterialCache
    crls: CrlService
    ocsp: OcspService
    revocation: RevocationService
    jobs: JobService
    renewals: RenewalService
    notification_config: NotificationConfigService
    notifications: NotificationService
    notification_producer: NotificationProducer
    agent_authenticator: AgentAuthenticator
    agents: AgentService
    targets: TargetService
    deployments: DeploymentService
    agent_work: AgentWorkService
    acme: AcmeServer
    breakglass: BreakGlassService
    identity: IdentityService

    def invalidate_caches(self) -> None:
        self.profile_cache.invalidate()
        self.issuer_cache.invalidate()
        self.ca_cache.invalidate()
        self.policies.cache.invalidate()


def build_services(
    *,
    engine: AsyncEngine,
    master_key: MasterKey,
    public_http_url: str,
    clock: Clock | None = None,
    expiring_within: timedelta = timedelta(days=30),
    cache_ttl_seconds: float = 5.0,
    approval_ttl: timedelta = timedelta(hours=72),
    crl_keep_expired: bool = False,
    ocsp_sign_with_ca: bool = False,
    acme: AcmeConfig | None = None,
    identity: IdentityConfig | None = None,
) -> Services:
    context = ServiceContext(
        engine=engine,
        master_key=master_key,
        public_http_url=public_http_url,
        clock=clock or SystemClock(),
        expiring_within=expiring_within,
        cache_ttl_seconds=cache_ttl_seconds,
        approval_ttl=approval_ttl,
    )
    authenticator = KeyAuthenticator(engine)
    ca_cache = CaMaterialCache(master_key, cache_ttl_seconds)
    profile_cache = RowCache(rows.PROFILES, "profile", cache_ttl_seconds)
    issuer_cache = RowCache(rows.ISSUERS, "issuer", cache_ttl_seconds)

    async def check_issuer(connection: AsyncConnection, record: dict[str, Any]) -> dict[str, Any]:
        entry = discover_issuers().get(record["type"])
        if entry is None or entry.connector is None:
            known = ", ".join(sorted(discover_issuers()))
            raise ValidationFailed(f"unknown issuer type {record['type']!r} (available: {known})")
        try:
            options = entry.connector.options_model.model_validate(record["options"])
        except ValueError as exc:
            raise ValidationFailed(f"issuer options are not valid: {exc}") from exc
        ca_ref = getattr(options, "ca", None)
        if ca_ref is not None:
            ca = await rows.find(connection, rows.CAS, ca_ref)
            if ca is None:
                raise ValidationFailed(f"CA {ca_ref!r} does not exist")
            options = options.model_copy(update={"ca": ca["id"]})
        issuer_cache.invalidate()
        return record | {"options": options.model_dump()}

    policies = PolicyService(context)

    async def on_profile_change(_connection: AsyncConnection, record: dict[str, Any]) -> dict[str, Any]:
        profile_cache.invalidate()
        return record

    crls = CrlService(context, ca_cache, CrlSchedule(keep_expired=crl_keep_expired))
    ocsp = OcspService(context, ca_cache, sign_with_ca=ocsp_sign_with_ca)
    issuance = IssuanceService(context, ca_cache, profile_cache, issuer_cache, policies=policies)
    notification_config = NotificationConfigService(context)
    notifications = NotificationService(context, notification_config)
    targets = TargetService(context)
    deployments = DeploymentService(
        context, issuance=issuance, targets=targets, profiles=profile_cache, issuers=issuer_cache
    )

    async def request_agent_keys(certificate_id: str) -> int:
        return await deployments.request_keys(certificate_id=certificate_id, reason=DeploymentReason.RENEWAL)

    revocation = RevocationService(context, crls, on_revoked=ocsp.invalidate)
    agent_authenticator = AgentAuthenticator(engine)
    return Services(
        context=context,
        authenticator=authenticator,
        access=AccessControlService(context, on_change=authenticator.forget),
        api_keys=ApiKeyService(context, authenticator),
        cas=CaService(context, ca_cache),
        issuance=issuance,
        approvals=ApprovalService(
            context, issuance=issuance, profiles=CatalogService(context, PROFILES, prepare=on_profile_change)
        ),
        inventory=InventoryService(context),
        teams=CatalogService(context, TEAMS),
        owners=CatalogService(context, OWNERS),
        profiles=CatalogService(context, PROFILES, prepare=approval_tier_guard(on_profile_change)),
        issuers=CatalogService(context, ISSUERS, prepare=check_issuer),
        policies=policies,
        profile_cache=profile_cache,
        issuer_cache=issuer_cache,
        ca_cache=ca_cache,
        crls=crls,
        ocsp=ocsp,
        revocation=revocation,
        jobs=JobService(context),
        renewals=RenewalService(context, issuance, request_agent_keys=request_agent_keys),
        notification_config=notification_config,
        notifications=notifications,
        notification_producer=NotificationProducer(context, notifications, NotificationSchedule()),
        agent_authenticator=agent_authenticator,
        agents=AgentService(context, on_credentials_change=agent_authenticator.forget),
        targets=targets,
        deployments=deployments,
        agent_work=AgentWorkService(context, issuance=issuance, targets=targets, profiles=profile_cache),
        acme=build_acme(
            context,
            acme or AcmeConfig(),
            master_key=master_key,
            profiles=profile_cache,
            issuance=issuance,
            revocation=revocation,
            ca_cache=ca_cache,
        ),
        breakglass=BreakGlassService(context),
        identity=IdentityService(context, identity),
    )
