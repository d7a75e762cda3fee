"""Pure rules: profiles, lifecycle states, the role catalogue, settings parsing, the key envelope."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certctl.domain.lifecycle import CertificateStatus, status_for_validity
from certctl.domain.profiles import Profile, eku_violations, key_violations, ttl_violations
from certctl.domain.rbac import DEFAULT_ROLES, PERMISSIONS, permissions_for_roles, unknown_roles
from certctl.errors import ConfigurationError
from certctl.keys.envelope import MasterKey, SealError, load_master_key
from certctl.settings import Settings, parse_listen

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("algorithm", "size", "ok"),
    [
        ("RSA", 2048, True),
        ("RSA", 1024, False),
        ("ECDSA", 256, True),
        ("ECDSA", 224, False),
        ("Ed25519", 256, False),
    ],
)
def test_key_rules(algorithm: str, size: int, ok: bool) -> None:
    assert (key_violations(Profile(name="p"), algorithm=algorithm, size=size) == []) is ok


def test_ttl_and_eku_rules() -> None:
    profile = Profile(name="p", max_ttl=timedelta(days=90))
    assert ttl_violations(profile, timedelta(days=90)) == []
    assert "exceeds the profile maximum of 90 days" in ttl_violations(profile, timedelta(days=91))[0]
    assert ttl_violations(profile, timedelta(0)) == ["validity must be positive"]
    assert eku_violations(profile, ("serverAuth",)) == []
    assert eku_violations(profile, ("clientAuth",))


def test_status_follows_not_after() -> None:
    window = timedelta(days=30)
    assert (
        status_for_validity(not_after=NOW + timedelta(days=31), now=NOW, expiring_within=window) == "Active"
    )
    assert status_for_validity(not_after=NOW + timedelta(days=29), now=NOW, expiring_within=window) == (
        CertificateStatus.EXPIRING
    )
    assert status_for_validity(not_after=NOW, now=NOW, expiring_within=window) == CertificateStatus.EXPIRED


def test_role_catalogue() -> None:
    assert DEFAULT_ROLES["admin"] == frozenset(PERMISSIONS)
    assert "cert.read" not in DEFAULT_ROLES["auditor"]
    assert {"audit.read", "audit.export"} <= DEFAULT_ROLES["auditor"]
    assert not any(p.startswith("auth.key") for p in DEFAULT_ROLES["operator"])
    assert DEFAULT_ROLES["viewer"] <= DEFAULT_ROLES["operator"]
    assert permissions_for_roles(["nobody"]) == frozenset()
    assert unknown_roles(["admin", "wizard"]) == ["wizard"]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("127.0.0.1:8443", ("127.0.0.1", 8443)), ("[::1]:8080", ("::1", 8080)), (":9000", ("127.0.0.1", 9000))],
)
def test_parse_listen(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize("text", ["localhost", "1.2.3.4:x", "1.2.3.4:70000"])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_listen(text)


def test_settings_refuse_placeholder_token_and_build_urls(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BOOTSTRAP_TOKEN"):
        Settings(bootstrap_token="changeme")
    settings = Settings(data_dir=tmp_path, http_listen="0.0.0.0:8080")
    assert settings.resolved_public_http_url == "http://127.0.0.1:8080"
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    secret = "a-long-random-token-1234"
    assert secret not in repr(Settings(bootstrap_token=secret, master_key=secret))


def test_envelope_round_trip_and_binding() -> None:
    key = MasterKey(os.urandom(32))
    sealed = key.seal(b"secret", aad=b"row:1")
    assert key.open(sealed, aad=b"row:1") == b"secret"
    with pytest.raises(SealError):
        key.open(sealed, aad=b"row:2")
    with pytest.raises(SealError):
        MasterKey(os.urandom(32)).open(sealed, aad=b"row:1")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealError):
        key.open(tampered, aad=b"row:1")
    assert "redacted" in repr(key)


def test_master_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    first = load_master_key(env_value=None, key_file=None, data_dir=tmp_path)
    path = tmp_path / "master.key"
    assert path.stat().st_mode & 0o777 == 0o600
    sealed = first.seal(b"x", aad=b"a")
    assert load_master_key(env_value=None, key_file=None, data_dir=tmp_path).open(sealed, aad=b"a") == b"x"
    env_key = base64.b64encode(os.urandom(32)).decode()
    assert load_master_key(env_value=env_key, key_file=None, data_dir=tmp_path) is not None
    with pytest.raises(ConfigurationError, match="32 bytes"):
        load_master_key(env_value=base64.b64encode(b"short").decode(), key_file=None, data_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="base64"):
        load_master_key(env_value="***", key_file=None, data_dir=tmp_path)


def test_short_lived_certificates_are_expiring_only_once_renewal_is_due() -> None:
    window = timedelta(days=30)
    not_after = NOW + timedelta(days=5)
    due = NOW + timedelta(days=1)
    assert status_for_validity(not_after=not_after, now=NOW, expiring_within=window, renewal_due_at=due) == (
        CertificateStatus.ACTIVE
    )
    later = NOW + timedelta(days=2)
    assert status_for_validity(
        not_after=not_after, now=later, expiring_within=window, renewal_due_at=due
    ) == (CertificateStatus.EXPIRING)
