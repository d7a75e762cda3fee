"""nginx: certificate and key files, ``nginx -t``, then ``nginx -s reload``.

nginx sends exactly what ``ssl_certificate`` holds, so that file gets the leaf followed by the chain;
``chain_path`` (chain only) is for ``ssl_trusted_certificate`` when OCSP stapling is configured. A reload
makes the master start workers on the new files while old workers finish their connections, so
nothing is dropped; the TLS check retries until the new workers answer.
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


class NginxOptions(TargetOptions):
    certificate_path: AbsolutePath
    """Written as the full chain (leaf, then intermediates): what ``ssl_certificate`` must hold."""
    key_path: AbsolutePath
    chain_path: AbsolutePath | None = None
    """Optional: the intermediates alone, e.g. for ``ssl_trusted_certificate``."""
    certificate_file_mode: FileMode = FileMode()
    key_file_mode: FileMode = FileMode()
    chain_file_mode: FileMode = FileMode()
    test_command: Argv = Field(default_factory=lambda: ["nginx", "-t"])
    reload_command: Argv = Field(default_factory=lambda: ["nginx", "-s", "reload"])
    verify: TlsVerify | None = None
    snapshots: Snapshots = Snapshots()

    @model_validator(mode="after")
    def _distinct_paths(self) -> NginxOptions:
        require_distinct(
            certificate_path=self.certificate_path, key_path=self.key_path, chain_path=self.chain_path
        )
        return self


def _files(options: NginxOptions, material: Material) -> list[FileSpec]:
    files = [
        text_file(options.certificate_path, material.fullchain_pem, options.certificate_file_mode),
        text_file(options.key_path, material.private_key_pem, options.key_file_mode, secret=True),
    ]
    if options.chain_path is not None:
        files.append(text_file(options.chain_path, material.chain_pem, options.chain_file_mode))
    return files


def build(options: NginxOptions, state_dir: Path) -> Deployer:
    return FileTarget(
        type_name="nginx",
        files=lambda material: _files(options, material),
        directories=parent_directories(options.certificate_path, options.key_path, options.chain_path),
        state_dir=state_dir,
        snapshots=options.snapshots,
        check_step=command_step(options.test_command),
        reload_step=command_step(options.reload_command),
        verify=options.verify,
    )


NGINX = TargetType(
    name="nginx",
    description="nginx: full-chain certificate and key files, config test, graceful reload",
    options_model=NginxOptions,
    build=build,
)
