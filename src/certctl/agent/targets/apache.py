"""Apache httpd: certificate, key and optional chain files, ``apachectl configtest``, then a graceful
restart.

With ``chain_path`` set, ``certificate_path`` holds the leaf alone and the chain file the intermediates
(``SSLCertificateChainFile``). Without it, the certificate file holds leaf and chain, which
``SSLCertificateFile`` accepts since Apache 2.4.8. A graceful restart re-reads the configuration and
files and lets running requests finish.
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


class ApacheOptions(TargetOptions):
    certificate_path: AbsolutePath
    """The leaf; leaf followed by the chain when ``chain_path`` is unset."""
    key_path: AbsolutePath
    chain_path: AbsolutePath | None = None
    certificate_file_mode: FileMode = FileMode()
    key_file_mode: FileMode = FileMode()
    chain_file_mode: FileMode = FileMode()
    test_command: Argv = Field(default_factory=lambda: ["apachectl", "configtest"])
    reload_command: Argv = Field(default_factory=lambda: ["apachectl", "graceful"])
    verify: TlsVerify | None = None
    snapshots: Snapshots = Snapshots()

    @model_validator(mode="after")
    def _distinct_paths(self) -> ApacheOptions:
        require_distinct(
            certificate_path=self.certificate_path, key_path=self.key_path, chain_path=self.chain_path
        )
        return self


def _files(options: ApacheOptions, material: Material) -> list[FileSpec]:
    if options.chain_path is None:
        return [
            text_file(options.certificate_path, material.fullchain_pem, options.certificate_file_mode),
            text_file(options.key_path, material.private_key_pem, options.key_file_mode, secret=True),
        ]
    return [
        text_file(options.certificate_path, material.certificate_pem, options.certificate_file_mode),
        text_file(options.key_path, material.private_key_pem, options.key_file_mode, secret=True),
        text_file(options.chain_path, material.chain_pem, options.chain_file_mode),
    ]


def build(options: ApacheOptions, state_dir: Path) -> Deployer:
    return FileTarget(
        type_name="apache",
        files=lambda material: _files(options, material),
        directories=parent_directories(options.certificate_path, options.key_path, options.chain_path),
        state_dir=state_dir,
        snapshots=options.snapshots,
        check_step=command_step(options.test_command),
        reload_step=command_step(options.reload_command),
        verify=options.verify,
    )


APACHE = TargetType(
    name="apache",
    description="Apache httpd: certificate, key and chain files, config test, graceful restart",
    options_model=ApacheOptions,
    build=build,
)
