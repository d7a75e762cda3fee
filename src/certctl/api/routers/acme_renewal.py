"""``/api/v1/issuers/{ref}/renew-by``: ask every certificate of an issuer to be renewed by a deadline
(mass re-issuance, e.g. after a key compromise or a misissuance). ACME clients see it through ACME
Renewal Information (RFC 9773); auto-renewed certificates have their renewal brought forward."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, Field, field_validator

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.schemas import Strict
from certctl.api.serialize import jsonable
from certctl.services.audit import Actor

router = APIRouter(prefix="/api/v1/issuers", tags=["catalogue"])


class RenewByRequest(Strict):
    by: AwareDatetime
    """Every certificate of the issuer issued before this request should be renewed by then."""
    explanation_url: str | None = Field(default=None, max_length=2000)
    """An http(s) page explaining the re-issuance, shown to ACME clients as ``explanationURL``."""

    @field_validator("explanation_url")
    @classmethod
    def _web_page(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
                raise ValueError("explanation_url must be an http or https URL")
            if "@" in parts.netloc:  # the page is public: no credentials in it
                raise ValueError("explanation_url must not carry a user name or password")
        return value


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
    summary = await services.acme.ari.renew_by(
        issuer_ref=ref, by=body.by, actor=actor, request=info, explanation_url=body.explanation_url
    )
    return jsonable(summary)
