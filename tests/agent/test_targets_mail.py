"""The ``postfix`` and ``dovecot`` targets against a private Postfix and Dovecot on loopback.

Verification goes through STARTTLS (SMTP for Postfix, IMAP for Dovecot) and plain TLS (IMAPS).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from certctl.agent.deploy.base import DeployResult, Material, Outcome
from certctl.agent.targets import TargetConfigError, parse_options
from certctl.agent.targets.common import TlsVerify
from certctl.agent.targets.mail import DOVECOT, POSTFIX, DovecotOptions, PostfixOptions, combined_pem
from support.daemons_mail import Dovecot, Postfix, free_port, start_dovecot, start_postfix
from support.material import TestCa as DeployCa  # aliased: pytest would try to collect Test*

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def retrying(port: int, **overrides: Any) -> dict[str, Any]:
    return TlsVerify(port=port, attempts=60, delay_seconds=0.05, **overrides).model_dump()


def unreachable() -> dict[str, Any]:
    return TlsVerify(port=free_port(), attempts=1, delay_seconds=0).model_dump()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DeployCa:
    return DeployCa(tmp_path_factory.mktemp("mail-ca"))


@pytest.fixture(scope="module")
def postfix(ca: DeployCa) -> Iterator[Postfix]:
    server = start_postfix(ca.material("127.0.0.1"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dovecot(ca: DeployCa) -> Iterator[Dovecot]:
    server = start_dovecot(ca.material("127.0.0.1"))
    try:
        yield server
    finally:
        server.stop()


def postfix_options(postfix: Postfix, **overrides: Any) -> PostfixOptions:
    options: dict[str, Any] = {
        "certificate_path": str(postfix.certificate),
        "key_path": str(postfix.key),
        "test_command": postfix.check_argv,
        "reload_command": postfix.reload_argv,
        "verify": retrying(postfix.port, starttls="smtp"),
    }
    return PostfixOptions.model_validate(options | overrides)


def dovecot_options(dovecot: Dovecot, **overrides: Any) -> DovecotOptions:
    options: dict[str, Any] = {
        "certificate_path": str(dovecot.certificate),
        "key_path": str(dovecot.key),
        "test_command": dovecot.test_argv,
        "reload_command": dovecot.reload_argv,
        "verify": retrying(dovecot.imap_port, starttls="imap"),
    }
    return DovecotOptions.model_validate(options | overrides)


def deploy_postfix(options: PostfixOptions, state_dir: Path, material: Material) -> DeployResult:
    return run(POSTFIX.build(options, state_dir).deploy(material))


def deploy_dovecot(options: DovecotOptions, state_dir: Path, material: Material) -> DeployResult:
    return run(DOVECOT.build(options, state_dir).deploy(material))


@pytest.mark.peer("postfix")
def test_postfix_serves_the_new_certificate_over_starttls(
    postfix: Postfix, ca: DeployCa, tmp_path: Path
) -> None:
    material = ca.material("127.0.0.1")
    options = postfix_options(postfix)

    result = deploy_postfix(options, tmp_path, material)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert result.served_fingerprint == material.fingerprint_sha256
    assert postfix.serves() == material.fingerprint_sha256
    assert postfix.certificate.read_text() == material.fullchain_pem
    assert postfix.key.read_text() == material.private_key_pem
    assert postfix.key.stat().st_mode & 0o777 == 0o600
    assert [step.split(" ", 1)[0] for step in result.steps[1:3]] == ["wrote", "wrote"]
    assert f"{' '.join(postfix.check_argv)}: ok" in result.steps
    assert f"{' '.join(postfix.reload_argv)}: ok" in result.steps

    assert deploy_postfix(options, tmp_path, material).outcome is Outcome.UNCHANGED
    assert "postfix: directories present" in run(POSTFIX.build(options, tmp_path).check())


@pytest.mark.peer("postfix")
def test_postfix_combined_chain_file(postfix: Postfix, ca: DeployCa, tmp_path: Path) -> None:
    material = ca.material("127.0.0.1")
    options = PostfixOptions(
        combined=True,
        chain_file=str(postfix.chain_file),
        test_command=postfix.check_argv,
        reload_command=postfix.reload_argv,
        verify=TlsVerify.model_validate(retrying(postfix.combined_port, starttls="smtp")),
    )

    result = deploy_postfix(options, tmp_path, material)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert postfix.serves(postfix.combined_port) == material.fingerprint_sha256
    written = postfix.chain_file.read_text()
    assert written == combined_pem(material)
    assert written.index("PRIVATE KEY") < written.index(material.certificate_pem.splitlines()[1])
    assert written.endswith(material.chain_pem)
    assert postfix.chain_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.peer("postfix")
def test_postfix_failed_verification_restores_and_reloads_the_old_files(
    postfix: Postfix, ca: DeployCa, tmp_path: Path
) -> None:
    before = ca.material("127.0.0.1")
    postfix.install(before)

    result = deploy_postfix(
        postfix_options(postfix, verify=unreachable()), tmp_path, ca.material("127.0.0.1")
    )

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert result.message.startswith("verification failed: endpoint 127.0.0.1:")
    assert postfix.certificate.read_text() == before.fullchain_pem
    assert postfix.key.read_text() == before.private_key_pem
    assert postfix.wait_until_serving(before.fingerprint_sha256) == before.fingerprint_sha256


@pytest.mark.peer("postfix")
def test_postfix_failed_config_test_restores_the_old_files(
    postfix: Postfix, ca: DeployCa, tmp_path: Path
) -> None:
    before = ca.material("127.0.0.1")
    postfix.install(before)
    failing = ["postfix", "-c", str(tmp_path / "no-such-config"), "check"]

    result = deploy_postfix(
        postfix_options(postfix, test_command=failing), tmp_path, ca.material("127.0.0.1")
    )

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert result.message.startswith("config test failed: postfix exited")
    assert postfix.certificate.read_text() == before.fullchain_pem
    assert postfix.serves() == before.fingerprint_sha256


@pytest.mark.peer("dovecot")
def test_dovecot_serves_the_new_certificate_on_imap_and_imaps(
    dovecot: Dovecot, ca: DeployCa, tmp_path: Path
) -> None:
    material = ca.material("127.0.0.1")
    options = dovecot_options(dovecot)

    result = deploy_dovecot(options, tmp_path, material)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert result.served_fingerprint == material.fingerprint_sha256
    assert dovecot.serves_imap() == material.fingerprint_sha256
    assert dovecot.serves_imaps() == material.fingerprint_sha256
    assert dovecot.key.stat().st_mode & 0o777 == 0o600
    assert f"{' '.join(dovecot.reload_argv)}: ok" in result.steps

    assert deploy_dovecot(options, tmp_path, material).outcome is Outcome.UNCHANGED
    assert "doveconf" in run(DOVECOT.build(options, tmp_path).check())


@pytest.mark.peer("dovecot")
def test_dovecot_verified_over_imaps(dovecot: Dovecot, ca: DeployCa, tmp_path: Path) -> None:
    material = ca.material("127.0.0.1")

    result = deploy_dovecot(dovecot_options(dovecot, verify=retrying(dovecot.imaps_port)), tmp_path, material)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert "TLS check of 127.0.0.1:" + str(dovecot.imaps_port) + ": ok" in result.steps
    assert dovecot.serves_imap() == material.fingerprint_sha256


@pytest.mark.peer("dovecot")
def test_dovecot_failed_verification_rolls_back(dovecot: Dovecot, ca: DeployCa, tmp_path: Path) -> None:
    before = ca.material("127.0.0.1")
    dovecot.install(before)
    plain_tls_on_the_starttls_port = TlsVerify(port=dovecot.imap_port, attempts=1, delay_seconds=0)

    result = deploy_dovecot(
        dovecot_options(dovecot, verify=plain_tls_on_the_starttls_port.model_dump()),
        tmp_path,
        ca.material("127.0.0.1"),
    )

    assert result.outcome is Outcome.ROLLED_BACK, result.message
    assert dovecot.certificate.read_text() == before.fullchain_pem
    assert dovecot.wait_until_serving(before.fingerprint_sha256) == (
        before.fingerprint_sha256,
        before.fingerprint_sha256,
    )


def test_default_commands() -> None:
    postfix = PostfixOptions(certificate_path="/etc/postfix/tls.crt", key_path="/etc/postfix/tls.key")
    dovecot = DovecotOptions(certificate_path="/etc/dovecot/tls.crt", key_path="/etc/dovecot/tls.key")
    assert (postfix.test_command, postfix.reload_command) == (["postfix", "check"], ["postfix", "reload"])
    assert (dovecot.test_command, dovecot.reload_command) == (["doveconf", "-n"], ["doveadm", "reload"])


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"combined": True}, "combined: true needs chain_file"),
        (
            {"combined": True, "chain_file": "/etc/postfix/c.pem", "key_path": "/etc/postfix/k.pem"},
            "drop certificate_path and key_path",
        ),
        ({"certificate_path": "/etc/postfix/c.pem"}, "certificate_path and key_path are required"),
        (
            {"certificate_path": "/etc/postfix/c.pem", "key_path": "/k", "chain_file": "/etc/postfix/x.pem"},
            "only written with combined: true",
        ),
        ({"certificate_path": "/etc/postfix/c.pem", "key_path": "/etc/postfix/c.pem"}, "same file"),
        ({"certificate_path": "postfix/c.pem", "key_path": "/k"}, "absolute"),
    ],
)
def test_postfix_options_are_validated(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(TargetConfigError, match=problem):
        parse_options("postfix", options)


def test_dovecot_options_are_validated() -> None:
    with pytest.raises(TargetConfigError, match="same file"):
        parse_options("dovecot", {"certificate_path": "/etc/d/x.pem", "key_path": "/etc/d/x.pem"})
    with pytest.raises(TargetConfigError, match="shell metacharacter"):
        parse_options(
            "dovecot",
            {"certificate_path": "/c", "key_path": "/k", "reload_command": ["doveadm", "reload;", "id"]},
        )
