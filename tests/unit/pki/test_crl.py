"""The direct DER CRL builder, checked by cryptography's own parser and signature verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from cryptography import x509

from certctl.api.revocation_schemas import ReasonName
from certctl.domain.revocation import REVOKE_REASONS, CrlSchedule, RevocationReason, parse_revoke_reason
from certctl.pki.builder import Subject, build_self_signed_ca
from certctl.pki.crl import CrlSpec, RevokedEntry, build_crl, crl_pem, encode_revoked_certificates
from certctl.pki.errors import PkiError
from certctl.pki.keys import PrivateKey, generate_private_key

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
URL = "http://pki.example/crl/ca_1.crl"


def _ca(spec: str = "ecdsa-p256") -> tuple[x509.Certificate, PrivateKey]:
    key = generate_private_key(spec)
    cert = build_self_signed_ca(
        key=key,
        subject=Subject(common_name=f"CRL Test {spec}"),
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=3650),
        path_length=None,
        name_constraints=None,
    )
    return cert, key


def _build(entries: list[RevokedEntry], spec: CrlSpec | None = None, key_spec: str = "ecdsa-p256") -> Any:
    cert, key = _ca(key_spec)
    spec = spec or CrlSpec(
        5, NOW, NOW + timedelta(days=1), URL, freshest_url=URL.replace(".crl", "-delta.crl")
    )
    crl = x509.load_der_x509_crl(build_crl(ca_cert=cert, ca_key=key, spec=spec, entries=entries))
    assert crl.is_signature_valid(cert.public_key())  # type: ignore[arg-type]
    return crl, cert


@pytest.mark.parametrize("key_spec", ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"])
def test_round_trip_with_every_ca_key_type(key_spec: str) -> None:
    crl, cert = _build(
        [RevokedEntry(0x1234, NOW - timedelta(hours=1), 1, NOW - timedelta(days=2))], key_spec=key_spec
    )
    assert crl.issuer == cert.subject
    assert crl.last_update_utc == NOW and crl.next_update_utc == NOW + timedelta(days=1)
    entry = crl.get_revoked_certificate_by_serial_number(0x1234)
    assert entry is not None and entry.revocation_date_utc == NOW - timedelta(hours=1)
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    assert entry.extensions.get_extension_for_class(
        x509.InvalidityDate
    ).value.invalidity_date_utc == NOW - timedelta(days=2)


def test_crl_extensions_full_crl() -> None:
    crl, cert = _build([])
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 5
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.full_name == [x509.UniformResourceIdentifier(URL)]
    freshest = crl.extensions.get_extension_for_class(x509.FreshestCRL).value
    assert freshest[0].full_name == [x509.UniformResourceIdentifier(URL.replace(".crl", "-delta.crl"))]
    with pytest.raises(x509.ExtensionNotFound):
        crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)


def test_delta_crl_carries_a_critical_indicator() -> None:
    crl, _ = _build([RevokedEntry(7, NOW)], spec=CrlSpec(9, NOW, NOW + timedelta(hours=1), URL, delta_of=4))
    indicator = crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert indicator.critical and indicator.value.crl_number == 4
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 9


def test_empty_list_is_absent_not_empty() -> None:
    """RFC 5280 §5.1.2.6: with no revoked certificates the field MUST be absent."""
    assert encode_revoked_certificates([]) == b""
    crl, _ = _build([])
    assert len(crl) == 0


def test_many_entries_keep_order_serials_and_reasons() -> None:
    entries = [
        RevokedEntry(
            serial=(1 << 158) + index if index % 2 else index + 1,
            revoked_at=NOW - timedelta(seconds=index),
            reason=index % 11 if index % 11 != 7 else None,
            invalidity_date=NOW - timedelta(days=1) if index % 5 == 0 else None,
        )
        for index in range(3000)
    ]
    crl, _ = _build(entries)
    parsed = list(crl)
    assert [r.serial_number for r in parsed] == [e.serial for e in entries]
    for revoked, entry in zip(parsed, entries, strict=True):
        assert revoked.revocation_date_utc == entry.revoked_at
        kinds = {type(ext.value) for ext in revoked.extensions}
        assert (x509.CRLReason in kinds) == bool(entry.reason)
        assert (x509.InvalidityDate in kinds) == (entry.invalidity_date is not None)


def test_long_form_lengths_and_boundary_serials() -> None:
    """Serials whose top bit is set need a leading zero octet; entries over 127 octets a long length."""
    entries = [
        RevokedEntry(0x80, NOW),
        RevokedEntry(0xFF, NOW, 1, NOW),
        RevokedEntry((1 << 159) - 1, NOW, 5, NOW),
    ]
    crl, _ = _build(entries)
    assert [r.serial_number for r in crl] == [0x80, 0xFF, (1 << 159) - 1]


def test_times_from_2050_are_generalized_time() -> None:
    later = datetime(2051, 3, 4, 5, 6, 7, tzinfo=UTC)
    spec = CrlSpec(1, later, later + timedelta(days=1), URL)
    crl, _ = _build([RevokedEntry(3, later)], spec=spec)
    assert crl.last_update_utc == later
    assert next(iter(crl)).revocation_date_utc == later


def test_refuses_what_cannot_be_a_crl() -> None:
    cert, key = _ca()
    with pytest.raises(PkiError):
        build_crl(ca_cert=cert, ca_key=key, spec=CrlSpec(1, NOW, NOW, URL), entries=[])
    with pytest.raises(PkiError):
        build_crl(
            ca_cert=cert, ca_key=key, spec=CrlSpec(3, NOW, NOW + timedelta(1), URL, delta_of=3), entries=[]
        )
    with pytest.raises(PkiError):
        encode_revoked_certificates([RevokedEntry(0, NOW)])
    with pytest.raises(PkiError):
        encode_revoked_certificates([RevokedEntry(1 << 1000, NOW)])
    with pytest.raises(PkiError):
        encode_revoked_certificates([RevokedEntry(1, NOW, 7)])
    with pytest.raises(PkiError):
        encode_revoked_certificates([RevokedEntry(1, datetime(2026, 1, 1))])


def test_pem_wraps_the_der() -> None:
    cert, key = _ca()
    der = build_crl(ca_cert=cert, ca_key=key, spec=CrlSpec(1, NOW, NOW + timedelta(1), URL), entries=[])
    text = crl_pem(der)
    assert text.startswith("-----BEGIN X509 CRL-----\n") and all(
        len(line) <= 64 for line in text.splitlines()
    )
    assert (
        x509.load_pem_x509_crl(text.encode()).tbs_certlist_bytes
        == x509.load_der_x509_crl(der).tbs_certlist_bytes
    )


def test_reason_names_and_api_literal_agree() -> None:
    assert get_args(ReasonName) == REVOKE_REASONS
    assert parse_revoke_reason("keyCompromise") is RevocationReason.KEY_COMPROMISE
    for refused in ("certificateHold", "removeFromCRL", "KeyCompromise", ""):
        with pytest.raises(ValueError, match="unknown revocation reason"):
            parse_revoke_reason(refused)


def test_schedule_rules() -> None:
    schedule = CrlSchedule(validity=timedelta(hours=24))
    assert not schedule.due(this_update=NOW, now=NOW + timedelta(hours=11))
    assert schedule.due(this_update=NOW, now=NOW + timedelta(hours=12))
    assert schedule.base_due(base_this_update=None, now=NOW)
    assert not schedule.base_due(base_this_update=NOW, now=NOW + timedelta(hours=23))
    assert schedule.listed_until(NOW) == NOW - timedelta(hours=24)
    assert CrlSchedule(keep_expired=True).listed_until(NOW) is None
    assert schedule.max_age_seconds(next_update=NOW + timedelta(minutes=5), now=NOW) == 300
    assert schedule.max_age_seconds(next_update=NOW + timedelta(days=1), now=NOW) == 3600
    assert schedule.max_age_seconds(next_update=NOW - timedelta(minutes=5), now=NOW) == 0
