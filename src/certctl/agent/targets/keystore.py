"""The ``keystore`` target type: a Java keystore (PKCS#12 or JKS) holding the key and its chain.

The keystore holds one private-key entry under ``alias`` (leaf first, then the chain); the file is this
target's to write, and other entries in it are not kept. The key is protected with the store password,
as keytool expects by default. PKCS#12 is written with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and an
HMAC-SHA256 MAC, the strongest scheme the keytool of Java 17 reads; JKS uses Sun's own key protection
through the optional ``pyjks`` library (``certctl[jks]``), imported only when a JKS store is written.

Both formats carry random salts, so writing the same material twice gives different bytes and a byte
comparison would never find a store unchanged. The file handed to the primitive therefore comes with a
``same_content`` test: the primitive (under its lock) opens the installed keystore with the password,
and when it already holds this key and chain under the alias the deployment is reported unchanged and
nothing is written. A store that does not open with the password is simply different, and replaced.

After the switch, ``keytool -list`` opens the new store (the password reaches keytool through the
environment variable ``CERTCTL_KEYSTORE_PASS``, never the command line), then an optional reload command
and TLS check run; any failure puts the previous keystore back.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from pydantic import AfterValidator, Field, SecretStr

from certctl.agent.deploy.base import Deployer, Material, Step, StepFailed
from certctl.agent.deploy.commands import command_step
from certctl.agent.deploy.primitive import FileSpec
from certctl.agent.targets import TargetType
from certctl.agent.targets.common import AbsolutePath, Argv, FileMode, Snapshots, TargetOptions, TlsVerify
from certctl.agent.targets.filebased import FileTarget, MaterialRefused, parent_directories

KEYTOOL_ENV_NAME = "CERTCTL_KEYSTORE_PASS"
"""The environment variable that hands keytool the store password (``-storepass:env``)."""
MISSING_EXTRA = "JKS keystores need the 'jks' extra: pip install 'certctl[jks]'"
PBKDF2_ROUNDS = 10_000
"""What Java 17's keytool itself uses for PKCS#12 keys, certificates and MAC: the store opens as fast
as one keytool wrote (every Java server start pays for these rounds)."""
_STORE_TYPES = {"pkcs12": "PKCS12", "jks": "JKS"}
_PKCS12_KEY_TYPES = (
    rsa.RSAPrivateKey,
    dsa.DSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


def _keytool_password(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < 6:
        raise ValueError("must be at least 6 characters (keytool refuses shorter store passwords)")
    return value


class KeystoreOptions(TargetOptions):
    path: AbsolutePath
    format: Literal["pkcs12", "jks"] = "pkcs12"
    password: Annotated[SecretStr, AfterValidator(_keytool_password)]
    """Store password, also protecting the key entry."""
    alias: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")] = "certctl"
    """Lower case: Java compares aliases case-insensitively and JKS stores them lower-cased."""
    file_mode: FileMode = FileMode()
    """Owner and mode of the keystore; it holds the key, so it defaults to 0600."""
    validate_with_keytool: bool = True
    """Open the new store with ``keytool -list`` after the switch (needs a JDK on the agent's host)."""
    keytool_path: AbsolutePath | None = None
    """The keytool program; unset: ``keytool`` found on PATH."""
    reload_command: Argv | None = None
    """E.g. a service restart, for servers that read the keystore only when they start."""
    verify: TlsVerify | None = None
    snapshots: Snapshots = Snapshots()


def _jks() -> ModuleType:
    try:
        return importlib.import_module("jks")
    except ModuleNotFoundError:
        raise StepFailed(MISSING_EXTRA) from None


def _chain(material: Material) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(material.fullchain_pem.encode())


def _private_key(material: Material) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(material.private_key_pem.encode(), password=None)


def _pkcs8(key: Any) -> bytes:
    der: bytes = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return der


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def encode_keystore(material: Material, *, store_format: str, alias: str, password: str) -> bytes:
    """A new keystore holding ``material`` under ``alias``, protected with ``password``."""
    chain = _chain(material)
    key = _private_key(material)
    if store_format == "jks":
        jks = _jks()
        entry = jks.PrivateKeyEntry.new(alias, [_der(cert) for cert in chain], _pkcs8(key), "pkcs8")
        data: bytes = jks.KeyStore.new("jks", [entry]).saves(password)
        return data
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(PBKDF2_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode())
    )
    if not isinstance(key, _PKCS12_KEY_TYPES):
        raise StepFailed(f"a {type(key).__name__} cannot be stored in a PKCS#12 keystore")
    return pkcs12.serialize_key_and_certificates(alias.encode(), key, chain[0], chain[1:], encryption)


def _entry(data: bytes, *, store_format: str, alias: str, password: str) -> tuple[bytes, list[bytes]] | None:
    """The PKCS#8 key and the certificate chain (DER) stored under ``alias``, or None."""
    if store_format == "jks":
        jks = _jks()
        store = jks.KeyStore.loads(data, password)
        entry = store.private_keys.get(alias)
        if entry is None or not entry.is_decrypted():
            return None
        return bytes(entry.pkey_pkcs8), [bytes(der) for _, der in entry.cert_chain]
    loaded = pkcs12.load_pkcs12(data, password.encode())
    if loaded.key is None or loaded.cert is None or loaded.cert.friendly_name != alias.encode():
        return None
    chain = [loaded.cert.certificate, *(item.certificate for item in loaded.additional_certs)]
    return _pkcs8(loaded.key), [_der(cert) for cert in chain]


def holds(data: bytes, material: Material, *, store_format: str, alias: str, password: str) -> bool:
    """Whether ``data`` is a keystore that opens with ``password`` and holds exactly this material.

    A store that does not open (another password, another format, damaged) simply does not hold it.
    """
    try:
        found = _entry(data, store_format=store_format, alias=alias, password=password)
    except Exception:  # any parse or decryption error means "not this material"
        return False
    if found is None:
        return False
    key, chain = found
    return key == _pkcs8(_private_key(material)) and chain == [_der(cert) for cert in _chain(material)]


def keytool_step(options: KeystoreOptions) -> Step:
    """``keytool -list`` of the installed store; the password travels in the environment."""
    argv = [
        options.keytool_path or "keytool",
        "-list",
        "-keystore",
        options.path,
        "-storetype",
        _STORE_TYPES[options.format],
        "-storepass:env",
        KEYTOOL_ENV_NAME,
    ]
    return command_step(argv, env={KEYTOOL_ENV_NAME: options.password.get_secret_value()})


def keystore_file(options: KeystoreOptions, material: Material) -> FileSpec:
    """The new keystore, with a ``same_content`` test that opens the installed one (see above)."""
    store_format, alias = options.format, options.alias
    password = options.password.get_secret_value()
    try:
        content = encode_keystore(material, store_format=store_format, alias=alias, password=password)
    except StepFailed as exc:  # the optional library is missing, or a key type PKCS#12 cannot hold
        raise MaterialRefused(str(exc)) from None
    except Exception as exc:  # unusable material; say so without echoing it
        raise MaterialRefused(f"cannot build the {store_format} keystore: {type(exc).__name__}") from None
    return FileSpec(
        path=Path(options.path),
        content=content,
        mode=options.file_mode,
        default_mode=0o600,
        secret=True,
        same_content=lambda installed: holds(
            installed, material, store_format=store_format, alias=alias, password=password
        ),
    )


def build(options: KeystoreOptions, state_dir: Path) -> Deployer:
    return FileTarget(
        type_name="keystore",
        files=lambda material: [keystore_file(options, material)],
        directories=parent_directories(options.path),
        state_dir=state_dir,
        snapshots=options.snapshots,
        check_step=keytool_step(options) if options.validate_with_keytool else None,
        reload_step=command_step(options.reload_command) if options.reload_command else None,
        verify=options.verify,
    )


KEYSTORE = TargetType(
    name="keystore",
    description="Java keystore (PKCS#12 or JKS) with the key and chain under one alias",
    options_model=KeystoreOptions,
    build=build,
)
