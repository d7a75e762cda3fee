"""The ``keystore`` target: PKCS#12 and JKS stores, read back with the real keytool (OpenJDK 17)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from certctl.agent.deploy.base import DeployResult, Material, Outcome
from certctl.agent.targets import TargetConfigError, parse_options, secret_fields
from certctl.agent.targets.keystore import KEYSTORE, KEYTOOL_ENV_NAME, MISSING_EXTRA, KeystoreOptions, holds
from support.material import TestCa as DeployCa  # aliased: pytest would try to collect Test*

T = TypeVar("T")
PASSWORD = "store-password-for-tests"
STORE_TYPES = {"pkcs12": "PKCS12", "jks": "JKS"}
QUICK_START = "-J-XX:TieredStopAtLevel=1"  # a short-lived JVM starts faster without the optimizing JIT
STOREPASS = ("-storepass:env", KEYTOOL_ENV_NAME)
FORMATS = pytest.mark.parametrize("store_format", ["pkcs12", "jks"])


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DeployCa:
    return DeployCa(tmp_path_factory.mktemp("keystore-ca"))


def options_for(path: Path, store_format: str, **overrides: Any) -> KeystoreOptions:
    options: dict[str, Any] = {"path": str(path), "format": store_format, "password": PASSWORD}
    return KeystoreOptions.model_validate(options | overrides)


def deploy(options: KeystoreOptions, state_dir: Path, material: Material) -> DeployResult:
    return run(KEYSTORE.build(options, state_dir).deploy(material))


def keytool(*arguments: str, path: Path, store_format: str) -> str:
    """Run keytool on the store, the password in the environment as the target passes it."""
    completed = subprocess.run(
        [
            "keytool",
            QUICK_START,
            *arguments,
            "-keystore",
            str(path),
            "-storetype",
            STORE_TYPES[store_format],
            *STOREPASS,
        ],
        env={**os.environ, KEYTOOL_ENV_NAME: PASSWORD},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


def listed_entries(path: Path, store_format: str) -> dict[str, str]:
    """Alias -> SHA-256 fingerprint (lower-case hex) of each entry, as ``keytool -list -v`` shows them."""
    return entries_of(keytool("-list", "-v", path=path, store_format=store_format))


def entries_of(output: str) -> dict[str, str]:
    aliases = re.findall(r"^Alias name: (\S+)$", output, re.MULTILINE)
    leaf_fingerprints = re.findall(
        r"^Certificate\[1\]:.*?SHA256: ([0-9A-F:]+)$", output, re.MULTILINE | re.DOTALL
    )
    return {
        alias: fingerprint.replace(":", "").lower()
        for alias, fingerprint in zip(aliases, leaf_fingerprints, strict=True)
    }


def fail_once_command(directory: Path) -> list[str]:
    """A reload that fails the first time it runs (the service refuses the new store) and then works."""
    script = directory / "reload_once.py"
    script.write_text(
        "import pathlib, sys\n"
        "marker = pathlib.Path(sys.argv[1])\n"
        "if marker.exists():\n"
        "    sys.exit(0)\n"
        "marker.touch()\n"
        "print('service refused the keystore')\n"
        "sys.exit(1)\n"
    )
    return [sys.executable, str(script), str(directory / "reloaded-once")]


@pytest.mark.peer("keytool")
@FORMATS
def test_keytool_reads_the_deployed_store(ca: DeployCa, tmp_path: Path, store_format: str) -> None:
    material = ca.material("app.example.test")
    path = tmp_path / f"server.{store_format}"
    options = options_for(path, store_format)

    result = deploy(options, tmp_path / "state", material)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    verbose = keytool("-list", "-v", path=path, store_format=store_format)
    assert entries_of(verbose) == {"certctl": material.fingerprint_sha256}
    assert "Certificate chain length: 2" in verbose
    csr = keytool(
        "-certreq",
        "-alias",
        "certctl",
        "-keypass:env",
        KEYTOOL_ENV_NAME,
        path=path,
        store_format=store_format,
    )
    assert csr.startswith("-----BEGIN NEW CERTIFICATE REQUEST-----")  # the key opens with the store password
    assert path.stat().st_mode & 0o777 == 0o600
    assert any(step.startswith("keytool -list") and step.endswith(": ok") for step in result.steps)
    assert PASSWORD not in repr(result) and PASSWORD not in repr(options)


@pytest.mark.peer("keytool")
@FORMATS
def test_same_material_again_is_unchanged_despite_random_salts(
    ca: DeployCa, tmp_path: Path, store_format: str
) -> None:
    material = ca.material("app.example.test")
    path = tmp_path / f"server.{store_format}"
    options = options_for(path, store_format, validate_with_keytool=False)
    assert deploy(options, tmp_path / "state", material).outcome is Outcome.SUCCEEDED
    installed = path.read_bytes()
    inode = path.stat().st_ino

    again = deploy(options, tmp_path / "state", material)

    assert again.outcome is Outcome.UNCHANGED, again.message
    assert path.read_bytes() == installed and path.stat().st_ino == inode
    renewed = ca.material("app.example.test")
    assert deploy(options, tmp_path / "state", renewed).outcome is Outcome.SUCCEEDED
    assert holds(path.read_bytes(), renewed, store_format=store_format, alias="certctl", password=PASSWORD)


@pytest.mark.peer("keytool")
@FORMATS
def test_refused_reload_puts_the_old_keystore_back(ca: DeployCa, tmp_path: Path, store_format: str) -> None:
    path = tmp_path / f"server.{store_format}"
    before = ca.material("app.example.test")
    first = options_for(path, store_format, validate_with_keytool=False)
    assert deploy(first, tmp_path / "state", before).outcome is Outcome.SUCCEEDED
    old_bytes = path.read_bytes()
    options = options_for(path, store_format, reload_command=fail_once_command(tmp_path))

    result = deploy(options, tmp_path / "state", ca.material("app.example.test"))

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert "service refused the keystore" in result.message
    assert path.read_bytes() == old_bytes
    assert listed_entries(path, store_format) == {"certctl": before.fingerprint_sha256}


def test_a_store_keytool_cannot_open_is_rolled_back(ca: DeployCa, tmp_path: Path) -> None:
    path = tmp_path / "server.p12"
    before = ca.material("app.example.test")
    first = options_for(path, "pkcs12", validate_with_keytool=False)
    assert deploy(first, tmp_path / "state", before).outcome is Outcome.SUCCEEDED
    old_bytes = path.read_bytes()
    broken_keytool = options_for(path, "pkcs12", keytool_path="/bin/false")

    result = deploy(broken_keytool, tmp_path / "state", ca.material("app.example.test"))

    assert result.outcome is Outcome.ROLLED_BACK
    assert result.message.startswith("config test failed: /bin/false exited 1")
    assert path.read_bytes() == old_bytes


def test_a_store_with_another_password_is_replaced(ca: DeployCa, tmp_path: Path) -> None:
    material = ca.material("app.example.test")
    path = tmp_path / "server.p12"
    other = options_for(path, "pkcs12", password="another-password", validate_with_keytool=False)
    assert deploy(other, tmp_path / "state", material).outcome is Outcome.SUCCEEDED

    result = deploy(options_for(path, "pkcs12", validate_with_keytool=False), tmp_path / "state", material)

    assert result.outcome is Outcome.SUCCEEDED
    assert holds(path.read_bytes(), material, store_format="pkcs12", alias="certctl", password=PASSWORD)


def test_jks_without_the_optional_library_fails_with_an_install_hint(
    ca: DeployCa, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jks", None)  # makes `import jks` fail as if not installed
    path = tmp_path / "server.jks"

    result = deploy(options_for(path, "jks"), tmp_path / "state", ca.material("app.example.test"))

    assert result.outcome is Outcome.FAILED
    assert MISSING_EXTRA in result.message
    assert not path.exists()


def test_the_password_is_a_secret_and_never_on_the_command_line(tmp_path: Path) -> None:
    options = options_for(tmp_path / "s.p12", "pkcs12")
    deployer = KEYSTORE.build(options, tmp_path)
    assert secret_fields("keystore") == frozenset({"password"})
    assert PASSWORD not in repr(options) and PASSWORD not in repr(deployer)
    assert PASSWORD not in str(options.model_dump())


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"password": "short"}, "at least 6 characters"),
        ({"alias": "Upper"}, "should match pattern"),
        ({"format": "jceks"}, "format"),
        ({"path": "relative.p12"}, "absolute"),
    ],
)
def test_options_are_validated(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(TargetConfigError, match=problem):
        parse_options("keystore", {"path": "/etc/app/server.p12", "password": PASSWORD} | options)
