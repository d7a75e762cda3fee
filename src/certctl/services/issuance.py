"""Issue and renew managed certificates: check the request against the profile and the CA's name
constraints, sign, and store certificate, version and audit row in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from certctl.connectors.issuers.base import IssuanceRequest
from certctl.connectors.issuers.local import LocalIssuer, LocalIssuerOptions
from certctl.domain import profiles as profile_rules
from certctl.domain.ids import new_id
from certctl.domain.lifecycle import CertificateStatus, status_for_validity
from certctl.domain.profiles import Profile
from certctl.domain.renewal import RenewalPolicy, policy_for_lifetime, renewal_due_at
from certctl.errors import (
    Conflict,
    NameConstraintViolation,
    NotFound,
    PolicyViolation,
    ValidationFailed,
)
from certctl.pki.csr import ParsedCsr
from certctl.pki.errors import PkiError
from certctl.pki.export import cert_pem, fingerprint_sha256
from certctl.pki.keys import (
    private_key_to_pem,
)
from certctl.pki.names import check_names, match_san_pattern
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.ca_material import CaMaterial, CaMaterialCache, require_issuing
from certctl.services.context import ServiceContext
from certctl.services.holds import Approved, Held, approval_details, hold_issue, hold_renewal
from certctl.services.issuance_store import (
    Linked,
    NewCertificate,
    public_version,
    store_new_certificates,
    version_key_aad,
)
from certctl.services.issuance_subject import RequestedSubject, key_type_of, requested_subject
from certctl.services.lookups import RowCache
from certctl.services.policies import PolicyService
from certctl.services.policy_facts import policy_facts
from certctl.services.profiles import profile_from_row
from certctl.services.visibility import require_on_certificate, require_to_issue
from certctl.store.db import read_only, unit_of_work
from certctl.store.group_commit import GroupCommitter
from certctl.store.repositories import audit, certificates, renewals

BACKDATE = timedelta(minutes=1)


@dataclass(frozen=True)
class IssueRequest:
    name: str
    issuer: str
    profile: str
    csr_pem: str | None = None
    key_type: str | None = None
    common_name: str | None = None
    sans: tuple[str, ...] = ()
    validity: timedelta | None = None
    ekus: tuple[str, ...] | None = None
    owner_id: str | None = None
    team_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    environment: str = ""
    auto_renew: bool = True
    source: str = "api"
    parsed_csr: ParsedCsr | None = field(default=None, compare=False, repr=False)
    """``csr_pem`` already parsed and its signature verified by the caller (ACME finalize): not again."""


@dataclass(frozen=True)
class Issued:
    certificate: dict[str, Any]
    version: dict[str, Any]
    private_key_pem: str | None


class IssuanceService:
    def __init__(
        self,
        context: ServiceContext,
        ca_cache: CaMaterialCache,
        profiles: RowCache,
        issuers: RowCache,
        *,
        policies: PolicyService,
    ) -> None:
        self._ctx = context
        self._cas = ca_cache
        self._profiles = profiles
        self._issuers = issuers
        self._policies = policies
        self._writer: GroupCommitter[NewCertificate, None] = GroupCommitter(
            context.engine, store_new_certificates, single_is_atomic=True
        )

    async def issue(
        self,
        *,
        request: IssueRequest,
        actor: Actor,
        info: RequestInfo | None = None,
        approved: Approved | None = None,
        linked: Callable[[str, str], tuple[Linked, ...]] | None = None,
    ) -> Issued | Held:
        """Check and sign outside any transaction, then store through the group committer. Under a profile
        that requires approval the checked request is held instead, unless this runs an approved one.
        ``linked``: given the new certificate's id and version id, row changes committed with it."""
        now = self._ctx.clock.now()
        profile_row, issuer_row, ca = await self._resolve(request.profile, request.issuer)
        require_to_issue(actor, "cert.issue", profile=profile_row, issuer=issuer_row)
        profile = profile_from_row(profile_row)
        subject = requested_subject(profile, request)
        validity = request.validity or profile.default_ttl
        ekus = request.ekus if request.ekus is not None else profile.default_ekus
        self._check(profile, ca, subject, validity, ekus)
        facts = policy_facts(request, subject, validity, issuer_row, profile_row)
        warned = await self._policies.enforce(facts, actor=actor, request=info)
        if profile.requires_approval and approved is None:
            return await hold_issue(
                self._ctx,
                request=request,
                names=subject.dns_names + subject.ip_addresses,
                profile_row=profile_row,
                issuer_row=issuer_row,
                actor=actor,
                info=info,
            )
        version, _ = self._sign(ca, subject, now, validity, ekus, profile, new_id("certificate"))
        certificate_id = version["certificate_id"]
        due_at = _renewal_due(version, profile.renewal)
        status = status_for_validity(
            not_after=version["not_after"],
            now=now,
            expiring_within=self._ctx.expiring_within,
            renewal_due_at=due_at,
        )
        record = {
            "id": certificate_id,
            "name": request.name,
            "common_name": subject.common_name or "",
            "sans": list(subject.dns_names + subject.ip_addresses),
            "owner_id": request.owner_id,
            "team_id": request.team_id,
            "tags": request.tags,
            "environment": request.environment,
            "issuer_id": issuer_row["id"],
            "profile_id": profile_row["id"],
            "status": str(status),
            "source": request.source,
            "auto_renew": request.auto_renew,
            "current_version_id": version["id"],
            "not_after": version["not_after"],
            "renewal_due_at": due_at,
            "created_at": now,
            "updated_at": now,
        }
        event = audit_record(
            actor=actor,
            action="certificate.issue",
            resource_type="certificate",
            resource_id=certificate_id,
            at=now,
            request=info,
            details={
                "name": request.name,
                "serial": version["serial"],
                "issuer": issuer_row["name"],
                "profile": profile_row["name"],
                "server_keygen": subject.private_key is not None,
                "policy_warnings": [outcome.as_dict() for outcome in warned],
                **approval_details(approved),
            },
        )
        changes = linked(certificate_id, version["id"]) if linked is not None else ()
        await self._writer.submit(
            NewCertificate(certificate=record, version=version, event=event, linked=changes)
        )
        key_pem = private_key_to_pem(subject.private_key).decode() if subject.private_key else None
        return Issued(certificate=record, version=public_version(version), private_key_pem=key_pem)

    async def renew(
        self,
        *,
        certificate_ref: str,
        csr_pem: str | None,
        actor: Actor,
        info: RequestInfo | None = None,
        approved: Approved | None = None,
        expected_version_id: str | None = None,
    ) -> Issued | Held:
        """Issue a new version now, with the same names, profile and issuer (or hold the renewal, in the
        same transaction, when the profile requires approval and this is not an approved run). With
        ``expected_version_id`` (renewal jobs) the new version lands only if that is still the current
        one: otherwise Conflict, and nothing is written."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            current = await certificates.get(connection, certificate_ref) or await certificates.get_by_name(
                connection, certificate_ref
            )
            if current is None:
                raise NotFound(f"certificate {certificate_ref!r} does not exist")
            require_on_certificate(actor, "cert.renew", current)
            if current["status"] in (CertificateStatus.ARCHIVED, CertificateStatus.REVOKED):
                raise Conflict(
                    f"certificate {current['name']!r} is {current['status']} and cannot be renewed"
                )
            previous = None
            if current["current_version_id"]:
                previous = await certificates.get_version(connection, current["current_version_id"])
            profile_row = await self._profiles.find(connection, current["profile_id"])
            issuer_row = await self._issuers.find(connection, current["issuer_id"])
            profile = profile_from_row(profile_row)
            key_type = None
            if (
                csr_pem is None
                and previous is not None
                and previous["csr_pem"]
                and previous["key_sealed"] is None
            ):
                csr_pem = previous["csr_pem"]
            if csr_pem is None:
                key_type = key_type_of(previous)
            request = IssueRequest(
                name=current["name"],
                issuer=issuer_row["id"],
                profile=profile_row["id"],
                csr_pem=csr_pem,
                key_type=key_type,
                common_name=current["common_name"] or None,
                sans=tuple(current["sans"]),
            )
            subject = requested_subject(profile, request, names_from_record=True)
            ca = await self._cas.load(connection, _ca_ref(issuer_row))
            if not issuer_row["enabled"]:
                raise Conflict(f"issuer {issuer_row['name']!r} is disabled")
            validity = profile.default_ttl
            if previous is not None:
                validity = min(previous["not_after"] - previous["not_before"] - BACKDATE, profile.max_ttl)
            ekus = profile.default_ekus
            self._check(profile, ca, subject, validity, ekus)
            facts = policy_facts(request, subject, validity, issuer_row, profile_row, record=current)
            warned = await self._policies.enforce(facts, actor=actor, request=info, connection=connection)
            if profile.requires_approval and approved is None:
                return await hold_renewal(
                    connection,
                    self._ctx,
                    certificate=current,
                    csr_pem=csr_pem,
                    profile_row=profile_row,
                    actor=actor,
                    info=info,
                )
            version, _ = self._sign(ca, subject, now, validity, ekus, profile, current["id"])
            due_at = _renewal_due(version, profile.renewal)
            status = status_for_validity(
                not_after=version["not_after"],
                now=now,
                expiring_within=self._ctx.expiring_within,
                renewal_due_at=due_at,
            )
            changes = {
                "current_version_id": version["id"],
                "not_after": version["not_after"],
                "renewal_due_at": due_at,
                "status": str(status),
                "updated_at": now,
            }
            await certificates.insert_version(connection, version)
            if expected_version_id is None:
                await certificates.update_certificate(connection, current["id"], changes)
            elif not await renewals.swap_current_version(
                connection,
                certificate_id=current["id"],
                expected_version_id=expected_version_id,
                values=changes,
            ):
                raise Conflict(f"certificate {current['name']!r} was renewed meanwhile")
            await audit.append(
                connection,
                [
                    audit_record(
                        actor=actor,
                        action="certificate.renew" if previous is not None else "certificate.issue",
                        resource_type="certificate",
                        resource_id=current["id"],
                        at=now,
                        request=info,
                        details={
                            "serial": version["serial"],
                            "previous_version": current["current_version_id"],
                            "policy_warnings": [outcome.as_dict() for outcome in warned],
                            **approval_details(approved),
                        },
                    )
                ],
            )
        key_pem = private_key_to_pem(subject.private_key).decode() if subject.private_key else None
        return Issued(certificate=current | changes, version=public_version(version), private_key_pem=key_pem)

    async def _resolve(
        self, profile_ref: str, issuer_ref: str
    ) -> tuple[dict[str, Any], dict[str, Any], CaMaterial]:
        """Profile, issuer and signing CA: from the in-process caches when warm (no database round trip
        on the hot path), else loaded in one short read-only connection."""
        profile_row = self._profiles.peek(profile_ref)
        issuer_row = self._issuers.peek(issuer_ref)
        ca = self._cas.peek(_ca_ref(issuer_row)) if issuer_row is not None else None
        if profile_row is None or issuer_row is None or ca is None:
            async with read_only(self._ctx.engine) as connection:
                try:
                    profile_row = await self._profiles.find(connection, profile_ref)
                    issuer_row = await self._issuers.find(connection, issuer_ref)
                except NotFound as exc:
                    raise ValidationFailed(exc.message) from exc
                ca = await self._cas.load(connection, _ca_ref(issuer_row))
        if not issuer_row["enabled"]:
            raise Conflict(f"issuer {issuer_row['name']!r} is disabled")
        return profile_row, issuer_row, ca

    def _check(
        self,
        profile: Profile,
        ca: CaMaterial,
        subject: RequestedSubject,
        validity: timedelta,
        ekus: tuple[str, ...],
    ) -> None:
        if not subject.dns_names and not subject.ip_addresses:
            raise ValidationFailed("a certificate needs at least one DNS name or IP address")
        problems = profile_rules.key_violations(
            profile, algorithm=subject.key_info.algorithm, size=subject.key_info.size
        )
        problems += profile_rules.ttl_violations(profile, validity)
        problems += profile_rules.eku_violations(profile, ekus)
        if subject.ip_addresses and not profile.allow_ip_sans:
            problems.append(f"profile {profile.name!r} does not allow IP addresses")
        if profile.san_patterns:
            for name in subject.dns_names:
                if not any(match_san_pattern(name, pattern) for pattern in profile.san_patterns):
                    problems.append(f"name {name!r} matches none of the profile's SAN patterns")
        if problems:
            raise PolicyViolation("; ".join(problems), extra={"violations": problems})
        outside: list[str] = []
        for constraints in ca.constraints:
            outside += check_names(
                constraints, dns_names=subject.dns_names, ip_addresses=subject.ip_addresses, emails=()
            )
        if outside:
            raise NameConstraintViolation("; ".join(outside), extra={"violations": outside})

    def _sign(
        self,
        ca: CaMaterial,
        subject: RequestedSubject,
        now: Any,
        validity: timedelta,
        ekus: tuple[str, ...],
        profile: Profile,
        certificate_id: str,
    ) -> tuple[dict[str, Any], Any]:
        ca_key = require_issuing(ca)
        not_before = now - BACKDATE
        not_after = not_before + validity
        if not_after > ca.certificate.not_valid_after_utc:
            raise PolicyViolation(f"the validity would outlast the issuing CA {ca.name!r}; ask for less")
        request = IssuanceRequest(
            public_key=subject.public_key,
            common_name=subject.common_name,
            dns_names=subject.dns_names,
            ip_addresses=subject.ip_addresses,
            emails=(),
            not_before=not_before,
            not_after=not_after,
            ekus=ekus,
            must_staple=profile.must_staple,
        )
        base = self._ctx.public_http_url
        try:
            issued = LocalIssuer(LocalIssuerOptions(ca=ca.id)).sign(
                ca=ca,
                ca_key=ca_key,
                request=request,
                urls=(f"{base}/crl/{ca.id}.crl", f"{base}/ca/{ca.id}.crt", f"{base}/ocsp"),
            )
        except PkiError as exc:
            raise PolicyViolation(exc.message) from exc
        certificate = issued.certificate
        key_sealed = None
        version_id = new_id("version")
        if subject.private_key is not None:
            key_sealed = self._ctx.master_key.seal(
                private_key_to_pem(subject.private_key), aad=version_key_aad(version_id)
            )
        version = {
            "id": version_id,
            "certificate_id": certificate_id,
            "issuer_ca_id": ca.id,
            "serial": format(certificate.serial_number, "x"),
            "not_before": certificate.not_valid_before_utc,
            "not_after": certificate.not_valid_after_utc,
            "fingerprint_sha256": fingerprint_sha256(certificate),
            "cert_pem": cert_pem(certificate),
            "chain_pem": issued.chain_pem,
            "csr_pem": subject.csr_pem,
            "key_algorithm": subject.key_info.algorithm,
            "key_size": subject.key_info.size,
            "key_sealed": key_sealed,
            "revoked_at": None,
            "revocation_reason": None,
            "created_at": now,
        }
        return version, certificate


def _renewal_due(version: dict[str, Any], policy: RenewalPolicy) -> Any:
    """Stored with each version so the renewal scan is an indexed range query (auto_renew is checked
    by the scan, so turning it back on later needs no recomputation). ``policy`` is the profile's as it
    is when the version is issued: a later change of the profile applies from the next version on."""
    lifetime = version["not_after"] - version["not_before"]
    return renewal_due_at(
        not_before=version["not_before"],
        not_after=version["not_after"],
        policy=policy_for_lifetime(policy, lifetime),
        certificate_id=version["certificate_id"],
    )


def _ca_ref(issuer_row: dict[str, Any]) -> str:
    if issuer_row["type"] != LocalIssuer.type_name:
        raise ValidationFailed(f"issuer type {issuer_row['type']!r} cannot issue here")
    return LocalIssuerOptions.model_validate(issuer_row["options"]).ca
