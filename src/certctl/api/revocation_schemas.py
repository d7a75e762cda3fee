"""Request bodies of the revocation routes (``/api/v1/certificates/.../revoke``); unknown fields get 422."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, model_validator

from certctl.api.schemas import Strict

ReasonName = Literal[
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
]
"""RFC 5280 §5.3.1 reasons an operator may give (``certctl.domain.revocation.REVOKE_REASONS``)."""

BULK_IDS_MAX = 10_000


class RevokeRequest(Strict):
    reason: ReasonName = "unspecified"
    invalidity_date: AwareDatetime | None = Field(
        default=None, description="When the key was (suspected) compromised; RFC 5280 §5.3.2"
    )


class BulkFilter(Strict):
    issuer: str | None = Field(default=None, min_length=1, max_length=200)
    profile: str | None = Field(default=None, min_length=1, max_length=200)
    owner: str | None = Field(default=None, min_length=1, max_length=200)
    team: str | None = Field(default=None, min_length=1, max_length=200)
    source: str | None = Field(default=None, min_length=1, max_length=32)

    @model_validator(mode="after")
    def _not_everything(self) -> BulkFilter:
        if not self.model_dump(exclude_none=True):
            raise ValueError("give at least one of issuer, profile, owner, team, source")
        return self


class BulkRevokeRequest(RevokeRequest):
    ids: list[str] | None = Field(default=None, min_length=1, max_length=BULK_IDS_MAX)
    filter: BulkFilter | None = None
    cursor: str | None = Field(default=None, max_length=2000, description="Continue a filter run")
    limit: int | None = Field(default=None, ge=1, le=100_000, description="Stop after this many matches")

    @model_validator(mode="after")
    def _one_selection(self) -> BulkRevokeRequest:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give either ids or filter, not both and not neither")
        if self.ids is not None and (self.cursor is not None or self.limit is not None):
            raise ValueError("cursor and limit apply to a filter only")
        return self
