"""Federated identity: OIDC providers and their group mappings, the users who signed in, their sessions,
and the OIDC day-0 path that makes the first member of the bootstrap groups an admin (once).

Client secrets are sealed under the master key (AES-256-GCM, the provider id as associated data) and
never leave this module except to the token endpoint. Providers are looked up through a small cache
that every change clears, so sign-in does not read the table on every redirect.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.auth.config import IdentityConfig
from certctl.auth.principals import MAPPINGS, USER_PRINCIPAL, custom_roles
from certctl.domain.ids import new_id
from certctl.domain.rbac import BUILTIN_ROLES, ScopeType
from certctl.errors import Conflict, NotFound, ValidationFailed
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.models import OidcFirstAdmin, OidcProvider, User, table_of
from certctl.store.repositories import audit, grants, rows, web_sessions

PROVIDERS = table_of(OidcProvider)
USERS = table_of(User)
FIRST_ADMIN = table_of(OidcFirstAdmin)
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
GROUP_FORMATS = ("list", "comma", "space")
DEFAULT_SCOPES = ("openid", "email", "profile", "groups")
SECRET_FIELDS = ("client_secret_sealed",)
PROVIDER_CACHE_SECONDS = 5.0
"""Provider rows are reused this long per process; a change made elsewhere is seen within it."""


def secret_aad(provider_id: str) -> bytes:
    return f"oidc-client-secret:{provider_id}".encode()


def check_issuer(issuer: str) -> str:
    """An issuer is an https URL (plain http only on a loopback address, for local identity providers),
    with no query or fragment."""
    issuer = issuer.strip()
    try:
        parts = urlsplit(issuer)
    except ValueError as exc:
        raise ValidationFailed("issuer is not a URL") from exc
    if parts.query or parts.fragment or not parts.hostname:
        raise ValidationFailed("issuer must be a URL without query or fragment")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return issuer  # compared exactly with the discovery document and the tokens' iss
    raise ValidationFailed("issuer must use https (plain http is accepted only on a loopback address)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_provider(row: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in row.items() if k not in SECRET_FIELDS}
    view["client_secret_set"] = row.get("client_secret_sealed") is not None
    return view


@dataclass(frozen=True)
class ProviderSettings:
    """What an operator sets on a provider (``None`` leaves a field as it is, on update)."""

    issuer: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    display_name: str | None = None
    scopes: list[str] | None = None
    groups_claim: str | None = None
    groups_format: str | None = None
    allowed_email_domains: list[str] | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class SignedInUser:
    """The outcome of an accepted ID token, before roles are looked at."""

    provider: dict[str, Any]
    subject: str
    email: str
    name: str
    groups: list[str]
    sid: str | None


class IdentityService:
    def __init__(self, context: ServiceContext, config: IdentityConfig | None = None) -> None:
        self._ctx = context
        self.config = config or IdentityConfig()
        self._cache: dict[str, dict[str, Any]] | None = None
        self._cached_at = float("-inf")

    # -- providers -------------------------------------------------------------------------------

    async def providers(self, *, enabled_only: bool = False) -> list[dict[str, Any]]:
        """All providers (sealed secrets included: callers outside this module use ``public_provider``)."""
        if self._cache is None or time.monotonic() - self._cached_at > PROVIDER_CACHE_SECONDS:
            async with read_only(self._ctx.engine) as connection:
                found = await connection.execute(select(PROVIDERS).order_by(PROVIDERS.c.name))
                self._cache = {r["id"]: dict(r) for r in found.mappings()}
            self._cached_at = time.monotonic()
        items = list(self._cache.values())
        return [p for p in items if p["enabled"]] if enabled_only else items

    async def provider(self, ref: str) -> dict[str, Any]:
        for row in await self.providers():
            if ref in (row["id"], row["name"]):
                return row
        raise NotFound(f"OIDC provider {ref!r} does not exist")

    def client_secret(self, provider: dict[str, Any]) -> str | None:
        sealed = provider.get("client_secret_sealed")
        if sealed is None:
            return None
        return self._ctx.master_key.open(sealed, aad=secret_aad(provider["id"])).decode()

    def _forget(self) -> None:
        self._cache = None

    async def create_provider(
        self, *, name: str, settings: ProviderSettings, actor: Actor, request: RequestInfo | None
    ) -> dict[str, Any]:
        if not NAME.match(name):
            raise ValidationFailed("name must be 1-100 characters: lower-case letters, digits, '.', '_', '-'")
        if not settings.issuer or not settings.client_id:
            raise ValidationFailed("issuer and client_id are required")
        now = self._ctx.clock.now()
        provider_id = new_id("oidc_provider")
        record: dict[str, Any] = {
            "id": provider_id,
            "name": name,
            "display_name": settings.display_name or name,
            "issuer": check_issuer(settings.issuer),
            "client_id": _bounded(settings.client_id, "client_id", 255),
            "client_secret_sealed": None,
            "scopes": _scopes(settings.scopes),
            "groups_claim": _claim_path(settings.groups_claim or "groups"),
            "groups_format": _group_format(settings.groups_format or "list"),
            "allowed_email_domains": _domains(settings.allowed_email_domains or []),
            "enabled": True if settings.enabled is None else settings.enabled,
            "created_at": now,
            "updated_at": now,
        }
        if settings.client_secret:
            record["client_secret_sealed"] = self._seal(provider_id, settings.client_secret)
        async with unit_of_work(self._ctx.engine) as uow:
            try:
                await uow.connection.execute(PROVIDERS.insert().values(**record))
            except IntegrityError as exc:
                raise Conflict(f"an OIDC provider named {name!r} already exists") from exc
            await self._audit(
                uow.connection,
                "auth.oidc.provider_create",
                provider_id,
                actor,
                request,
                {"name": name, "issuer": record["issuer"]},
            )
        self._forget()
        return public_provider(record)

    async def update_provider(
        self, ref: str, *, settings: ProviderSettings, actor: Actor, request: RequestInfo | None
    ) -> dict[str, Any]:
        current = await self.provider(ref)
        changes: dict[str, Any] = {}
        if settings.issuer is not None:
            changes["issuer"] = check_issuer(settings.issuer)
        if settings.client_id is not None:
            changes["client_id"] = _bounded(settings.client_id, "client_id", 255)
        if settings.client_secret is not None:
            changes["client_secret_sealed"] = (
                self._seal(current["id"], settings.client_secret) if settings.client_secret else None
            )
        if settings.display_name is not None:
            changes["display_name"] = _bounded(settings.display_name, "display_name", 200)
        if settings.scopes is not None:
            changes["scopes"] = _scopes(settings.scopes)
        if settings.groups_claim is not None:
            changes["groups_claim"] = _claim_path(settings.groups_claim)
        if settings.groups_format is not None:
            changes["groups_format"] = _group_format(settings.groups_format)
        if settings.allowed_email_domains is not None:
            changes["allowed_email_domains"] = _domains(settings.allowed_email_domains)
        if settings.enabled is not None:
            changes["enabled"] = settings.enabled
        if not changes:
            return public_provider(current)
        changes["updated_at"] = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            await uow.connection.execute(
                update(PROVIDERS).where(PROVIDERS.c.id == current["id"]).values(**changes)
            )
            shown = sorted(k for k in changes if k != "updated_at")
            shown = ["client_secret" if k == "client_secret_sealed" else k for k in shown]
            ended = 0
            if changes.get("enabled") is False or "issuer" in changes or "client_id" in changes:
                # Its sessions were opened under settings that no longer hold: they end.
                ended = await web_sessions.end_provider_sessions(uow.connection, current["id"])
            await self._audit(
                uow.connection,
                "auth.oidc.provider_update",
                current["id"],
                actor,
                request,
                {"name": current["name"], "changed": shown, "sessions_ended": ended},
            )
        self._forget()
        return public_provider(current | changes)

    async def delete_provider(self, ref: str, *, actor: Actor, request: RequestInfo | None) -> None:
        """Refused (409) while the provider still has live sessions: revoke them first."""
        current = await self.provider(ref)
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            live = await web_sessions.count_for_provider(uow.connection, current["id"], now=now)
            if live:
                raise Conflict(
                    f"OIDC provider {current['name']!r} still has {live} active session(s); "
                    "disable the provider (which ends them) or revoke them first"
                )
            await uow.connection.execute(delete(PROVIDERS).where(PROVIDERS.c.id == current["id"]))
            await self._audit(
                uow.connection,
                "auth.oidc.provider_delete",
                current["id"],
                actor,
                request,
                {"name": current["name"]},
            )
        self._forget()

    def _seal(self, provider_id: str, secret: str) -> bytes:
        if len(secret) > 1024:
            raise ValidationFailed("client_secret is longer than 1024 characters")
        return self._ctx.master_key.seal(secret.encode(), aad=secret_aad(provider_id))

    # -- group mappings ---------------------------------------------------------------------------

    async def mappings(self, ref: str) -> list[dict[str, Any]]:
        provider = await self.provider(ref)
        async with read_only(self._ctx.engine) as connection:
            found = await connection.execute(
                select(MAPPINGS)
                .where(MAPPINGS.c.provider_id == provider["id"])
                .order_by(MAPPINGS.c.group_name, MAPPINGS.c.role)
            )
            return [dict(r) for r in found.mappings()]

    async def add_mapping(
        self,
        ref: str,
        *,
        group: str,
        role: str,
        scope: ScopeType,
        scope_ref: str | None,
        actor: Actor,
        request: RequestInfo | None,
    ) -> dict[str, Any]:
        """Members of ``group`` get ``role``; sessions of users in that group end (their roles changed)."""
        provider = await self.provider(ref)
        group = _bounded(group, "group", 255)
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            catalogue = dict(BUILTIN_ROLES) | await custom_roles(connection)
            if role not in catalogue:
                raise ValidationFailed(f"unknown role {role!r}")
            scope_id = await _scope_id(connection, scope, scope_ref)
            missing = actor.access.can_grant(catalogue[role], scope=scope, scope_id=scope_id)
            if missing:
                raise ValidationFailed(
                    f"you cannot map permissions you do not hold there: {', '.join(missing)}"
                )
            record = {
                "id": new_id("group_mapping"),
                "provider_id": provider["id"],
                "group_name": group,
                "role": role,
                "scope_type": str(scope),
                "scope_id": scope_id or "",
                "created_by": actor.name,
                "created_at": now,
            }
            try:
                async with connection.begin_nested():
                    await connection.execute(MAPPINGS.insert().values(**record))
            except IntegrityError as exc:
                raise Conflict("this group already maps to this role in this scope") from exc
            ended = await self._end_group_sessions(connection, provider["id"], group)
            await self._audit(
                connection,
                "auth.oidc.mapping_add",
                record["id"],
                actor,
                request,
                {
                    "provider": provider["name"],
                    "group": group,
                    "role": role,
                    "scope": str(scope),
                    "scope_id": scope_id,
                    "sessions_ended": ended,
                },
            )
        return record

    async def remove_mapping(
        self, ref: str, mapping_id: str, *, actor: Actor, request: RequestInfo | None
    ) -> None:
        provider = await self.provider(ref)
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            row = (
                (await connection.execute(select(MAPPINGS).where(MAPPINGS.c.id == mapping_id)))
                .mappings()
                .first()
            )
            if row is None or row["provider_id"] != provider["id"]:
                raise NotFound(f"mapping {mapping_id!r} does not exist on provider {provider['name']!r}")
            await connection.execute(delete(MAPPINGS).where(MAPPINGS.c.id == mapping_id))
            ended = await self._end_group_sessions(connection, provider["id"], row["group_name"])
            await self._audit(
                connection,
                "auth.oidc.mapping_remove",
                mapping_id,
                actor,
                request,
                {
                    "provider": provider["name"],
                    "group": row["group_name"],
                    "role": row["role"],
                    "sessions_ended": ended,
                },
            )

    async def _end_group_sessions(self, connection: AsyncConnection, provider_id: str, group: str) -> int:
        found = await connection.execute(
            select(USERS.c.id, USERS.c.groups).where(USERS.c.provider_id == provider_id)
        )
        members = [(USER_PRINCIPAL, str(uid)) for uid, groups in found.all() if group in (groups or [])]
        return len(await web_sessions.end_sessions(connection, principals=members))

    # -- users ------------------------------------------------------------------------------------

    async def users(self, *, provider_ref: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        statement = select(USERS).order_by(USERS.c.last_login_at.desc()).limit(limit)
        if provider_ref:
            statement = statement.where(USERS.c.provider_id == (await self.provider(provider_ref))["id"])
        async with read_only(self._ctx.engine) as connection:
            return [dict(r) for r in (await connection.execute(statement)).mappings()]

    async def record_sign_in(self, connection: AsyncConnection, signed: SignedInUser) -> dict[str, Any]:
        """Insert or refresh the user row (groups of this sign-in) inside the caller's transaction."""
        now = self._ctx.clock.now()
        provider_id = signed.provider["id"]
        found = (
            (
                await connection.execute(
                    select(USERS).where(USERS.c.provider_id == provider_id, USERS.c.subject == signed.subject)
                )
            )
            .mappings()
            .first()
        )
        values = {"email": signed.email, "name": signed.name, "groups": signed.groups, "last_login_at": now}
        if found is not None:
            await connection.execute(update(USERS).where(USERS.c.id == found["id"]).values(**values))
            return dict(found) | values
        record = {
            "id": new_id("user"),
            "provider_id": provider_id,
            "subject": signed.subject,
            "created_at": now,
        }
        record |= values
        await connection.execute(USERS.insert().values(**record))
        return record

    async def claim_first_admin(
        self, connection: AsyncConnection, user: dict[str, Any], signed: SignedInUser
    ) -> str | None:
        """OIDC day-0: the first user of a bootstrap group gets a global admin grant, once ever (the
        one-row ``oidc_first_admin`` table makes a second claim fail on every replica). Returns the
        group that qualified, or None."""
        groups = self.config.bootstrap_admin_groups
        if not groups:
            return None
        wanted = self.config.bootstrap_admin_provider
        if wanted is not None:
            if wanted not in (signed.provider["id"], signed.provider["name"]):
                return None
        elif len(await self.providers(enabled_only=True)) != 1:
            return None  # several providers and none named: refuse to guess
        matched = next((g for g in groups if g in signed.groups), None)
        if matched is None:
            return None
        taken = (await connection.execute(select(func.count()).select_from(FIRST_ADMIN))).scalar_one()
        if taken:
            return None
        now = self._ctx.clock.now()
        try:
            async with connection.begin_nested():
                await connection.execute(
                    FIRST_ADMIN.insert().values(
                        slot=1,
                        user_id=user["id"],
                        provider_id=signed.provider["id"],
                        group_name=matched,
                        granted_at=now,
                    )
                )
        except IntegrityError:
            return None
        await grants.add_grants(
            connection,
            [
                {
                    "id": new_id("grant"),
                    "principal_type": USER_PRINCIPAL,
                    "principal_id": user["id"],
                    "role": "admin",
                    "scope_type": str(ScopeType.GLOBAL),
                    "scope_id": "",
                    "expires_at": None,
                    "granted_by": "oidc-bootstrap",
                    "created_at": now,
                }
            ],
        )
        return matched

    async def user(self, user_id: str) -> dict[str, Any]:
        """One user with its direct grants (e.g. the OIDC first admin's)."""
        async with read_only(self._ctx.engine) as connection:
            row = (await connection.execute(select(USERS).where(USERS.c.id == user_id))).mappings().first()
            if row is None:
                raise NotFound(f"user {user_id!r} does not exist")
            held = await grants.grants_of(connection, principal_type=USER_PRINCIPAL, principal_id=user_id)
        return dict(row) | {"grants": held}

    async def remove_user_grant(
        self, user_id: str, grant_id: str, *, actor: Actor, request: RequestInfo | None
    ) -> None:
        """Take a directly granted role from a user; the user's sessions end (their roles changed)."""
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            row = await grants.get_grant(connection, grant_id)
            if row is None or (row["principal_type"], row["principal_id"]) != (USER_PRINCIPAL, user_id):
                raise NotFound(f"grant {grant_id!r} does not exist on user {user_id!r}")
            catalogue = dict(BUILTIN_ROLES) | await custom_roles(connection)
            missing = actor.access.can_grant(
                catalogue.get(row["role"], frozenset()),
                scope=ScopeType(row["scope_type"]),
                scope_id=row["scope_id"] or None,
            )
            if missing:
                raise ValidationFailed(
                    f"you cannot revoke permissions you do not hold there: {', '.join(missing)}"
                )
            await grants.remove_grant(connection, grant_id)
            ended = await web_sessions.end_sessions(connection, principals=[(USER_PRINCIPAL, user_id)])
            await self._audit(
                connection,
                "auth.role.revoke",
                grant_id,
                actor,
                request,
                {
                    "user": user_id,
                    "role": row["role"],
                    "scope": row["scope_type"],
                    "sessions_ended": len(ended),
                },
                resource_type="grant",
            )

    # -- sessions ---------------------------------------------------------------------------------

    async def sessions(self, *, principal: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            return await web_sessions.listing(connection, now=self._ctx.clock.now(), principal=principal)

    async def session(self, handle: str) -> dict[str, Any]:
        async with read_only(self._ctx.engine) as connection:
            row = await web_sessions.by_handle(connection, handle)
        if row is None or row["expires_at"] <= self._ctx.clock.now():
            raise NotFound(f"session {handle!r} does not exist")
        return row

    async def revoke_session(self, handle: str, *, actor: Actor, request: RequestInfo | None) -> None:
        row = await self.session(handle)
        async with unit_of_work(self._ctx.engine) as uow:
            if not await web_sessions.remove_handle(uow.connection, handle):
                raise NotFound(f"session {handle!r} does not exist")
            await self._audit(
                uow.connection,
                "auth.session.revoke",
                handle,
                actor,
                request,
                {"principal_type": row["principal_type"], "principal": row["principal_id"]},
                resource_type="web_session",
            )

    async def revoke_sessions_of(
        self,
        principal_type: str,
        principal_id: str,
        *,
        actor: Actor,
        request: RequestInfo | None,
        reason: str,
    ) -> int:
        async with unit_of_work(self._ctx.engine) as uow:
            ended = await web_sessions.end_sessions(
                uow.connection, principals=[(principal_type, principal_id)]
            )
            await self._audit(
                uow.connection,
                "auth.session.revoke_all",
                principal_id,
                actor,
                request,
                {"principal_type": principal_type, "sessions_ended": len(ended), "reason": reason},
                resource_type="web_session",
            )
        return len(ended)

    async def audit_key_rotation(self, key_id: str, *, actor: Actor, request: RequestInfo | None) -> None:
        async with unit_of_work(self._ctx.engine) as uow:
            await self._audit(
                uow.connection,
                "auth.session_key.rotate",
                key_id,
                actor,
                request,
                {},
                resource_type="session_key",
            )

    async def _audit(
        self,
        connection: AsyncConnection,
        action: str,
        resource_id: str,
        actor: Actor,
        request: RequestInfo | None,
        details: dict[str, Any],
        *,
        resource_type: str = "oidc_provider",
    ) -> None:
        record = audit_record(
            actor=actor,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            at=self._ctx.clock.now(),
            request=request,
            details=details,
        )
        await audit.append(connection, [record])


async def _scope_id(connection: AsyncConnection, scope: ScopeType, ref: str | None) -> str | None:
    if scope == ScopeType.GLOBAL:
        if ref:
            raise ValidationFailed("a global mapping takes no scope id")
        return None
    if not ref:
        raise ValidationFailed(f"a {scope} mapping needs the {scope} it applies to")
    table = rows.PROFILES if scope == ScopeType.PROFILE else rows.ISSUERS
    row = await rows.find(connection, table, ref)
    if row is None:
        raise ValidationFailed(f"{scope} {ref!r} does not exist")
    return str(row["id"])


def _bounded(value: str, name: str, limit: int) -> str:
    value = value.strip()
    if not value or len(value) > limit or any(ord(c) < 32 for c in value):
        raise ValidationFailed(f"{name} must be 1-{limit} printable characters")
    return value


def _scopes(scopes: list[str] | None) -> list[str]:
    chosen = list(DEFAULT_SCOPES) if scopes is None else [s.strip() for s in scopes if s.strip()]
    if "openid" not in chosen:
        raise ValidationFailed("scopes must include 'openid'")
    for scope in chosen:
        if len(scope) > 100 or not re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e]+", scope):
            raise ValidationFailed(f"scope {scope[:40]!r} is not a valid OAuth scope token")
    return sorted(set(chosen), key=chosen.index)


def _claim_path(path: str) -> str:
    path = path.strip()
    if not re.fullmatch(r"[A-Za-z0-9_:/.\-]{1,200}", path) or ".." in path or path.startswith("."):
        raise ValidationFailed("groups_claim must be a claim name or a dotted path (e.g. realm_access.roles)")
    return path


def _group_format(value: str) -> str:
    if value not in GROUP_FORMATS:
        raise ValidationFailed(f"groups_format must be one of {', '.join(GROUP_FORMATS)}")
    return value


def _domains(domains: list[str]) -> list[str]:
    clean = []
    for domain in domains:
        domain = domain.strip().lower().lstrip("@")
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?", domain) or ".." in domain:
            raise ValidationFailed(f"{domain[:60]!r} is not a domain name")
        clean.append(domain)
    return sorted(set(clean))


def extract_groups(claims: dict[str, Any], path: str, fmt: str) -> list[str] | None:
    """The groups at a dotted claim path, as a list of strings; None when the claim is absent."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if fmt == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationFailed("the groups claim is not a list of strings")
        found = value
    else:
        if not isinstance(value, str):
            raise ValidationFailed("the groups claim is not a string")
        found = value.split(",") if fmt == "comma" else value.split()
    groups = [g.strip() for g in found if g.strip()]
    if len(groups) > 1000 or any(len(g) > 255 for g in groups):
        raise ValidationFailed("the groups claim is too large")
    return sorted(set(groups))


def email_allowed(provider: dict[str, Any], email: str, verified: Any) -> bool:
    domains = provider.get("allowed_email_domains") or []
    if not domains:
        return True
    if not email or verified is False or email.count("@") != 1:
        return False
    return email.rsplit("@", 1)[1].lower() in domains
