"""``/api/v1/notifications``: channels (secrets write-only), routing rules, and deliveries (the
``notification`` jobs) with requeue for dead-lettered ones."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.notification_schemas import ChannelCreate, ChannelUpdate, RuleCreate, RuleUpdate
from certctl.api.serialize import jsonable
from certctl.connectors.notifiers.base import discover_notifiers
from certctl.errors import ValidationFailed
from certctl.services.audit import Actor

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
READ = Need("notification.read")
EDIT = Need("notification.edit")


def _changes(values: dict[str, Any], nullable: tuple[str, ...] = ()) -> dict[str, Any]:
    nulls = sorted(k for k, v in values.items() if v is None and k not in nullable)
    if nulls:
        raise ValidationFailed(f"{', '.join(nulls)} cannot be null")
    return values


@router.get("/types")
async def channel_types(_actor: Actor = Depends(READ)) -> Any:
    """Every notifier type with the JSON schema of its options and of its (write-only) secrets."""
    items = []
    for name, entry in sorted(discover_notifiers().items()):
        if entry.connector is None:
            items.append({"type": name, "broken": True, "error": entry.error})
            continue
        options, secrets = entry.connector.options_schema(), entry.connector.secrets_schema()
        items.append({"type": name, "broken": False, "options": options, "secrets": secrets})
    return {"items": items}


@router.get("/channels")
async def list_channels(services: ServicesDep, _actor: Actor = Depends(READ)) -> Any:
    return {"items": jsonable(await services.notification_config.list_channels())}


@router.post("/channels", status_code=201)
async def create_channel(
    body: ChannelCreate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(EDIT)
) -> Any:
    created = await services.notification_config.create_channel(
        values=body.model_dump(), actor=actor, request=info
    )
    return jsonable(created)


@router.get("/channels/{ref}")
async def get_channel(ref: str, services: ServicesDep, _actor: Actor = Depends(READ)) -> Any:
    return jsonable(await services.notification_config.get_channel(ref))


@router.patch("/channels/{ref}")
async def update_channel(
    ref: str, body: ChannelUpdate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(EDIT)
) -> Any:
    values = _changes(body.model_dump(exclude_unset=True))
    return jsonable(
        await services.notification_config.update_channel(ref=ref, values=values, actor=actor, request=info)
    )


@router.delete("/channels/{ref}", status_code=204)
async def delete_channel(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(EDIT)
) -> Response:
    await services.notification_config.delete_channel(ref=ref, actor=actor, request=info)
    return Response(status_code=204)


@router.post("/channels/{ref}/test")
async def send_test_message(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(EDIT)
) -> Any:
    """Send a test message now; ``delivered`` says whether the channel accepted it, ``error`` why not."""
    return jsonable(await services.notifications.test(ref=ref, actor=actor, request=info))


@router.get("/rules")
async def list_rules(services: ServicesDep, _actor: Actor = Depends(READ)) -> Any:
    return {"items": jsonable(await services.notification_config.list_rules())}


@router.post("/rules", status_code=201)
async def create_rule(
    body: RuleCreate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(EDIT)
) -> Any:
    return jsonable(
        await services.notification_config.create_rule(values=body.model_dump(), actor=actor, request=info)
    )


@router.get("/rules/{ref}")
async def get_rule(ref: str, services: ServicesDep, _actor: Actor = Depends(READ)) -> Any:
    return jsonable(await services.notification_config.get_rule(ref))


@router.patch("/rules/{ref}")
async def update_rule(
    ref: str, body: RuleUpdate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(EDIT)
) -> Any:
    values = _changes(body.model_dump(exclude_unset=True), nullable=("team_id", "owner_id"))
    return jsonable(
        await services.notification_config.update_rule(ref=ref, values=values, actor=actor, request=info)
    )


@router.delete("/rules/{ref}", status_code=204)
async def delete_rule(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(EDIT)
) -> Response:
    await services.notification_config.delete_rule(ref=ref, actor=actor, request=info)
    return Response(status_code=204)


@router.get("/deliveries")
async def list_deliveries(
    services: ServicesDep,
    _actor: Actor = Depends(READ),
    status: str | None = Query(default=None, description="pending, running, succeeded, failed, cancelled"),
    cursor: str | None = Query(default=None, max_length=2000),
    limit: int = Query(default=50, ge=1, le=500),
) -> Any:
    """Newest first; a ``failed`` delivery is dead-lettered (its attempts are used up)."""
    items, next_cursor = await services.notifications.deliveries(status=status, cursor=cursor, limit=limit)
    return {"items": jsonable(items), "next_cursor": next_cursor}


@router.post("/deliveries/{job_id}/requeue")
async def requeue_delivery(
    job_id: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(EDIT)
) -> Any:
    """Run a dead-lettered delivery again with fresh attempts (409 unless it failed or was cancelled)."""
    return jsonable(await services.notifications.requeue(job_id=job_id, actor=actor, request=info))
