"""The ACME server's parts in one object (what the protocol edge and the runtime hold), and the sweep the
leader runs: spent nonces past their lifetime go, expired orders become invalid, lost validations rerun."""

from __future__ import annotations

from dataclasses import dataclass

from certctl.keys.envelope import MasterKey
from certctl.services.acme import AcmeConfig, AcmeProfiles
from certctl.services.acme_accounts import AcmeAccounts
from certctl.services.acme_ari import AcmeRenewalInfo
from certctl.services.acme_certificates import AcmeCertificates
from certctl.services.acme_eab import AcmeEabKeys
from certctl.services.acme_keychange import AcmeKeyChange
from certctl.services.acme_nonces import NonceBook
from certctl.services.acme_orders import AcmeOrders
from certctl.services.acme_validation import ChallengeValidator
from certctl.services.ca_material import CaMaterialCache
from certctl.services.context import ServiceContext
from certctl.services.issuance import IssuanceService
from certctl.services.lookups import RowCache
from certctl.services.revocation import RevocationService
from certctl.store.db import unit_of_work
from certctl.store.repositories import acme


@dataclass(frozen=True)
class SweepResult:
    nonces_forgotten: int
    orders_expired: int
    validations_rerun: int


@dataclass
class AcmeServer:
    context: ServiceContext
    config: AcmeConfig
    profiles: AcmeProfiles
    nonces: NonceBook
    accounts: AcmeAccounts
    orders: AcmeOrders
    validator: ChallengeValidator
    certificates: AcmeCertificates
    eab: AcmeEabKeys
    ari: AcmeRenewalInfo
    key_change: AcmeKeyChange

    async def sweep(self) -> SweepResult:
        now = self.context.clock.now()
        async with unit_of_work(self.context.engine) as uow:
            forgotten = await acme.forget_spent_nonces(uow.connection, now=now)
            expired = await acme.expire_orders(uow.connection, now=now)
        rerun = await self.validator.rerun_stale()
        return SweepResult(nonces_forgotten=forgotten, orders_expired=expired, validations_rerun=rerun)


def build_acme(
    context: ServiceContext,
    config: AcmeConfig,
    *,
    master_key: MasterKey,
    profiles: RowCache,
    issuance: IssuanceService,
    revocation: RevocationService,
    ca_cache: CaMaterialCache,
) -> AcmeServer:
    eab = AcmeEabKeys(context)
    ari = AcmeRenewalInfo(context)
    return AcmeServer(
        context=context,
        config=config,
        profiles=AcmeProfiles(context, config, profiles),
        nonces=NonceBook(
            engine=context.engine, master_key=master_key, clock=context.clock, ttl=config.nonce_ttl
        ),
        accounts=AcmeAccounts(context, config, eab),
        orders=AcmeOrders(context, config, ari),
        validator=ChallengeValidator(context, config),
        certificates=AcmeCertificates(context, issuance=issuance, revocation=revocation, ca_cache=ca_cache),
        eab=eab,
        ari=ari,
        key_change=AcmeKeyChange(context),
    )
