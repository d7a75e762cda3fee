"""``/api/v1/issuers/{ref}/renew-by``: ask every certificate of an issuer to be renewed by a deadline
(mass re-issuance, e.g. after a key compromise or a misissuance). ACME clients see it through ACME
Renewal Information (RFC 9773); auto-renewed certificates have their renewal brought forward."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.schemas import Strict
from certctl.api.serialize import jsonable
from certctl.services.audit import Actor

router = APIRouter(prefix="/api/v1/issuers", tags=["catalogue"])


class RenewByRequest(Strict):
    by: AwareDatetime
    """Every certificate of the issuer issued before this request should be renewed by then."""


@router.post("/{ref}/renew-by")
async def renew_by(
    ref: str,
    body: RenewByRequest,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("issuer.edit")),
) -> Any:
    """Stores the deadline (one per issuer; a new request replaces it) and answers how many live
    certificates it covers and how many auto-renewed ones were rescheduled."""
    summary = await services.acme.ari.renew_by(issuer_ref=ref, by=body.by, actor=actor, request=info)
    return jsonable(summary)
