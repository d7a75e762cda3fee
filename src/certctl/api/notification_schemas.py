"""Request bodies of ``/api/v1/notifications``. Channel ``options`` and ``secrets`` are checked by the
channel type's own models (see ``GET /api/v1/notifications/types``); unknown fields are refused."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from certctl.api.schemas import NAME, NAME_OPT, Strict

ID = Field(min_length=1, max_length=40)


class ChannelCreate(Strict):
    name: str = NAME
    type: str = Field(min_length=1, max_length=40)
    options: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    enabled: bool = True


class ChannelUpdate(Strict):
    name: str | None = NAME_OPT
    options: dict[str, Any] | None = None
    secrets: dict[str, str] | None = Field(default=None, repr=False)
    """Merged over the stored secrets: give only the ones that change."""
    enabled: bool | None = None


class RuleCreate(Strict):
    name: str = NAME
    event_types: list[str] = Field(default_factory=list, max_length=20)
    min_severity: str = Field(default="info", max_length=20)
    channel_ids: list[str] = Field(min_length=1, max_length=50)
    team_id: str | None = Field(default=None, max_length=40)
    owner_id: str | None = Field(default=None, max_length=40)
    enabled: bool = True


class RuleUpdate(Strict):
    name: str | None = NAME_OPT
    event_types: list[str] | None = Field(default=None, max_length=20)
    min_severity: str | None = Field(default=None, max_length=20)
    channel_ids: list[str] | None = Field(default=None, min_length=1, max_length=50)
    team_id: str | None = Field(default=None, max_length=40)
    owner_id: str | None = Field(default=None, max_length=40)
    enabled: bool | None = None
