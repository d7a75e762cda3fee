"""Six real ACME clients, each obtaining a certificate for one name from an ACME directory.

certbot, dehydrated, acme-tiny and uacme answer http-01 through the test bed's webroot; Caddy and
Apache mod_md answer it themselves (the responder forwards their name to them) and then serve what
they obtained. Each client is a context manager yielding :class:`Obtained`, so a daemon lives exactly
as long as the test that uses it. See :mod:`support.acme_testbed` for the CA side.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from support.acme_testbed import (
    ChallengeResponder,
    free_port,
    pem_certificates,
    run_command,
    served_leaf_pem,
    spawn,
    stop_process,
    system_trust,
    wait_until,
)
from support.daemons_caddy import caddy_environment

APACHE_MODULES = Path("/usr/lib/apache2/modules")


@dataclass(frozen=True)
class AcmeOrder:
    """What every client needs to obtain a certificate for ``name`` from ``directory_url``."""

    directory_url: str
    ca_bundle: Path
    """Trust anchor for the directory's own TLS listener."""
    challenges: ChallengeResponder
    workdir: Path
    name: str


@dataclass(frozen=True)
class Obtained:
    """The PEM chain a client saved, and the https port that serves it when the client is a daemon."""

    certificate: Path
    https_port: int | None = None


@contextmanager
def certbot(*, order: AcmeOrder) -> Iterator[Obtained]:
    """certonly --webroot, then a forced renewal, then revocation of the superseded first certificate."""
    work = order.workdir
    base = ["certbot", "--non-interactive", "--config-dir", str(work / "config")]
    base += ["--work-dir", str(work / "work"), "--logs-dir", str(work / "logs")]
    env = os.environ | {"REQUESTS_CA_BUNDLE": str(order.ca_bundle)}
    obtain = [*base, "certonly", "--webroot", "-w", str(order.challenges.webroot), "-d", order.name]
    obtain += ["--server", order.directory_url, "--register-unsafely-without-email", "--agree-tos"]
    run_command(obtain, env=env)
    run_command([*base, "renew", "--force-renewal", "--no-random-sleep-on-renew"], env=env)
    archive = work / "config" / "archive" / order.name
    if not (archive / "cert2.pem").is_file():
        raise RuntimeError("certbot renew --force-renewal did not store a second certificate")
    revoke = [*base, "revoke", "--cert-path", str(archive / "cert1.pem"), "--server", order.directory_url]
    run_command([*revoke, "--reason", "superseded", "--no-delete-after-revoke"], env=env)
    yield Obtained(certificate=work / "config" / "live" / order.name / "fullchain.pem")


@contextmanager
def dehydrated(*, order: AcmeOrder) -> Iterator[Obtained]:
    """Register an account, then ``--cron`` for one domain; http-01 answers written to the webroot."""
    config = order.workdir / "config"
    settings = {
        "CA": order.directory_url,
        "BASEDIR": str(order.workdir),
        "WELLKNOWN": str(order.challenges.challenge_dir),
        "CHALLENGETYPE": "http-01",
        "KEY_ALGO": "prime256v1",
        "KEYSIZE": "2048",
    }
    config.write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in settings.items()))
    env = os.environ | {"CURL_CA_BUNDLE": str(order.ca_bundle)}
    run_command(["dehydrated", "--config", str(config), "--register", "--accept-terms"], env=env)
    run_command(["dehydrated", "--config", str(config), "--cron", "--domain", order.name], env=env)
    yield Obtained(certificate=order.workdir / "certs" / order.name / "fullchain.pem")


def _rsa_account_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _csr_pem(name: str) -> str:
    """A CSR for ``name`` with the name as a SAN too: ACME CAs issue for SANs (RFC 8555 §7.4)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    csr = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@contextmanager
def acme_tiny(*, order: AcmeOrder) -> Iterator[Obtained]:
    """acme-tiny with an RSA account key and a CSR that carries the name as a SAN; chain on stdout."""
    account, csr = order.workdir / "account.key", order.workdir / "domain.csr"
    account.touch(mode=0o600)
    account.write_text(_rsa_account_key_pem())
    csr.write_text(_csr_pem(order.name))
    argv = ["acme-tiny", "--account-key", str(account), "--csr", str(csr), "--disable-check"]
    argv += ["--acme-dir", str(order.challenges.challenge_dir), "--directory-url", order.directory_url]
    chain = run_command(argv, env=os.environ | {"SSL_CERT_FILE": str(order.ca_bundle)})
    certificate = order.workdir / "chain.pem"
    certificate.write_text(chain)
    yield Obtained(certificate=certificate)


@contextmanager
def uacme(*, order: AcmeOrder) -> Iterator[Obtained]:
    """uacme with its shipped http-01 hook; the directory's CA sits in the system store meanwhile."""
    base = ["uacme", "--confdir", str(order.workdir), "--acme-url", order.directory_url, "--type", "EC"]
    env = os.environ | {"UACME_CHALLENGE_PATH": str(order.challenges.challenge_dir)}
    with system_trust(order.ca_bundle):
        run_command([*base, "--yes", "new"], env=env)
        run_command([*base, "--hook", "/usr/share/uacme/uacme.sh", "issue", order.name], env=env)
    yield Obtained(certificate=order.workdir / order.name / "cert.pem")


@contextmanager
def _serving_daemon(
    *, order: AcmeOrder, argv: list[str], http_port: int, env: dict[str, str] | None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run an ACME-client daemon with http-01 for its name forwarded to it; stopped by PID after."""
    with order.challenges.route(order.name, http_port):
        process = spawn(argv, log=log, env=env)
        try:
            yield process
        finally:
            stop_process(process)


@contextmanager
def caddy(*, order: AcmeOrder) -> Iterator[Obtained]:
    """Caddy obtaining the certificate for its site itself and serving it on a loopback https port."""
    work = order.workdir
    http_port, https_port = free_port(), free_port()
    caddyfile = work / "Caddyfile"
    caddyfile.write_text(
        f"""{{
\tadmin 127.0.0.1:{free_port()}
\thttp_port {http_port}
\thttps_port {https_port}
\tstorage file_system {work / "storage"}
\tskip_install_trust
}}

https://{order.name} {{
\tbind 127.0.0.1
\ttls {{
\t\tissuer acme {{
\t\t\tdir {order.directory_url}
\t\t\ttrusted_roots {order.ca_bundle}
\t\t\tdisable_tlsalpn_challenge
\t\t}}
\t}}
\trespond "certctl acme interop"
}}
"""
    )
    log = work / "caddy.log"
    argv = ["caddy", "run", "--config", str(caddyfile)]
    with _serving_daemon(
        order=order, argv=argv, http_port=http_port, env=caddy_environment(work), log=log
    ) as process:
        stored = work / "storage" / "certificates"
        found: list[Path] = []

        def saved() -> bool:
            found[:] = sorted(stored.glob(f"*/{order.name}/{order.name}.crt"))
            return bool(found)

        wait_until(saved, what="caddy to store the certificate", process=process, log=log)
        _wait_served(found[0], port=https_port, name=order.name, process=process, log=log)
        yield Obtained(certificate=found[0], https_port=https_port)


def _wait_served(
    certificate: Path, *, port: int, name: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    leaf = pem_certificates(certificate)[0].strip()
    wait_until(
        lambda: (served_leaf_pem(port=port, server_name=name) or "").strip() == leaf,
        what=f"the daemon to serve the certificate for {name}",
        process=process,
        log=log,
    )


@contextmanager
def apache_md(*, order: AcmeOrder) -> Iterator[Obtained]:
    """Apache mod_md managing the domain; after "activated on next restart" a graceful USR1 applies it.

    Apache's children run as www-data: they contact the CA, keep the staging area and answer http-01
    from the MD store. So the server root, the store and a copy of the directory's CA bundle live in a
    world-traversable folder of its own (the test's temporary folder is private to root).
    """
    server_root = Path(tempfile.mkdtemp(prefix="certctl-md-"))
    server_root.chmod(0o755)
    try:
        http_port, https_port = free_port(), free_port()
        ca_bundle = server_root / "directory-ca.pem"
        shutil.copyfile(order.ca_bundle, ca_bundle)
        config = server_root / "httpd.conf"
        config.write_text(
            _apache_md_config(order, server_root, ca_bundle, http_port=http_port, https_port=https_port)
        )
        log = order.workdir / "apache.log"
        argv = ["apache2", "-f", str(config), "-DFOREGROUND"]
        with _serving_daemon(order=order, argv=argv, http_port=http_port, env=None, log=log) as process:
            wait_until(
                lambda: _md_renewed(log), what="mod_md to obtain the certificate", process=process, log=log
            )
            os.kill(process.pid, signal.SIGUSR1)
            pubcert = server_root / "md" / "domains" / order.name / "pubcert.pem"
            wait_until(pubcert.is_file, what="mod_md to activate the certificate", process=process, log=log)
            certificate = order.workdir / "pubcert.pem"
            shutil.copyfile(pubcert, certificate)
            _wait_served(certificate, port=https_port, name=order.name, process=process, log=log)
            yield Obtained(certificate=certificate, https_port=https_port)
    finally:
        shutil.rmtree(server_root, ignore_errors=True)


def _md_renewed(log: Path) -> bool:
    """True once mod_md has a new certificate staged; its first error ends the wait at once."""
    text = log.read_text(errors="replace")
    if "[md:error]" in text:
        raise RuntimeError(f"mod_md failed:\n{text[-3000:]}")
    return "activated on next" in text


def _apache_md_config(
    order: AcmeOrder, root: Path, ca_bundle: Path, *, http_port: int, https_port: int
) -> str:
    modules = ["mpm_event", "authz_core", "socache_shmcb", "ssl", "md"]
    loads = "\n".join(f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so" for name in modules)
    return f"""ServerRoot {root}
PidFile {root}/httpd.pid
DefaultRuntimeDir {root}
Mutex file:{root} default
ErrorLog /dev/stderr
LogLevel warn md:notice
{loads}
User www-data
Group www-data
ServerName {order.name}
Listen 127.0.0.1:{http_port} http
Listen 127.0.0.1:{https_port} https
SSLSessionCache none
MDStoreDir {root}/md
MDCertificateAuthority {order.directory_url}
MDCACertificateFile {ca_bundle}
MDCertificateAgreement accepted
MDContactEmail acme-admin@example.test
MDPortMap http:{http_port} https:{https_port}
MDCAChallenges http-01
MDomain {order.name}
<VirtualHost 127.0.0.1:{http_port}>
  ServerName {order.name}
</VirtualHost>
<VirtualHost 127.0.0.1:{https_port}>
  ServerName {order.name}
  SSLEngine on
</VirtualHost>
"""


class ClientRunner(Protocol):
    """A client: ``with runner(order=order) as obtained: ...``."""

    def __call__(self, *, order: AcmeOrder) -> AbstractContextManager[Obtained]: ...


CLIENTS: dict[str, ClientRunner] = {
    "certbot": certbot,
    "dehydrated": dehydrated,
    "acme-tiny": acme_tiny,
    "uacme": uacme,
    "caddy": caddy,
    "apache-md": apache_md,
}
"""Each client by the name the tests use for it."""
