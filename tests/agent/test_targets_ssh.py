"""The agentless ``ssh`` target against a real OpenSSH server and a real nginx on loopback.

The "remote" host is this machine: the target logs in to sshd over SFTP and writes the files nginx
serves, runs ``nginx -t`` and ``nginx -s reload`` remotely, and checks over TLS what nginx serves.
"""

from __future__ import annotations

import asyncio
import fcntl
import grp
import json
import pwd
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest
from pydantic import SecretStr

import certctl.agent.deploy
from certctl.agent.deploy.base import DeployResult, Material, Outcome, StepFailed
from certctl.agent.deploy.remote import RemoteHost
from certctl.agent.targets import TargetConfigError, parse_options, secret_fields, target_type
from certctl.agent.targets.common import FileMode, Snapshots, TlsVerify
from certctl.agent.targets.ssh import MISSING_EXTRA, SSH, SshDeployer, SshOptions
from support.daemons_ssh import Nginx, SshServer, free_port, start_nginx, start_sshd
from support.material import TestCa as DeployCa  # aliased: pytest would try to collect Test*

T = TypeVar("T")
Test = TypeVar("Test", bound=Callable[..., object])


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def with_daemons(test: Test) -> Test:
    """The test logs in to a real sshd and deploys for a real nginx."""
    marked: Test = pytest.mark.peer("nginx")(pytest.mark.peer("sshd")(test))
    return marked


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DeployCa:
    return DeployCa(tmp_path_factory.mktemp("ssh-ca"))


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, ca: DeployCa) -> Iterator[Nginx]:
    server = start_nginx(tmp_path_factory.mktemp("nginx"), ca.material("127.0.0.1"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def site(nginx: Nginx, ca: DeployCa) -> Material:
    """Fresh material A installed directly and served by nginx: the state each test starts from."""
    material = ca.material("127.0.0.1")
    nginx.install(material)
    return material


def ssh_options(sshd: SshServer, nginx: Nginx, **overrides: Any) -> SshOptions:
    raw: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "username": "root",
        "private_key": sshd.client_key,
        "known_host_key": sshd.host_key_line,
        "certificate_path": str(nginx.certificate),
        "key_path": str(nginx.key),
        "test_command": nginx.test_argv,
        "reload_command": nginx.reload_argv,
        "verify": TlsVerify(port=nginx.port, attempts=20, delay_seconds=0.1),
        "connect_timeout_seconds": 10,
    }
    raw.update(overrides)
    return SshOptions.model_validate(raw)


def deploy(
    options: SshOptions, state_dir: Path, material: Material, *, dry_run: bool = False
) -> DeployResult:
    return run(SSH.build(options, state_dir).deploy(material, dry_run=dry_run))


def installed(nginx: Nginx) -> tuple[str, str]:
    return nginx.certificate.read_text(), nginx.key.read_text()


def snapshots(state_dir: Path) -> list[Path]:
    root = state_dir / "snapshots"
    return sorted(root.iterdir()) if root.exists() else []


@with_daemons
def test_deploy_installs_new_certificate_and_nginx_serves_it(
    sshd: SshServer, nginx: Nginx, site: Material, ca: DeployCa, tmp_path: Path
) -> None:
    new = ca.material("127.0.0.1")
    result = deploy(ssh_options(sshd, nginx), tmp_path / "state", new)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert result.served_fingerprint == new.fingerprint_sha256
    assert nginx.wait_until_serving(new.fingerprint_sha256) == new.fingerprint_sha256
    assert installed(nginx) == (new.fullchain_pem, new.private_key_pem)
    assert nginx.key.stat().st_mode & 0o777 == 0o600
    assert not [item for item in nginx.key.parent.iterdir() if item.name.endswith(".tmp")]
    [snapshot] = snapshots(tmp_path / "state")
    assert snapshot.stat().st_mode & 0o777 == 0o700
    assert all(item.stat().st_mode & 0o777 == 0o600 for item in snapshot.iterdir())
    manifest = json.loads((snapshot / "manifest.json").read_text())["files"]
    assert [entry["path"] for entry in manifest] == [str(nginx.certificate), str(nginx.key)]
    assert (snapshot / manifest[1]["stored"]).read_text() == site.private_key_pem
    assert new.private_key_pem not in result.message + " ".join(result.steps)


@with_daemons
def test_same_material_again_is_unchanged(
    sshd: SshServer, nginx: Nginx, site: Material, ca: DeployCa, tmp_path: Path
) -> None:
    new = ca.material("127.0.0.1")
    options = ssh_options(sshd, nginx)
    assert deploy(options, tmp_path, new).outcome is Outcome.SUCCEEDED

    again = deploy(options, tmp_path, new)

    assert again.outcome is Outcome.UNCHANGED, again.message
    assert len(snapshots(tmp_path)) == 1


@with_daemons
def test_failing_reload_rolls_back_and_nginx_keeps_serving_the_previous(
    sshd: SshServer, nginx: Nginx, site: Material, ca: DeployCa, tmp_path: Path
) -> None:
    before = installed(nginx)
    result = deploy(ssh_options(sshd, nginx, reload_command=["false"]), tmp_path, ca.material("127.0.0.1"))

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert "false exited 1" in result.message
    assert installed(nginx) == before
    assert nginx.serves() == site.fingerprint_sha256


@with_daemons
def test_failed_verification_restores_and_reloads_again(
    sshd: SshServer, nginx: Nginx, site: Material, ca: DeployCa, tmp_path: Path
) -> None:
    """nginx did reload the new files here, so only the second reload brings the previous one back."""
    before = installed(nginx)
    nowhere = TlsVerify(port=free_port(), attempts=2, delay_seconds=0)
    result = deploy(ssh_options(sshd, nginx, verify=nowhere), tmp_path, ca.material("127.0.0.1"))

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert result.steps[-1] == f"{' '.join(nginx.reload_argv)} (previous files): ok"
    assert installed(nginx) == before
    assert nginx.wait_until_serving(site.fingerprint_sha256) == site.fingerprint_sha256


@with_daemons
def test_wrong_host_key_fails_and_changes_nothing(
    sshd: SshServer, nginx: Nginx, site: Material, ca: DeployCa, tmp_path: Path
) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    before = installed(nginx)

    result = deploy(ssh_options(sshd, nginx, known_host_key=impostor), tmp_path, ca.material("127.0.0.1"))

    assert result.outcome is Outcome.FAILED
    assert result.message == (
        f"ssh root@127.0.0.1:{sshd.port}: the server's host key does not match known_host_key"
    )
    assert installed(nginx) == before
    assert snapshots(tmp_path) == []


@with_daemons
def test_key_not_authorized_fails(
    sshd: SshServer, nginx: Nginx, site: Material, ca: DeployCa, tmp_path: Path
) -> None:
    before = installed(nginx)
    result = deploy(
        ssh_options(sshd, nginx, private_key=sshd.stranger_key), tmp_path, ca.material("127.0.0.1")
    )

    assert result.outcome is Outcome.FAILED
    assert result.message == f"ssh root@127.0.0.1:{sshd.port}: authentication failed for user 'root'"
    assert installed(nginx) == before


@with_daemons
def test_unreadable_private_key_fails_without_echoing_it(
    sshd: SshServer, nginx: Nginx, site: Material, ca: DeployCa, tmp_path: Path
) -> None:
    garbled = sshd.client_key.replace("A", "B")
    result = deploy(ssh_options(sshd, nginx, private_key=garbled), tmp_path, ca.material("127.0.0.1"))

    assert result.outcome is Outcome.FAILED
    assert result.message == "private_key is not a readable unencrypted OpenSSH or PEM private key"
    assert snapshots(tmp_path) == []


@with_daemons
def test_dry_run_reports_and_changes_nothing(
    sshd: SshServer, nginx: Nginx, site: Material, ca: DeployCa, tmp_path: Path
) -> None:
    before = installed(nginx)
    result = deploy(ssh_options(sshd, nginx), tmp_path, ca.material("127.0.0.1"), dry_run=True)

    assert result.outcome is Outcome.DRY_RUN
    assert result.message == f"would replace {nginx.certificate}, {nginx.key}"
    assert installed(nginx) == before
    assert snapshots(tmp_path) == []


@with_daemons
def test_owner_and_group_by_name_are_resolved_remotely(
    sshd: SshServer, nginx: Nginx, site: Material, ca: DeployCa, tmp_path: Path
) -> None:
    chain = nginx.certificate.parent / "chain.pem"
    chain.unlink(missing_ok=True)
    nobody, nogroup = pwd.getpwnam("nobody"), grp.getgrgid(pwd.getpwnam("nobody").pw_gid)
    options = ssh_options(
        sshd,
        nginx,
        chain_path=str(chain),
        chain_mode=FileMode(owner="nobody", group=nogroup.gr_name, mode=0o640),
        key_mode=FileMode(owner="0", group="0"),
    )
    new = ca.material("127.0.0.1")

    result = deploy(options, tmp_path, new)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    status = chain.stat()
    assert (status.st_uid, status.st_gid, status.st_mode & 0o777) == (nobody.pw_uid, nogroup.gr_gid, 0o640)
    assert chain.read_text() == new.chain_pem
    assert nginx.key.stat().st_mode & 0o777 == 0o600


@with_daemons
def test_unknown_owner_fails_before_anything_is_switched(
    sshd: SshServer, nginx: Nginx, site: Material, ca: DeployCa, tmp_path: Path
) -> None:
    before = installed(nginx)
    options = ssh_options(sshd, nginx, certificate_mode=FileMode(owner="no-such-user-here"))

    result = deploy(options, tmp_path, ca.material("127.0.0.1"))

    assert result.outcome is Outcome.FAILED
    assert result.message == "user 'no-such-user-here' does not exist on the remote host (nothing changed)"
    assert installed(nginx) == before
    assert not [item for item in nginx.key.parent.iterdir() if item.name.endswith(".tmp")]


@with_daemons
def test_snapshots_keep_only_the_newest(
    sshd: SshServer, nginx: Nginx, site: Material, ca: DeployCa, tmp_path: Path
) -> None:
    options = ssh_options(sshd, nginx, snapshots=Snapshots(keep=2))
    for _ in range(3):
        assert deploy(options, tmp_path, ca.material("127.0.0.1")).outcome is Outcome.SUCCEEDED

    assert len(snapshots(tmp_path)) == 2


@with_daemons
def test_check_confirms_directories_and_config_test(sshd: SshServer, nginx: Nginx, tmp_path: Path) -> None:
    summary = run(SSH.build(ssh_options(sshd, nginx), tmp_path).check())

    assert summary.startswith(f"ssh root@127.0.0.1:{sshd.port}: host key matches; ")
    assert f"directories present: {nginx.certificate.parent}" in summary
    assert summary.endswith(f"{' '.join(nginx.test_argv)}: ok")


@with_daemons
def test_check_reports_a_missing_directory(sshd: SshServer, nginx: Nginx, tmp_path: Path) -> None:
    options = ssh_options(sshd, nginx, key_path=str(tmp_path / "absent" / "site.key"))

    with pytest.raises(StepFailed, match=r"missing remote directory .*/absent$"):
        run(SSH.build(options, tmp_path).check())


def test_mismatched_material_fails_before_connecting(ca: DeployCa, tmp_path: Path) -> None:
    first, second = ca.material("a.example"), ca.material("b.example")
    mixed = Material(first.certificate_pem, first.chain_pem, second.private_key_pem, first.fingerprint_sha256)
    options = SshOptions(
        host="127.0.0.1",
        port=free_port(),
        username="root",
        password=SecretStr("unused"),
        known_host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA",
        certificate_path="/srv/site.crt",
        key_path="/srv/site.key",
    )

    result = deploy(options, tmp_path, mixed)

    assert (result.outcome, result.message) == (
        Outcome.FAILED,
        "the private key does not match the certificate",
    )


def test_a_second_deployment_to_the_same_target_is_refused(ca: DeployCa, tmp_path: Path) -> None:
    options = parse_options("ssh", _minimal_raw())
    assert isinstance(options, SshOptions)
    tmp_path.chmod(0o700)
    with (tmp_path / "deploy.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = deploy(options, tmp_path, ca.material("127.0.0.1"))

    assert (result.outcome, result.message) == (
        Outcome.FAILED,
        "another deployment to this target is running",
    )


def test_missing_ssh_extra_is_one_readable_failure(
    monkeypatch: pytest.MonkeyPatch, ca: DeployCa, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "asyncssh", None)
    monkeypatch.delitem(sys.modules, "certctl.agent.deploy.remote")
    monkeypatch.delattr(certctl.agent.deploy, "remote", raising=False)
    options = parse_options("ssh", _minimal_raw())
    assert isinstance(options, SshOptions)

    assert isinstance(options, SshOptions)
    result = deploy(options, tmp_path, ca.material("127.0.0.1"))

    assert (result.outcome, result.message) == (Outcome.FAILED, MISSING_EXTRA)


def _minimal_raw(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "host": "host.example",
        "username": "deploy",
        "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n-----END OPENSSH PRIVATE KEY-----\n",
        "known_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA comment",
        "certificate_path": "/etc/nginx/tls/site.crt",
        "key_path": "/etc/nginx/tls/site.key",
    }
    raw.update(overrides)
    return raw


def test_registered_as_agentless_with_secret_fields() -> None:
    assert target_type("ssh") is SSH
    assert SSH.agentless
    assert secret_fields("ssh") == {"private_key", "password"}
    options = parse_options("ssh", _minimal_raw())
    assert "secret" not in repr(options)
    assert isinstance(SSH.build(options, Path("/unused")), SshDeployer)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"private_key": None}, "ssh option options: one of private_key or password is required"),
        ({"known_host_key": "AAAA"}, "ssh option known_host_key: must be the server's public host key line"),
        ({"known_host_key": None}, "ssh option known_host_key: Input should be a valid string"),
        ({"host": "a b"}, "ssh option host: 'a b' is not a hostname or IP address"),
        ({"key_path": "site.key"}, "ssh option key_path: 'site.key' is not an absolute path"),
        ({"reload_command": ["nginx -s reload; rm"]}, "ssh option reload_command: command item"),
        ({"key_path": "/etc/nginx/tls/site.crt"}, "ssh option options: certificate_path, key_path and chain"),
        ({"strict_host_key_checking": False}, "ssh option strict_host_key_checking: Extra inputs"),
    ],
)
def test_options_are_validated(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(TargetConfigError) as caught:
        parse_options("ssh", _minimal_raw(**overrides))
    assert str(caught.value).startswith(message)
    assert "secret" not in str(caught.value)


class _SftpWithoutPosixRename:
    """Stands in for an SFTP server that lacks the ``posix-rename@openssh.com`` extension."""

    def __init__(self) -> None:
        self.files = {"/srv/site.crt": b"old", "/srv/.site.crt.tmp": b"new"}

    async def posix_rename(self, old: str, new: str) -> None:
        raise asyncssh.SFTPOpUnsupported("posix-rename not supported")

    async def exists(self, path: str) -> bool:
        return path in self.files

    async def remove(self, path: str) -> None:
        del self.files[path]

    async def rename(self, old: str, new: str) -> None:
        if new in self.files:
            raise asyncssh.SFTPFailure("target exists")
        self.files[new] = self.files.pop(old)


def test_switch_falls_back_to_plain_rename_without_the_extension() -> None:
    sftp = _SftpWithoutPosixRename()
    host = RemoteHost(None, sftp, command_timeout=1)  # type: ignore[arg-type]

    line = run(host.switch("/srv/.site.crt.tmp", "/srv/site.crt"))

    assert sftp.files == {"/srv/site.crt": b"new"}
    assert line == "installed /srv/site.crt (server lacks posix-rename: replaced non-atomically)"
