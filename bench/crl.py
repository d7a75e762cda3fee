"""A million-entry CRL: certctl's direct DER builder against ``openssl ca -gencrl`` in the same run.

Both sign with the same ECDSA P-256 CA key over the same revoked serials (random 159-bit serials,
revocation times spread over 90 days, a mix of reasons, some invalidity dates on ours). Ours starts from
entries in memory (``RevokedEntry`` tuples, as read from the database) and ends with signed DER; OpenSSL
starts from its ``index.txt`` (written beforehand, not timed) and ends with a signed PEM file, so its figure
includes parsing the index. Also times ``cryptography``'s ``CertificateRevocationListBuilder`` at a
smaller size to show why the direct builder exists. Every CRL produced is parsed and its signature checked.

    python bench/crl.py [--entries 1000000] [--builder-entries 100000]
"""

from __future__ import annotations

import argparse
import platform
import random
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certctl.pki.builder import Subject, build_self_signed_ca
from certctl.pki.crl import CrlSpec, RevokedEntry, build_crl
from certctl.pki.keys import generate_private_key, private_key_to_pem

REASONS = ["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", None]
CODES = {"keyCompromise": 1, "affiliationChanged": 3, "superseded": 4, "cessationOfOperation": 5}
OPENSSL_CONFIG = """[ ca ]
default_ca = bench
[ bench ]
database = {folder}/index.txt
crlnumber = {folder}/crlnumber
certificate = {folder}/ca.pem
private_key = {folder}/ca.key
default_md = sha256
default_crl_days = 1
unique_subject = no
"""


def entries(count: int, now: datetime) -> list[RevokedEntry]:
    rng = random.Random(5280)
    start = now - timedelta(days=90)
    made = []
    for _ in range(count):
        reason = REASONS[rng.randrange(len(REASONS))]
        revoked_at = start + timedelta(seconds=rng.randrange(90 * 86400))
        invalidity = revoked_at - timedelta(days=1) if reason == "keyCompromise" else None
        made.append(RevokedEntry(rng.getrandbits(159) | 1, revoked_at, CODES.get(reason or ""), invalidity))
    return made


def write_openssl_index(folder: Path, revoked: list[RevokedEntry], expiry: datetime) -> None:
    names = {code: name for name, code in CODES.items()}
    not_after = expiry.strftime("%y%m%d%H%M%SZ")
    with (folder / "index.txt").open("w") as index:
        for serial, revoked_at, reason, _ in revoked:
            when = revoked_at.strftime("%y%m%d%H%M%SZ") + (f",{names[reason]}" if reason else "")
            index.write(f"R\t{not_after}\t{when}\t{serial:040X}\tunknown\t/CN=bench\n")
    (folder / "index.txt.attr").write_text("unique_subject = no\n")
    (folder / "crlnumber").write_text("1000\n")
    (folder / "openssl.cnf").write_text(OPENSSL_CONFIG.format(folder=folder))


def time_direct(ca: x509.Certificate, key: object, revoked: list[RevokedEntry], now: datetime) -> float:
    spec = CrlSpec(1001, now, now + timedelta(days=1), "http://bench/crl/ca.crl")
    started = time.perf_counter()
    der = build_crl(ca_cert=ca, ca_key=key, spec=spec, entries=revoked)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    crl = x509.load_der_x509_crl(der)
    assert len(crl) == len(revoked) and crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    print(
        f"certctl direct builder: {len(revoked):,} entries in {elapsed:.2f} s ({len(der) / 1e6:.1f} MB DER)"
    )
    return elapsed


def time_openssl(folder: Path, ca: x509.Certificate, count: int) -> float:
    command = [
        "openssl",
        "ca",
        "-config",
        str(folder / "openssl.cnf"),
        "-gencrl",
        "-out",
        str(folder / "o.pem"),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    crl = x509.load_pem_x509_crl((folder / "o.pem").read_bytes())
    assert len(crl) == count and crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    print(f"openssl ca -gencrl:     {count:,} entries in {elapsed:.2f} s (index parsing included)")
    return elapsed


def time_cryptography_builder(ca: x509.Certificate, key: object, revoked: list[RevokedEntry]) -> float:
    now = datetime.now(UTC)
    started = time.perf_counter()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now)
        .next_update(now + timedelta(days=1))
    )
    for serial, revoked_at, reason, _ in revoked:
        item = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
        if reason:
            item = item.add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        builder = builder.add_revoked_certificate(item.build())
    crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert len(crl) == len(revoked)
    print(f"cryptography builder:   {len(revoked):,} entries in {elapsed:.2f} s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--builder-entries", type=int, default=100_000)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    key = generate_private_key("ecdsa-p256")
    ca = build_self_signed_ca(
        key=key,
        subject=Subject(common_name="Bench CRL CA"),
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=3650),
        path_length=None,
        name_constraints=None,
    )
    revoked = entries(args.entries, now)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, {now:%Y-%m-%d}")
    ours = time_direct(ca, key, revoked, now)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (folder / "ca.key").write_bytes(private_key_to_pem(key))
        write_openssl_index(folder, revoked, now + timedelta(days=365))
        theirs = time_openssl(folder, ca, args.entries)
    print(f"ratio certctl / openssl: {ours / theirs:.2f}")
    small = revoked[: args.builder_entries]
    builder = time_cryptography_builder(ca, key, small)
    scaled = builder * args.entries / len(small)
    times_ours = scaled / ours
    print(
        f"cryptography builder extrapolated to {args.entries:,}: "
        f"at least {scaled:.0f} s ({times_ours:.0f}x ours)"
    )


if __name__ == "__main__":
    main()
