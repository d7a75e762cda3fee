"""The ``postfix`` and ``dovecot`` target types: certificate files of a mail server, reloaded in place.

Postfix reads its TLS files when an ``smtpd`` process starts; ``postfix reload`` makes the master
replace its children, so new connections get the new certificate. It takes either two files
(``smtpd_tls_cert_file`` with the full chain, ``smtpd_tls_key_file``) or, with ``combined: true``, one
file for ``smtpd_tls_chain_files``: the private key followed by the leaf and its chain, the order
Postfix documents for that parameter. ``postfix check`` is the config test.

Dovecot reads ``ssl_cert = </path`` and ``ssl_key = </path`` when it loads its config; ``doveadm
reload`` reloads it and restarts the login processes. ``doveconf -n`` is the config test: it parses the
config but does not open the files, which the primitive has checked (key matches certificate) already.

Verification goes through STARTTLS where the endpoint needs it (``verify.starttls``: ``smtp`` per
RFC 3207, ``imap`` per RFC 3501 §6.2.1).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from certctl.agent.deploy.base import Deployer, Material
from certctl.agent.deploy.commands import command_step
from certctl.agent.deploy.primitive import FileSpec
from certctl.agent.targets import TargetType
from certctl.agent.targets.common import AbsolutePath, Argv, FileMode, Snapshots, TargetOptions, TlsVerify
from certctl.agent.targets.filebased import FileTarget, parent_directories, require_distinct, text_file


class PostfixOptions(TargetOptions):
    certificate_path: AbsolutePath | None = None
    """Full chain for ``smtpd_tls_cert_file`` (unless ``combined``)."""
    key_path: AbsolutePath | None = None
    """For ``smtpd_tls_key_file`` (unless ``combined``)."""
    combined: bool = False
    """Write one ``chain_file`` (key, leaf, chain) for ``smtpd_tls_chain_files`` instead of two files."""
    chain_file: AbsolutePath | None = None
    certificate_file_mode: FileMode = FileMode()
    key_file_mode: FileMode = FileMode()
    chain_file_mode: FileMode = FileMode()
    """Mode of the combined ``chain_file``; it holds the key, so it defaults to 0600."""
    test_command: Argv | None = Field(default_factory=lambda: ["postfix", "check"])
    reload_command: Argv = Field(default_factory=lambda: ["postfix", "reload"])
    verify: TlsVerify | None = None
    snapshots: Snapshots = Snapshots()

    @model_validator(mode="after")
    def _layout(self) -> PostfixOptions:
        if self.combined:
            if self.chain_file is None:
                raise ValueError("combined: true needs chain_file")
            if self.certificate_path is not None or self.key_path is not None:
                raise ValueError("combined: true writes only chain_file; drop certificate_path and key_path")
            return self
        if self.certificate_path is None or self.key_path is None:
            raise ValueError("certificate_path and key_path are required (or combined: true and chain_file)")
        if self.chain_file is not None:
            raise ValueError("chain_file is only written with combined: true")
        require_distinct(certificate_path=self.certificate_path, key_path=self.key_path)
        return self


class DovecotOptions(TargetOptions):
    certificate_path: AbsolutePath
    """Full chain, named by ``ssl_cert = </path``."""
    key_path: AbsolutePath
    """Named by ``ssl_key = </path``."""
    certificate_file_mode: FileMode = FileMode()
    key_file_mode: FileMode = FileMode()
    test_command: Argv | None = Field(default_factory=lambda: ["doveconf", "-n"])
    reload_command: Argv = Field(default_factory=lambda: ["doveadm", "reload"])
    verify: TlsVerify | None = None
    snapshots: Snapshots = Snapshots()

    @model_validator(mode="after")
    def _distinct_paths(self) -> DovecotOptions:
        require_distinct(certificate_path=self.certificate_path, key_path=self.key_path)
        return self


def combined_pem(material: Material) -> str:
    """Key, leaf, chain: one ``smtpd_tls_chain_files`` entry."""
    return material.private_key_pem.rstrip("\n") + "\n" + material.fullchain_pem


def postfix_files(options: PostfixOptions, material: Material) -> list[FileSpec]:
    if options.chain_file is not None:
        return [text_file(options.chain_file, combined_pem(material), options.chain_file_mode, secret=True)]
    assert options.certificate_path is not None and options.key_path is not None  # PostfixOptions._layout
    return [
        text_file(options.certificate_path, material.fullchain_pem, options.certificate_file_mode),
        text_file(options.key_path, material.private_key_pem, options.key_file_mode, secret=True),
    ]


def dovecot_files(options: DovecotOptions, material: Material) -> list[FileSpec]:
    return [
        text_file(options.certificate_path, material.fullchain_pem, options.certificate_file_mode),
        text_file(options.key_path, material.private_key_pem, options.key_file_mode, secret=True),
    ]


def build_postfix(options: PostfixOptions, state_dir: Path) -> Deployer:
    return FileTarget(
        type_name="postfix",
        files=lambda material: postfix_files(options, material),
        directories=parent_directories(options.certificate_path, options.key_path, options.chain_file),
        state_dir=state_dir,
        snapshots=options.snapshots,
        check_step=command_step(options.test_command) if options.test_command else None,
        reload_step=command_step(options.reload_command),
        verify=options.verify,
    )


def build_dovecot(options: DovecotOptions, state_dir: Path) -> Deployer:
    return FileTarget(
        type_name="dovecot",
        files=lambda material: dovecot_files(options, material),
        directories=parent_directories(options.certificate_path, options.key_path),
        state_dir=state_dir,
        snapshots=options.snapshots,
        check_step=command_step(options.test_command) if options.test_command else None,
        reload_step=command_step(options.reload_command),
        verify=options.verify,
    )


POSTFIX = TargetType(
    name="postfix",
    description="Postfix: smtpd certificate and key files (or one combined chain file), `postfix reload`",
    options_model=PostfixOptions,
    build=build_postfix,
)

DOVECOT = TargetType(
    name="dovecot",
    description="Dovecot: ssl_cert and ssl_key files, `doveadm reload`",
    options_model=DovecotOptions,
    build=build_dovecot,
)
