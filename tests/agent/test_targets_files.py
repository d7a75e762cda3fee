"""The plain-files target: every output format, PKCS#12 read back by OpenSSL, commands and rollback."""

from __future__ import annotations

import asyncio
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certctl.agent.deploy.base import Deployer, DeployResult, Material, Outcome, StepFailed
from certctl.agent.targets import TargetConfigError, build_deployer, parse_options, secret_fields
from support.material import TestCa

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("files-ca"))


@pytest.fixture
def out(tmp_path: Path) -> Path:
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def all_outputs(out: Path, **extra: Any) -> dict[str, Any]:
    return {
        "certificate_path": str(out / "cert.pem"),
        "key_path": str(out / "key.pem"),
        "chain_path": str(out / "chain.pem"),
        "fullchain_path": str(out / "fullchain.pem"),
        "pkcs12_path": str(out / "bundle.p12"),
        "pkcs12_password": PASSWORD,
        **extra,
    }


def files_deployer(options: dict[str, Any], state: Path) -> Deployer:
    return build_deployer("files", parse_options("files", options), state_dir=state)


def deploy(deployer: Deployer, material: Material, *, dry_run: bool = False) -> DeployResult:
    return asyncio.run(deployer.deploy(material, dry_run=dry_run))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def openssl_pkcs12_fingerprint(path: Path, password: str) -> str:
    """The leaf in a PKCS#12 file as OpenSSL reads it (proves the format and the password)."""
    certificate = subprocess.run(
        ["openssl", "pkcs12", "-in", str(path), "-passin", f"pass:{password}", "-nokeys", "-clcerts"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    fingerprint = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
        input=certificate,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return fingerprint.decode().split("=", 1)[1].strip().replace(":", "").lower()


@pytest.mark.peer("openssl")
def test_all_outputs_are_written_then_unchanged_then_replaced(ca: TestCa, out: Path, tmp_path: Path) -> None:
    first, second = ca.material("app.example.test"), ca.material("app.example.test")
    deployer = files_deployer(all_outputs(out), tmp_path / "state")

    result = deploy(deployer, first)
    assert result.outcome is Outcome.SUCCEEDED, result
    assert (out / "cert.pem").read_text() == first.certificate_pem
    assert (out / "key.pem").read_text() == first.private_key_pem
    assert (out / "chain.pem").read_text() == first.chain_pem
    assert (out / "fullchain.pem").read_text() == first.fullchain_pem
    assert {name: mode_of(out / name) for name in ("cert.pem", "key.pem", "bundle.p12")} == {
        "cert.pem": 0o644,
        "key.pem": 0o600,
        "bundle.p12": 0o600,
    }
    assert openssl_pkcs12_fingerprint(out / "bundle.p12", PASSWORD) == first.fingerprint_sha256
    key, _, chain = pkcs12.load_key_and_certificates((out / "bundle.p12").read_bytes(), PASSWORD.encode())
    assert key is not None and len(chain) == 1

    # PKCS#12 bytes differ on every write; the installed one is still recognised as the same material.
    assert deploy(deployer, first).outcome is Outcome.UNCHANGED

    result = deploy(deployer, second)
    assert result.outcome is Outcome.SUCCEEDED
    assert openssl_pkcs12_fingerprint(out / "bundle.p12", PASSWORD) == second.fingerprint_sha256
    assert PASSWORD not in repr(result)


def test_pkcs12_without_password_is_unencrypted(ca: TestCa, out: Path, tmp_path: Path) -> None:
    material = ca.material("app.example.test")
    options = {"pkcs12_path": str(out / "bundle.p12")}
    assert deploy(files_deployer(options, tmp_path / "state"), material).outcome is Outcome.SUCCEEDED
    key, certificate, _ = pkcs12.load_key_and_certificates((out / "bundle.p12").read_bytes(), None)
    assert key is not None and certificate is not None
    assert deploy(files_deployer(options, tmp_path / "state"), material).outcome is Outcome.UNCHANGED


def test_password_change_rewrites_the_pkcs12(ca: TestCa, out: Path, tmp_path: Path) -> None:
    material = ca.material("app.example.test")
    deploy(files_deployer(all_outputs(out), tmp_path / "state"), material)
    changed = all_outputs(out, pkcs12_password="another secret")
    assert deploy(files_deployer(changed, tmp_path / "state"), material).outcome is Outcome.SUCCEEDED
    assert (
        pkcs12.load_key_and_certificates((out / "bundle.p12").read_bytes(), b"another secret")[1] is not None
    )


def test_reload_command_runs_and_failed_test_command_rolls_back(
    ca: TestCa, out: Path, tmp_path: Path
) -> None:
    first, second = ca.material("app.example.test"), ca.material("app.example.test")
    marker = tmp_path / "reloaded"
    options = {"fullchain_path": str(out / "fullchain.pem"), "key_path": str(out / "key.pem")}
    with_reload = {**options, "reload_command": ["touch", str(marker)], "test_command": ["true"]}
    result = deploy(files_deployer(with_reload, tmp_path / "state"), first)
    assert result.outcome is Outcome.SUCCEEDED
    assert marker.exists()
    assert result.steps[-2:] == ("true: ok", f"touch {marker}: ok")

    marker.unlink()
    failing = {**with_reload, "test_command": ["false"]}
    result = deploy(files_deployer(failing, tmp_path / "state"), second)
    assert (result.outcome, result.message) == (
        Outcome.ROLLED_BACK,
        "config test failed: false exited 1: (no output); previous files restored",
    )
    assert (out / "fullchain.pem").read_text() == first.fullchain_pem
    assert (out / "key.pem").read_text() == first.private_key_pem
    assert marker.exists()  # reloaded again onto the restored files


def test_configured_file_modes_apply(ca: TestCa, out: Path, tmp_path: Path) -> None:
    options = {
        "certificate_path": str(out / "cert.pem"),
        "key_path": str(out / "key.pem"),
        "certificate_file_mode": {"mode": 0o600},
        "key_file_mode": {"mode": 0o640, "group": "nogroup"},
    }
    assert (
        deploy(files_deployer(options, tmp_path / "state"), ca.material("a.test")).outcome
        is Outcome.SUCCEEDED
    )
    assert (mode_of(out / "cert.pem"), mode_of(out / "key.pem")) == (0o600, 0o640)


def test_dry_run_writes_nothing(ca: TestCa, out: Path, tmp_path: Path) -> None:
    result = deploy(files_deployer(all_outputs(out), tmp_path / "state"), ca.material("a.test"), dry_run=True)
    assert result.outcome is Outcome.DRY_RUN
    assert len([line for line in result.steps if line.startswith("would write ")]) == 5
    assert list(out.iterdir()) == []


def test_material_whose_key_does_not_match_is_refused(ca: TestCa, out: Path, tmp_path: Path) -> None:
    first, second = ca.material("a.test"), ca.material("a.test")
    mixed = Material(
        certificate_pem=first.certificate_pem,
        chain_pem=first.chain_pem,
        private_key_pem=second.private_key_pem,
        fingerprint_sha256=first.fingerprint_sha256,
    )
    mismatch = "the private key does not match the certificate's public key"
    result = deploy(files_deployer(all_outputs(out), tmp_path / "state"), mixed)
    assert (result.outcome, result.message) == (Outcome.FAILED, f"files: {mismatch}")  # building the PKCS#12
    pem_only = {"certificate_path": str(out / "cert.pem"), "key_path": str(out / "key.pem")}
    result = deploy(files_deployer(pem_only, tmp_path / "state"), mixed)
    assert (result.outcome, result.message) == (Outcome.FAILED, mismatch)  # the primitive's own check
    assert list(out.iterdir()) == []


def test_check_reports_directories_and_runs_the_test_command(out: Path, tmp_path: Path) -> None:
    present = files_deployer({"certificate_path": str(out / "c.pem"), "test_command": ["true"]}, tmp_path)
    assert asyncio.run(present.check()) == "files: directories present; true: ok"
    absent = files_deployer({"certificate_path": str(tmp_path / "absent" / "c.pem")}, tmp_path)
    with pytest.raises(StepFailed, match=r"^files: missing directory .*/absent$"):
        asyncio.run(absent.check())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "set at least one of certificate_path, key_path, chain_path, fullchain_path, pkcs12_path"),
        ({"key_path": "/k", "pkcs12_password": "x"}, "pkcs12_password is set but pkcs12_path is not"),
        ({"key_path": "/x", "certificate_path": "/x"}, "key_path and certificate_path name the same file /x"),
        ({"key_path": "/k", "reload_command": []}, "a command needs at least the program"),
        ({"key_path": "/k", "owner": "root"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TargetConfigError) as caught:
        parse_options("files", options)
    assert message in str(caught.value)


def test_password_is_a_secret_field_and_never_shown() -> None:
    assert secret_fields("files") == {"pkcs12_password"}
    options = parse_options("files", {"pkcs12_path": "/b.p12", "pkcs12_password": PASSWORD})
    assert PASSWORD not in repr(options)
