"""The deployment primitive on plain files with Python steps: every outcome and what it leaves on disk."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import shutil
import stat
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from certctl.agent.deploy import primitive
from certctl.agent.deploy import snapshots as snapshot_module
from certctl.agent.deploy.base import DeployResult, Material, Outcome, Step, StepFailed
from certctl.agent.deploy.primitive import FileSpec, Plan, apply
from certctl.agent.targets.common import FileMode
from support.material import TestCa


def run(coroutine: Coroutine[Any, Any, DeployResult]) -> DeployResult:
    return asyncio.run(coroutine)


class Steps:
    """Records which steps ran; each can be told to fail its first N runs."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def make(self, name: str, *, failures: int = 0) -> Step:
        remaining = [failures]

        async def step() -> None:
            self.calls.append(name)
            if remaining[0]:
                remaining[0] -= 1
                raise StepFailed(f"{name} broke")

        return step


@pytest.fixture(scope="module")
def materials(tmp_path_factory: pytest.TempPathFactory) -> tuple[Material, Material, Material]:
    ca = TestCa(tmp_path_factory.mktemp("ca"))
    return ca.material("127.0.0.1"), ca.material("127.0.0.1"), ca.material("127.0.0.1")


def plan_for(material: Material, site: Path, steps: Steps | None = None, **overrides: Any) -> Plan:
    fields: dict[str, Any] = {
        "files": [
            FileSpec(path=site / "site.crt", content=material.fullchain_pem.encode()),
            FileSpec(path=site / "site.key", content=material.private_key_pem.encode(), secret=True),
        ],
        "expected_fingerprint": material.fingerprint_sha256,
        "certificate_pem": material.certificate_pem,
        "private_key_pem": material.private_key_pem,
    }
    if steps is not None:
        fields |= {
            "check": steps.make("check"),
            "reload": steps.make("reload"),
            "verify": steps.make("verify"),
        }
    fields |= overrides
    return Plan(**fields)


def leftovers(directory: Path) -> list[str]:
    return [path.name for path in directory.iterdir() if ".certctl-tmp-" in path.name]


def snapshots(state: Path) -> list[Path]:
    root = state / "snapshots"
    return sorted(root.iterdir()) if root.exists() else []


@pytest.fixture
def site(tmp_path: Path) -> Path:
    directory = tmp_path / "site"
    directory.mkdir()
    return directory


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_first_install_writes_files_runs_steps_and_reports(
    materials: tuple[Material, ...], site: Path, state: Path
) -> None:
    material = materials[0]
    steps = Steps()
    result = run(apply(plan_for(material, site, steps), state_dir=state))
    assert result.outcome is Outcome.SUCCEEDED, result
    assert steps.calls == ["check", "reload", "verify"]
    assert result.served_fingerprint == material.fingerprint_sha256
    assert (site / "site.crt").read_text() == material.fullchain_pem
    assert stat.S_IMODE((site / "site.crt").stat().st_mode) == 0o644
    assert stat.S_IMODE((site / "site.key").stat().st_mode) == 0o600
    assert [line for line in result.steps if line.startswith("wrote")] == [
        f"wrote {site / 'site.crt'}",
        f"wrote {site / 'site.key'}",
    ]
    assert leftovers(site) == []
    manifest = json.loads((snapshots(state)[0] / "manifest.json").read_text())
    assert [entry["existed"] for entry in manifest["files"]] == [False, False]
    assert "PRIVATE KEY" not in repr(result)


def test_same_material_again_is_unchanged_and_runs_nothing(
    materials: tuple[Material, ...], site: Path, state: Path
) -> None:
    run(apply(plan_for(materials[0], site), state_dir=state))
    before = snapshots(state)
    steps = Steps()
    result = run(apply(plan_for(materials[0], site, steps), state_dir=state))
    assert result.outcome is Outcome.UNCHANGED
    assert steps.calls == []
    assert result.served_fingerprint is None
    assert snapshots(state) == before


def test_mode_and_owner_come_from_options_then_existing_file_then_default(
    materials: tuple[Material, ...], site: Path, state: Path
) -> None:
    (site / "site.crt").write_text("old")
    os.chmod(site / "site.crt", 0o640)
    nobody, nogroup = pwd.getpwnam("nobody"), grp.getgrgid(pwd.getpwnam("nobody").pw_gid)
    plan = Plan(
        files=[
            FileSpec(path=site / "site.crt", content=materials[0].fullchain_pem.encode()),
            FileSpec(
                path=site / "site.key",
                content=materials[0].private_key_pem.encode(),
                secret=True,
                mode=FileMode(owner="nobody", group=nogroup.gr_name, mode=0o440),
            ),
            FileSpec(path=site / "chain.pem", content=materials[0].chain_pem.encode(), default_mode=0o444),
        ]
    )
    assert run(apply(plan, state_dir=state)).outcome is Outcome.SUCCEEDED
    assert stat.S_IMODE((site / "site.crt").stat().st_mode) == 0o640  # the installed file's mode
    key = (site / "site.key").stat()
    assert (stat.S_IMODE(key.st_mode), key.st_uid, key.st_gid) == (0o440, nobody.pw_uid, nogroup.gr_gid)
    assert stat.S_IMODE((site / "chain.pem").stat().st_mode) == 0o444
    assert (site / "chain.pem").stat().st_uid == os.geteuid()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (FileMode(owner="no-such-user-certctl"), "unknown user 'no-such-user-certctl'"),
        (FileMode(group="no-such-group-certctl"), "unknown group 'no-such-group-certctl'"),
    ],
)
def test_unknown_owner_fails_before_any_change(
    materials: tuple[Material, ...], site: Path, state: Path, mode: FileMode, message: str
) -> None:
    (site / "site.crt").write_text("old")
    plan = Plan(
        files=[FileSpec(path=site / "site.crt", content=materials[0].fullchain_pem.encode(), mode=mode)]
    )
    result = run(apply(plan, state_dir=state))
    assert (result.outcome, result.message) == (Outcome.FAILED, message)
    assert (site / "site.crt").read_text() == "old"
    assert snapshots(state) == []


def test_missing_directory_is_refused_not_created(
    materials: tuple[Material, ...], tmp_path: Path, state: Path
) -> None:
    result = run(apply(plan_for(materials[0], tmp_path / "absent"), state_dir=state))
    assert result.outcome is Outcome.FAILED
    assert (
        result.message
        == f"directory {tmp_path / 'absent'} does not exist (needed for {tmp_path / 'absent' / 'site.crt'})"
    )
    assert not (tmp_path / "absent").exists()


def test_key_that_does_not_match_the_certificate_is_refused(
    materials: tuple[Material, ...], site: Path, state: Path
) -> None:
    first, second, _ = materials
    plan = plan_for(first, site, private_key_pem=second.private_key_pem)
    result = run(apply(plan, state_dir=state))
    assert (result.outcome, result.message) == (
        Outcome.FAILED,
        "the private key does not match the certificate's public key",
    )
    assert list(site.iterdir()) == []


def test_pem_block_that_does_not_parse_is_refused_without_echoing_it(site: Path, state: Path) -> None:
    garbage = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n"
    result = run(
        apply(Plan(files=[FileSpec(path=site / "k.pem", content=garbage, secret=True)]), state_dir=state)
    )
    assert result.outcome is Outcome.FAILED
    assert result.message == f"{site / 'k.pem'}: PEM block 1 (private key) does not parse"
    assert not (site / "k.pem").exists()


@pytest.mark.parametrize(("failing", "reload_runs"), [("check", 1), ("reload", 2), ("verify", 2)])
def test_failure_after_switch_restores_files_and_reloads_again(
    materials: tuple[Material, ...], site: Path, state: Path, failing: str, reload_runs: int
) -> None:
    old, new, _ = materials
    run(apply(plan_for(old, site), state_dir=state))
    os.chmod(site / "site.crt", 0o604)
    steps = Steps()
    plan = plan_for(new, site, steps, **{failing: steps.make(failing, failures=1)})
    result = run(apply(plan, state_dir=state))
    assert result.outcome is Outcome.ROLLED_BACK, result
    named = {"check": "config test", "reload": "reload", "verify": "verification"}[failing]
    assert result.message == f"{named} failed: {failing} broke; previous files restored"
    assert steps.calls.count("reload") == reload_runs
    assert steps.calls[-1] == "reload"  # the server is reloaded onto the restored files
    assert (site / "site.crt").read_text() == old.fullchain_pem
    assert (site / "site.key").read_text() == old.private_key_pem
    assert stat.S_IMODE((site / "site.crt").stat().st_mode) == 0o604
    assert result.served_fingerprint is None
    assert leftovers(site) == []


def test_rollback_removes_files_that_did_not_exist(
    materials: tuple[Material, ...], site: Path, state: Path
) -> None:
    steps = Steps()
    result = run(
        apply(plan_for(materials[0], site, steps, check=steps.make("check", failures=1)), state_dir=state)
    )
    assert result.outcome is Outcome.ROLLED_BACK
    assert list(site.iterdir()) == []


def test_reload_failing_again_after_restore_is_rollback_failed(
    materials: tuple[Material, ...], site: Path, state: Path
) -> None:
    run(apply(plan_for(materials[0], site), state_dir=state))
    steps = Steps()
    result = run(
        apply(plan_for(materials[1], site, steps, reload=steps.make("reload", failures=2)), state_dir=state)
    )
    assert result.outcome is Outcome.ROLLBACK_FAILED
    assert result.message == "reload failed: reload broke; reload after restoring failed too: reload broke"
    assert (site / "site.crt").read_text() == materials[0].fullchain_pem  # files are back all the same


def test_restore_failing_is_rollback_failed(materials: tuple[Material, ...], site: Path, state: Path) -> None:
    run(apply(plan_for(materials[0], site), state_dir=state))

    async def check_that_loses_the_snapshot() -> None:
        shutil.rmtree(state / "snapshots")
        raise StepFailed("config broken")

    result = run(apply(plan_for(materials[1], site, check=check_that_loses_the_snapshot), state_dir=state))
    assert result.outcome is Outcome.ROLLBACK_FAILED
    assert result.message.startswith(
        "config test failed: config broken; restoring the previous files failed too"
    )


def test_switch_failure_restores_without_reload(
    materials: tuple[Material, ...], site: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(apply(plan_for(materials[0], site), state_dir=state))
    real_replace = os.replace
    failed: list[str] = []

    def replace(source: Any, target: Any) -> None:
        if str(target).endswith("site.key") and not failed:
            failed.append(str(target))
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    steps = Steps()
    result = run(apply(plan_for(materials[1], site, steps), state_dir=state))
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.message == "switching the files failed: No space left on device; previous files restored"
    assert steps.calls == []
    assert (site / "site.crt").read_text() == materials[0].fullchain_pem
    assert leftovers(site) == []


def test_failure_writing_temporary_files_leaves_nothing_behind(
    materials: tuple[Material, ...], site: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(apply(plan_for(materials[0], site), state_dir=state))
    real_write = snapshot_module.write_temporary

    def write_temporary(path: Path, content: bytes, **owner: int) -> Path:
        if path.name == "site.key":
            raise OSError(28, "No space left on device")
        return real_write(path, content, **owner)

    monkeypatch.setattr(primitive, "write_temporary", write_temporary)
    result = run(apply(plan_for(materials[1], site), state_dir=state))
    assert (result.outcome, result.message) == (
        Outcome.FAILED,
        "cannot write a temporary file: No space left on device",
    )
    assert sorted(path.name for path in site.iterdir()) == ["site.crt", "site.key"]
    assert (site / "site.crt").read_text() == materials[0].fullchain_pem


def test_snapshots_hold_previous_files_and_are_pruned(
    materials: tuple[Material, ...], site: Path, state: Path
) -> None:
    versions = [*materials, materials[0]]
    for material in versions:
        assert (
            run(apply(plan_for(material, site), state_dir=state, keep_snapshots=2)).outcome
            is Outcome.SUCCEEDED
        )
    kept = snapshots(state)
    assert len(kept) == 2
    newest = kept[-1]
    assert stat.S_IMODE(newest.stat().st_mode) == 0o700
    manifest = json.loads((newest / "manifest.json").read_text())
    key_entry = manifest["files"][1]
    assert (key_entry["path"], key_entry["existed"], key_entry["mode"]) == (
        str(site / "site.key"),
        True,
        "0600",
    )
    assert (newest / key_entry["stored"]).read_text() == versions[-2].private_key_pem
    assert stat.S_IMODE((newest / key_entry["stored"]).stat().st_mode) == 0o600


def test_secret_snapshot_copy_is_0600_even_when_installed_wider(
    materials: tuple[Material, ...], site: Path, state: Path
) -> None:
    run(apply(plan_for(materials[0], site), state_dir=state))
    os.chmod(site / "site.key", 0o644)
    run(apply(plan_for(materials[1], site), state_dir=state))
    entry = json.loads((snapshots(state)[-1] / "manifest.json").read_text())["files"][1]
    assert entry["mode"] == "0644"
    assert stat.S_IMODE((snapshots(state)[-1] / entry["stored"]).stat().st_mode) == 0o600


def test_dry_run_changes_nothing_and_says_what_it_would_do(
    materials: tuple[Material, ...], site: Path, state: Path
) -> None:
    steps = Steps()
    result = run(apply(plan_for(materials[0], site, steps), state_dir=state, dry_run=True))
    assert result.outcome is Outcome.DRY_RUN
    assert list(site.iterdir()) == [] and snapshots(state) == [] and steps.calls == []
    owner = f"owner {os.geteuid()}:{os.getegid()}"
    assert result.steps == (
        f"would write {site / 'site.crt'} ({len(materials[0].fullchain_pem)} bytes, mode 0644, {owner})",
        f"would write {site / 'site.key'} ({len(materials[0].private_key_pem)} bytes, mode 0600, {owner})",
        "would run config test",
        "would run reload",
        "would run verification",
    )


def test_second_deployment_to_the_same_paths_waits_then_gives_up(
    materials: tuple[Material, ...], site: Path, state: Path
) -> None:
    async def scenario() -> tuple[DeployResult, DeployResult, DeployResult]:
        release = asyncio.Event()
        holding = asyncio.Event()

        async def slow_check() -> None:
            holding.set()
            await release.wait()

        first = asyncio.create_task(apply(plan_for(materials[0], site, check=slow_check), state_dir=state))
        await holding.wait()
        second = await apply(plan_for(materials[1], site, lock_timeout_seconds=0.3), state_dir=state)
        release.set()
        third = await apply(plan_for(materials[2], site), state_dir=state)
        return await first, second, third

    first, second, third = asyncio.run(scenario())
    assert first.outcome is Outcome.SUCCEEDED
    assert second.outcome is Outcome.FAILED
    assert second.message.startswith("another deployment holds the lock on ")
    assert third.outcome is Outcome.SUCCEEDED  # the lock is released afterwards
    assert (site / "site.crt").read_text() == materials[2].fullchain_pem


def test_plan_and_file_spec_reprs_hold_no_key(materials: tuple[Material, ...], site: Path) -> None:
    plan = plan_for(materials[0], site)
    assert "PRIVATE" not in repr(plan)
    assert "PRIVATE" not in repr(plan.files[1])
