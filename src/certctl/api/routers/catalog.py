"""``/api/v1/profiles``, ``/issuers``, ``/teams``, ``/owners``: what certificates refer to."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.routers.approvals import HELD, held_response
from certctl.api.schemas import (
    IssuerCreate,
    IssuerUpdate,
    OwnerCreate,
    OwnerUpdate,
    ProfileCreate,
    ProfileUpdate,
    TeamCreate,
    TeamUpdate,
)
from certctl.api.serialize import jsonable
from certctl.connectors.issuers.base import discover_issuers
from certctl.connectors.issuers.local import LocalIssuerOptions
from certctl.errors import ValidationFailed
from certctl.services.audit import Actor
from certctl.store.db import read_only
from certctl.store.repositories import rows

router = APIRouter(prefix="/api/v1", tags=["catalogue"])


def _no_nulls(values: dict[str, Any]) -> dict[str, Any]:
    nulls = [k for k, v in values.items() if v is None]
    if nulls:
        raise ValidationFailed(f"{', '.join(nulls)} cannot be null")
    return values


@router.get("/profiles")
async def list_profiles(services: ServicesDep, actor: Actor = Depends(Need("profile.read"))) -> Any:
    return {"items": jsonable(await services.profiles.list(actor=actor))}


@router.post("/profiles", status_code=201)
async def create_profile(
    body: ProfileCreate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("profile.create"))
) -> Any:
    return jsonable(await services.profiles.create(values=body.model_dump(), actor=actor, request=info))


@router.get("/profiles/{ref}")
async def get_profile(ref: str, services: ServicesDep, actor: Actor = Depends(Need("profile.read"))) -> Any:
    return jsonable(await services.profiles.get(ref, actor=actor))


@router.patch("/profiles/{ref}", responses=HELD)
async def update_profile(
    ref: str,
    body: ProfileUpdate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("profile.edit")),
) -> Any:
    values = _no_nulls(body.model_dump(exclude_unset=True))
    if body.rules is not None:
        values["rules"] = body.rules.model_dump()  # the whole rule set: rules left out take their defaults
    held = await services.approvals.hold_profile_change(ref=ref, values=values, actor=actor, info=info)
    if held is not None:
        return held_response(held)
    return jsonable(await services.profiles.update(ref=ref, values=values, actor=actor, request=info))


@router.delete("/profiles/{ref}", status_code=204, responses=HELD)
async def delete_profile(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("profile.delete"))
) -> Response:
    held = await services.approvals.hold_profile_delete(ref=ref, actor=actor, info=info)
    if held is not None:
        return held_response(held)
    await services.profiles.delete(ref=ref, actor=actor, request=info)
    return Response(status_code=204)


@router.get("/issuers")
async def list_issuers(services: ServicesDep, actor: Actor = Depends(Need("issuer.read"))) -> Any:
    return {"items": jsonable(await services.issuers.list(actor=actor))}


@router.get("/issuer-types")
async def issuer_types(actor: Actor = Depends(Need("issuer.read"))) -> Any:
    """Installed issuer connectors with the JSON schema of their options; broken ones with their error."""
    items = []
    for name, entry in sorted(discover_issuers().items()):
        items.append(
            {
                "type": name,
                "broken": entry.broken,
                "error": entry.error,
                "options_schema": entry.connector.options_schema() if entry.connector else None,
            }
        )
    return {"items": items}


@router.post("/issuers", status_code=201)
async def create_issuer(
    body: IssuerCreate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("issuer.create"))
) -> Any:
    return jsonable(await services.issuers.create(values=body.model_dump(), actor=actor, request=info))


@router.get("/issuers/{ref}")
async def get_issuer(ref: str, services: ServicesDep, actor: Actor = Depends(Need("issuer.read"))) -> Any:
    return jsonable(await services.issuers.get(ref, actor=actor))


@router.patch("/issuers/{ref}")
async def update_issuer(
    ref: str,
    body: IssuerUpdate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("issuer.edit")),
) -> Any:
    values = _no_nulls(body.model_dump(exclude_unset=True))
    result = await services.issuers.update(ref=ref, values=values, actor=actor, request=info)
    services.issuer_cache.invalidate()
    return jsonable(result)


@router.delete("/issuers/{ref}", status_code=204)
async def delete_issuer(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("issuer.delete"))
) -> Response:
    await services.issuers.delete(ref=ref, actor=actor, request=info)
    services.issuer_cache.invalidate()
    return Response(status_code=204)


@router.post("/issuers/{ref}/test")
async def check_issuer(ref: str, services: ServicesDep, actor: Actor = Depends(Need("issuer.edit"))) -> Any:
    """Check that the issuer can sign right now (for ``local``: the CA exists, is active and has its key)."""
    issuer = await services.issuers.get(ref, actor=actor)
    checks: list[dict[str, Any]] = []
    ok = bool(issuer["enabled"])
    checks.append({"check": "enabled", "ok": ok})
    if issuer["type"] == "local":
        options = LocalIssuerOptions.model_validate(issuer["options"])
        async with read_only(services.context.engine) as connection:
            try:
                material = await services.ca_cache.load(connection, options.ca)
                checks.append({"check": "ca-active", "ok": material.status == "active", "ca": material.name})
                checks.append({"check": "ca-key-present", "ok": material.key is not None})
                remaining = material.certificate.not_valid_after_utc - services.context.clock.now()
                checks.append(
                    {"check": "ca-valid", "ok": remaining.total_seconds() > 0, "days_left": remaining.days}
                )
            except Exception as exc:  # reported, not raised: this is a diagnostic
                checks.append({"check": "ca-loads", "ok": False, "error": type(exc).__name__})
    return {"ok": all(c["ok"] for c in checks), "checks": checks}


@router.get("/teams")
async def list_teams(services: ServicesDep, actor: Actor = Depends(Need("team.read"))) -> Any:
    return {"items": jsonable(await services.teams.list())}


@router.post("/teams", status_code=201)
async def create_team(
    body: TeamCreate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("team.create"))
) -> Any:
    return jsonable(await services.teams.create(values=body.model_dump(), actor=actor, request=info))


@router.get("/teams/{ref}")
async def get_team(ref: str, services: ServicesDep, actor: Actor = Depends(Need("team.read"))) -> Any:
    return jsonable(await services.teams.get(ref))


@router.patch("/teams/{ref}")
async def update_team(
    ref: str,
    body: TeamUpdate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("team.edit")),
) -> Any:
    values = _no_nulls(body.model_dump(exclude_unset=True))
    return jsonable(await services.teams.update(ref=ref, values=values, actor=actor, request=info))


@router.delete("/teams/{ref}", status_code=204)
async def delete_team(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("team.delete"))
) -> Response:
    await services.teams.delete(ref=ref, actor=actor, request=info)
    return Response(status_code=204)


async def _owner_values(services: ServicesDep, values: dict[str, Any]) -> dict[str, Any]:
    if "team" in values:
        team_ref = values.pop("team")
        team_id = None
        if team_ref is not None:
            async with read_only(services.context.engine) as connection:
                team = await rows.find(connection, rows.TEAMS, team_ref)
            if team is None:
                raise ValidationFailed(f"team {team_ref!r} does not exist")
            team_id = team["id"]
        values["team_id"] = team_id
    return values


@router.get("/owners")
async def list_owners(services: ServicesDep, actor: Actor = Depends(Need("owner.read"))) -> Any:
    return {"items": jsonable(await services.owners.list())}


@router.post("/owners", status_code=201)
async def create_owner(
    body: OwnerCreate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("owner.create"))
) -> Any:
    values = await _owner_values(services, body.model_dump())
    return jsonable(await services.owners.create(values=values, actor=actor, request=info))


@router.get("/owners/{ref}")
async def get_owner(ref: str, services: ServicesDep, actor: Actor = Depends(Need("owner.read"))) -> Any:
    return jsonable(await services.owners.get(ref))


@router.patch("/owners/{ref}")
async def update_owner(
    ref: str,
    body: OwnerUpdate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("owner.edit")),
) -> Any:
    values = await _owner_values(services, body.model_dump(exclude_unset=True))
    for key in ("name", "email"):
        if key in values and values[key] is None:
            raise ValidationFailed(f"{key} cannot be null")
    return jsonable(await services.owners.update(ref=ref, values=values, actor=actor, request=info))


@router.delete("/owners/{ref}", status_code=204)
async def delete_owner(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("owner.delete"))
) -> Response:
    await services.owners.delete(ref=ref, actor=actor, request=info)
    return Response(status_code=204)
