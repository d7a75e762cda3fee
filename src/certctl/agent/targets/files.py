"""Plain files: any combination of certificate, key, chain, full chain and PKCS#12, plus optional
commands.

For software without a dedicated target: the operator picks the outputs and, when the software needs
telling, a test and a reload command. PKCS#12 is written with the best encryption ``cryptography``
offers when a password is set (unencrypted otherwise). Its bytes differ on every write (random salts),
so "already installed" is decided by reading the installed file back and comparing key and
certificates, not by hashing.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from pydantic import SecretStr, model_validator

from certctl.agent.deploy.base import Deployer, Material
from certctl.agent.deploy.commands import command_step
from certctl.agent.deploy.primitive import FileSpec
from certctl.agent.targets import TargetType
from certctl.agent.targets.common import AbsolutePath, Argv, FileMode, Snapshots, TargetOptions, TlsVerify
from certctl.agent.targets.filebased import (
    FileTarget,
    MaterialRefused,
    parent_directories,
    require_distinct,
    text_file,
)

_PKCS12_KEY_TYPES = (
    rsa.RSAPrivateKey,
    dsa.DSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


class FilesOptions(TargetOptions):
    certificate_path: AbsolutePath | None = None
    """The leaf alone."""
    key_path: AbsolutePath | None = None
    chain_path: AbsolutePath | None = None
    """The intermediates alone."""
    fullchain_path: AbsolutePath | None = None
    """Leaf followed by the intermediates."""
    pkcs12_path: AbsolutePath | None = None
    """Key, leaf and intermediates in one PKCS#12 file (always written as a key file)."""
    pkcs12_password: SecretStr | None = None
    certificate_file_mode: FileMode = FileMode()
    key_file_mode: FileMode = FileMode()
    chain_file_mode: FileMode = FileMode()
    fullchain_file_mode: FileMode = FileMode()
    pkcs12_file_mode: FileMode = FileMode()
    test_command: Argv | None = None
    reload_command: Argv | None = None
    verify: TlsVerify | None = None
    snapshots: Snapshots = Snapshots()

    @model_validator(mode="after")
    def _outputs(self) -> FilesOptions:
        paths = {
            "certificate_path": self.certificate_path,
            "key_path": self.key_path,
            "chain_path": self.chain_path,
            "fullchain_path": self.fullchain_path,
            "pkcs12_path": self.pkcs12_path,
        }
        if all(path is None for path in paths.values()):
            raise ValueError("set at least one of " + ", ".join(paths))
        require_distinct(**paths)
        if self.pkcs12_password is not None and self.pkcs12_path is None:
            raise ValueError("pkcs12_password is set but pkcs12_path is not")
        return self


def _password(options: FilesOptions) -> bytes | None:
    if options.pkcs12_password is None or not options.pkcs12_password.get_secret_value():
        return None
    return options.pkcs12_password.get_secret_value().encode()


def _parsed(
    material: Material,
) -> tuple[pkcs12.PKCS12PrivateKeyTypes, x509.Certificate, list[x509.Certificate]]:
    try:
        key = serialization.load_pem_private_key(material.private_key_pem.encode(), password=None)
        certificate = x509.load_pem_x509_certificate(material.certificate_pem.encode())
        chain = (
            x509.load_pem_x509_certificates(material.chain_pem.encode()) if material.chain_pem.strip() else []
        )
    except ValueError:
        raise MaterialRefused("the certificate, chain or private key does not parse") from None
    if not isinstance(key, _PKCS12_KEY_TYPES):
        raise MaterialRefused("this kind of private key cannot be stored in PKCS#12")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise MaterialRefused("the private key does not match the certificate's public key")
    return key, certificate, chain


def _pkcs12_spec(options: FilesOptions, material: Material) -> FileSpec:
    assert options.pkcs12_path is not None
    key, certificate, chain = _parsed(material)
    password = _password(options)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    content = pkcs12.serialize_key_and_certificates(
        name=None, key=key, cert=certificate, cas=chain or None, encryption_algorithm=encryption
    )
    wanted = _identity(key, certificate, chain)

    def same_content(installed: bytes) -> bool:
        loaded_key, loaded_certificate, loaded_chain = pkcs12.load_key_and_certificates(installed, password)
        if loaded_key is None or loaded_certificate is None:
            return False
        return _identity(loaded_key, loaded_certificate, loaded_chain) == wanted

    return FileSpec(
        path=Path(options.pkcs12_path),
        content=content,
        mode=options.pkcs12_file_mode,
        secret=True,
        same_content=same_content,
    )


def _identity(
    key: PrivateKeyTypes, certificate: x509.Certificate, chain: list[x509.Certificate]
) -> tuple[bytes, ...]:
    """What a PKCS#12 file must contain to count as this material (compared, never shown)."""
    der = serialization.Encoding.DER
    key_der = key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return (key_der, certificate.public_bytes(der), *(item.public_bytes(der) for item in chain))


def _files(options: FilesOptions, material: Material) -> list[FileSpec]:
    files: list[FileSpec] = []
    if options.certificate_path is not None:
        files.append(
            text_file(options.certificate_path, material.certificate_pem, options.certificate_file_mode)
        )
    if options.key_path is not None:
        files.append(
            text_file(options.key_path, material.private_key_pem, options.key_file_mode, secret=True)
        )
    if options.chain_path is not None:
        files.append(text_file(options.chain_path, material.chain_pem, options.chain_file_mode))
    if options.fullchain_path is not None:
        files.append(text_file(options.fullchain_path, material.fullchain_pem, options.fullchain_file_mode))
    if options.pkcs12_path is not None:
        files.append(_pkcs12_spec(options, material))
    return files


def build(options: FilesOptions, state_dir: Path) -> Deployer:
    return FileTarget(
        type_name="files",
        files=lambda material: _files(options, material),
        directories=parent_directories(
            options.certificate_path,
            options.key_path,
            options.chain_path,
            options.fullchain_path,
            options.pkcs12_path,
        ),
        state_dir=state_dir,
        snapshots=options.snapshots,
        check_step=command_step(options.test_command) if options.test_command else None,
        reload_step=command_step(options.reload_command) if options.reload_command else None,
        verify=options.verify,
    )


FILES = TargetType(
    name="files",
    description="Plain files: certificate, key, chain, full chain and PKCS#12, with optional commands",
    options_model=FilesOptions,
    build=build,
)
