"""The four-eyes approval queue: list, read, approve, reject and expire held requests.

A request held by :mod:`certctl.services.holds` waits here until a different actor decides. Approving
first records the decision (a compare-and-set on the pending row, with its audit row, so two approvers
cannot both run it) and then carries the request out **as the requester**, with the requester's current
grants: the certificate or profile audit row names the requester and adds ``approved_by``. When the run
fails (the name was taken meanwhile, the requester's key was revoked, the profile now forbids it) the
request ends ``failed`` with the error in ``result`` and the approver gets that error.

Expiry is lazy (every read or decision first expires what is due) and also swept by the server's
maintenance loop, so an expired request is ``expired`` in lists and the dashboard within seconds.
A renewal that is rejected or expires releases its certificate from ``RenewalInProgress`` in the same
transaction (:func:`certctl.services.holds.release_renewal`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from certctl.domain.approvals import ApprovalKind, ApprovalStatus, is_self_decision, refusal_for_state
from certctl.errors import Conflict, Forbidden, NotFound, ValidationFailed
from certctl.services.approval_runs import ApprovedRequestRunner
from certctl.services.audit import SYSTEM, Actor, RequestInfo, audit_record
from certctl.services.catalog import CatalogService
from certctl.services.context import ServiceContext
from certctl.services.holds import Held, changed_fields, hold, release_renewal, requires_approval
from certctl.services.issuance import IssuanceService
from certctl.services.visibility import require_on_catalog
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import approvals, audit, rows
from certctl.store.repositories.approvals import ApprovalQuery


class ApprovalService:
    def __init__(
        self, context: ServiceContext, *, issuance: IssuanceService, profiles: CatalogService
    ) -> None:
        """``profiles`` applies approved profile changes: a catalogue service *without* the approval-tier
        guard that the public one carries (the change is approved by then)."""
        self._ctx = context
        self._runner = ApprovedRequestRunner(context, issuance=issuance, profiles=profiles)

    async def list(
        self,
        *,
        actor: Actor,
        status: Sequence[str] = (),
        kind: str | None = None,
        profile_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, only requests under profiles/issuers the actor's ``approval.read`` grants cover."""
        await self.expire_due()
        scope = actor.access.scope_for("approval.read")
        if scope.nothing:
            return [], None
        query = ApprovalQuery(
            status=tuple(status), kind=kind, profile_id=profile_id, scope=scope, cursor=cursor, limit=limit
        )
        async with read_only(self._ctx.engine) as connection:
            return await approvals.list_approvals(connection, query)

    async def get(self, approval_id: str, *, actor: Actor) -> dict[str, Any]:
        await self.expire_due()
        return await self._visible(approval_id, actor, "approval.read")

    async def approve(
        self, *, approval_id: str, actor: Actor, note: str, info: RequestInfo | None = None
    ) -> dict[str, Any]:
        """Decide yes and carry the request out; the approved request with its ``result``. When the run
        fails, its error is raised and the request is left ``failed``."""
        await self.expire_due()
        row = await self._visible(approval_id, actor, "approval.approve")
        _require_pending(row)
        if is_self_decision(requested_by_id=row["requested_by_id"], decided_by_id=actor.id):
            await self._refuse_self_approval(row, actor, info)
        decided = await self._decide(row, actor, ApprovalStatus.APPROVED, note, info)
        return await self._runner.run(decided, actor, info)

    async def reject(
        self, *, approval_id: str, actor: Actor, note: str, info: RequestInfo | None = None
    ) -> dict[str, Any]:
        """Decide no. The requester may reject (withdraw) its own request: that needs no second person."""
        if not note.strip():
            raise ValidationFailed("a rejection needs a note saying why")
        await self.expire_due()
        row = await self._visible(approval_id, actor, "approval.reject")
        _require_pending(row)
        return await self._decide(row, actor, ApprovalStatus.REJECTED, note, info)

    async def expire_due(self) -> int:
        """Expire every pending request past its time, each with an ``approval.expire`` audit row; an
        expired renewal releases its certificate."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            expired = await approvals.expire_due(uow.connection, now=now)
            events = [
                audit_record(
                    actor=SYSTEM,
                    action="approval.expire",
                    resource_type="approval",
                    resource_id=row["id"],
                    at=now,
                    details={
                        "kind": row["kind"],
                        "summary": row["summary"],
                        "requested_by": row["requested_by"],
                        "expires_at": row["expires_at"].isoformat(),
                    },
                )
                for row in expired
            ]
            await audit.append(uow.connection, events)
            for row in expired:
                await release_renewal(
                    uow.connection, self._ctx, approval=row, outcome="expired", actor=SYSTEM
                )
        return len(expired)

    async def hold_profile_change(
        self, *, ref: str, values: dict[str, Any], actor: Actor, info: RequestInfo | None = None
    ) -> Held | None:
        """Hold a change of a profile that requires approval (turning the flag off included); None when
        the profile is not approval-tier or nothing would change, and the change goes ahead directly."""
        async with unit_of_work(self._ctx.engine) as uow:
            row = await rows.find(uow.connection, rows.PROFILES, ref)
            if row is None or not requires_approval(row):
                return None
            require_on_catalog(actor, "profile.edit", kind="profile", row=row)
            fields = changed_fields(row, values)
            if not fields:
                return None
            if "name" in fields and await rows.get_by_name(uow.connection, rows.PROFILES, values["name"]):
                raise Conflict(f"a profile named {values['name']!r} already exists")
            summary = f"change profile {row['name']!r} ({', '.join(fields)})"
            if "rules" in values and not values["rules"].get("requires_approval", False):
                summary += "; turns approval off"
            return await hold(
                uow.connection,
                self._ctx,
                kind=ApprovalKind.PROFILE_UPDATE,
                actor=actor,
                info=info,
                summary=summary,
                request={"values": values},
                profile_id=row["id"],
                resource_id=row["id"],
            )

    async def hold_profile_delete(
        self, *, ref: str, actor: Actor, info: RequestInfo | None = None
    ) -> Held | None:
        """Hold the deletion of a profile that requires approval; None when it may go ahead directly."""
        async with unit_of_work(self._ctx.engine) as uow:
            row = await rows.find(uow.connection, rows.PROFILES, ref)
            if row is None or not requires_approval(row):
                return None
            require_on_catalog(actor, "profile.delete", kind="profile", row=row)
            used = await rows.certificates_referencing(uow.connection, "profile_id", row["id"])
            if used:
                raise Conflict(f"profile {row['name']!r} is used by {used} certificate(s)")
            return await hold(
                uow.connection,
                self._ctx,
                kind=ApprovalKind.PROFILE_DELETE,
                actor=actor,
                info=info,
                summary=f"delete profile {row['name']!r}",
                request={},
                profile_id=row["id"],
                resource_id=row["id"],
            )

    async def _visible(self, approval_id: str, actor: Actor, permission: str) -> dict[str, Any]:
        """The request if the actor's grants cover its profile/issuer: 404 when it may not even read it,
        403 when it may read but not do ``permission``."""
        async with read_only(self._ctx.engine) as connection:
            row = await approvals.get(connection, approval_id)
        missing = NotFound(f"approval {approval_id!r} does not exist")
        if row is None:
            raise missing
        scope = {"profile_id": row["profile_id"], "issuer_id": row["issuer_id"]}
        if not actor.access.allows("approval.read", **scope) and not actor.access.allows(permission, **scope):
            raise missing
        if not actor.access.allows(permission, **scope):
            raise Forbidden(f"this key lacks the permission {permission!r} for this request's profile")
        return row

    async def _refuse_self_approval(
        self, row: dict[str, Any], actor: Actor, info: RequestInfo | None
    ) -> None:
        event = audit_record(
            actor=actor,
            action="approval.self_approval_refused",
            resource_type="approval",
            resource_id=row["id"],
            at=self._ctx.clock.now(),
            request=info,
            details={"kind": row["kind"], "summary": row["summary"]},
            outcome="denied",
        )
        async with unit_of_work(self._ctx.engine) as uow:
            await audit.append(uow.connection, [event])
        raise Forbidden(
            "you made this request: a different person must approve it (four-eyes rule)",
            extra={"approval_id": row["id"]},
        )

    async def _decide(
        self,
        row: dict[str, Any],
        actor: Actor,
        status: ApprovalStatus,
        note: str,
        info: RequestInfo | None,
    ) -> dict[str, Any]:
        now = self._ctx.clock.now()
        verb = "approve" if status == ApprovalStatus.APPROVED else "reject"
        async with unit_of_work(self._ctx.engine) as uow:
            decided = await approvals.decide(
                uow.connection,
                row["id"],
                status=str(status),
                decided_by=actor.name,
                decided_by_id=actor.id,
                note=note,
                now=now,
            )
            if decided is None:
                latest = await approvals.get(uow.connection, row["id"]) or row
                _require_pending(latest)
                raise Conflict(f"approval {row['id']!r} expired before it could be decided")
            event = audit_record(
                actor=actor,
                action=f"approval.{verb}",
                resource_type="approval",
                resource_id=row["id"],
                at=now,
                request=info,
                details={
                    "kind": row["kind"],
                    "summary": row["summary"],
                    "requested_by": row["requested_by"],
                    "note": note,
                },
            )
            await audit.append(uow.connection, [event])
            if status == ApprovalStatus.REJECTED:
                await release_renewal(
                    uow.connection, self._ctx, approval=decided, outcome="rejected", actor=actor, info=info
                )
        return decided


def _require_pending(row: dict[str, Any]) -> None:
    reason = refusal_for_state(row["status"])
    if reason is not None:
        raise Conflict(f"approval {row['id']!r} cannot be decided: {reason}", extra={"status": row["status"]})
