"""OCSP responses per second: certctl's responder against ``openssl ocsp -index`` (and ``cfssl ocspserve``
when installed) in the same run, with wrk at 64 keep-alive connections, POST and GET.

Each server answers the same mix of requests: 10 good, 5 revoked and 5 unknown serials, no nonce (the
RFC 5019 profile, so responses may be pre-signed and cached), each a DER OCSPRequest built beforehand;
wrk's Lua script cycles through them. certctl runs as ``certctl server`` (SQLite, 2 workers) with its
plain HTTP listener on loopback. ``openssl ocsp -port`` binds every interface, so it runs inside a fresh
network namespace (``unshare -n``, loopback only), and wrk runs inside the same namespace; it runs as
one process (its ``-multi`` children outlive a killed parent) and signs with an ECDSA P-256 delegated
responder of its own CA. ``cfssl ocspserve`` serves responses pre-signed by this script (unknown
ones included: it answers unauthorized for a CertID it holds no response for).

    python bench/ocsp.py [--seconds 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from _server import client, free_port, running_server
from certctl.pki.builder import Subject, build_self_signed_ca
from certctl.pki.keys import generate_private_key, private_key_to_pem
from certctl.pki.ocsp import (
    CertId,
    CertState,
    Signer,
    SingleStatus,
    build_responder_certificate,
    build_response,
    issuer_hashes,
)

GOOD, REVOKED, UNKNOWN = 10, 5, 5
LUA = """
local bodies = {%(bodies)s}
local paths = {%(paths)s}
local i = 0
request = function()
  i = i %% #bodies + 1
  if "%(method)s" == "GET" then
    return wrk.format("GET", paths[i])
  end
  return wrk.format("POST", "%(prefix)s", {["Content-Type"] = "application/ocsp-request"}, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(99), summary.errors.status, summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
"""


@dataclass(frozen=True)
class Figure:
    requests_per_second: float
    p99_ms: float
    errors: int


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{byte}" for byte in data) + '"'


def wrk_script(requests: list[bytes], method: str, folder: Path, prefix: str = "/ocsp") -> Path:
    """A wrk script cycling through the requests: POST to ``prefix``, or GET ``prefix/<base64>``."""
    path = folder / f"ocsp-{method.lower()}-{len(list(folder.iterdir()))}.lua"
    paths = [
        lua_string((prefix.rstrip("/") + "/" + quote(base64.b64encode(der).decode(), safe="")).encode())
        for der in requests
    ]
    bodies = ", ".join(lua_string(der) for der in requests)
    path.write_text(LUA % {"bodies": bodies, "paths": ", ".join(paths), "method": method, "prefix": prefix})
    return path


def parse_wrk(output: str) -> Figure:
    found = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", output)
    if found is None:
        raise SystemExit(f"wrk gave no result:\n{output}")
    count, duration_us, p99_us, status_errors, socket_errors = (int(g) for g in found.groups())
    return Figure(count / (duration_us / 1e6), p99_us / 1000, status_errors + socket_errors)


def wrk_command(url: str, script: Path, seconds: int, connections: int) -> list[str]:
    return ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "-s", str(script), url]


def bench_certctl(folder: Path, seconds: int, connections: int) -> dict[str, Figure]:
    with running_server(folder / "certctl", database_url=None, workers=2) as server:
        http_url = "http://" + server.env["CERTCTL_HTTP_LISTEN"]
        requests: list[bytes] = []
        with client(server) as api:
            issuing = x509.load_pem_x509_certificate(
                next(
                    ca
                    for ca in api.get("/api/v1/intermediates").json()["items"]
                    if ca["name"] == "Bench Issuing"
                )["cert_pem"].encode()
            )
            for index in range(GOOD + REVOKED):
                name = f"ocsp-{index}.bench.example"
                body = {"name": name, "issuer": "bench", "profile": "bench", "common_name": name}
                api.post("/api/v1/certificates", json=body).raise_for_status()
                leaf = x509.load_pem_x509_certificates(
                    api.get(f"/api/v1/certificates/{name}/export").content
                )[0]
                if index >= GOOD:
                    revoke = {"reason": "keyCompromise"}
                    api.post(f"/api/v1/certificates/{name}/revoke", json=revoke).raise_for_status()
                requests.append(request_der(issuing, leaf.serial_number))
        requests += [request_der(issuing, 0xDEAD0000 + index) for index in range(UNKNOWN)]
        check_statuses(http_url, requests)
        figures = {}
        for method in ("POST", "GET"):
            script = wrk_script(requests, method, folder)
            run = subprocess.run(
                wrk_command(http_url, script, seconds, connections),
                capture_output=True,
                text=True,
                check=True,
            )
            figures[method] = parse_wrk(run.stdout + run.stderr)
        return figures


def request_der(issuer: x509.Certificate, serial: int) -> bytes:
    name_hash, key_hash = issuer_hashes(issuer, hashes.SHA1())
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, serial, hashes.SHA1())
    return builder.build().public_bytes(serialization.Encoding.DER)


def check_statuses(http_url: str, requests: list[bytes], path: str = "/ocsp") -> None:
    """Before timing: every answer is signed and the mix is what it should be."""
    import httpx2

    seen: dict[str, int] = {}
    with httpx2.Client(base_url=http_url, timeout=30) as http:
        for der in requests:
            answer = http.post(path, content=der, headers={"Content-Type": "application/ocsp-request"})
            status = ocsp.load_der_ocsp_response(answer.content)
            if status.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
                raise SystemExit(f"unexpected OCSP status {status.response_status} from {http_url}")
            seen[status.certificate_status.name] = seen.get(status.certificate_status.name, 0) + 1
    expected = {"GOOD": GOOD, "REVOKED": REVOKED, "UNKNOWN": UNKNOWN}
    if seen != expected:
        raise SystemExit(f"status mix {seen} from {http_url}, expected {expected}")


@dataclass(frozen=True)
class PeerMaterial:
    requests: list[bytes]
    folder: Path


def peer_material(folder: Path) -> PeerMaterial:
    """A CA, a delegated responder, an ``index.txt`` (good and revoked serials) and pre-signed responses
    (for cfssl), all ECDSA P-256 like certctl's."""
    now = datetime.now(UTC).replace(microsecond=0)
    ca_key = generate_private_key("ecdsa-p256")
    ca = build_self_signed_ca(
        subject=Subject(common_name="Peer Bench CA"),
        key=ca_key,
        not_before=now,
        not_after=now + timedelta(days=365),
        path_length=None,
        name_constraints=None,
    )
    responder_key = generate_private_key("ecdsa-p256")
    responder = build_responder_certificate(
        ca_cert=ca,
        ca_key=ca_key,
        responder_key=responder_key,
        not_before=now,
        not_after=now + timedelta(days=30),
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "responder.pem").write_bytes(responder.public_bytes(pem))
    (folder / "responder.key").write_bytes(private_key_to_pem(responder_key))
    serials = [0x1000 + index for index in range(GOOD + REVOKED)]
    expiry = (now + timedelta(days=90)).strftime("%y%m%d%H%M%SZ")
    revoked_at = now.strftime("%y%m%d%H%M%SZ")
    lines = []
    for index, serial in enumerate(serials):
        state, revoked = ("R", f"{revoked_at},keyCompromise") if index >= GOOD else ("V", "")
        lines.append(f"{state}\t{expiry}\t{revoked}\t{serial:X}\tunknown\t/CN=leaf-{serial:x}")
    (folder / "index.txt").write_text("\n".join(lines) + "\n")
    (folder / "index.txt.attr").write_text("unique_subject = no\n")
    requests = [request_der(ca, serial) for serial in serials]
    requests += [request_der(ca, 0xDEAD0000 + index) for index in range(UNKNOWN)]
    signer = Signer(responder, responder_key, delegated=True)
    name_hash, key_hash = issuer_hashes(ca, hashes.SHA1())
    with (folder / "responses.txt").open("w") as out:
        for index, serial in enumerate(serials + [0xDEAD0000 + i for i in range(UNKNOWN)]):
            cert_id = CertId(hashes.SHA1(), name_hash, key_hash, serial)
            if index < GOOD:
                status = SingleStatus(cert_id, CertState.GOOD)
            elif index < GOOD + REVOKED:
                status = SingleStatus(cert_id, CertState.REVOKED, now, x509.ReasonFlags.key_compromise)
            else:
                status = SingleStatus(cert_id, CertState.UNKNOWN)
            der = build_response(
                statuses=[status],
                signer=signer,
                this_update=now,
                next_update=now + timedelta(hours=1),
                nonce=None,
            )
            out.write(base64.b64encode(der).decode() + "\n")
    return PeerMaterial(requests, folder)


def bench_in_namespace(
    server: str, material: PeerMaterial, seconds: int, connections: int
) -> dict[str, Figure]:
    """Run the peer and wrk inside one fresh network namespace (loopback only)."""
    folder = material.folder
    port = free_port()
    if server == "openssl":
        start = (
            f"timeout -s KILL {seconds + 40} openssl ocsp -index {folder}/index.txt -port {port} "
            f"-rsigner {folder}/responder.pem "
            f"-rkey {folder}/responder.key -CA {folder}/ca.pem -nmin 60 "
            f">{folder}/openssl.log 2>&1 &"
        )
    else:
        start = (
            f"timeout -s KILL {seconds + 40} cfssl ocspserve -address 127.0.0.1 -port {port} "
            f"-responses {folder}/responses.txt "
            f">{folder}/cfssl.log 2>&1 &"
        )
    figures = {}
    for method in ("POST", "GET"):
        script = wrk_script(material.requests, method, folder, prefix="/")
        this_script = f"{sys.executable} {Path(__file__).resolve()}"
        check = f"timeout 20 {this_script} --check http://127.0.0.1:{port} --requests {folder}"
        url = f"http://127.0.0.1:{port}/"
        if server == "openssl":
            wrk = (
                f"{this_script} --sequential {url} --method {method} --requests {folder} --seconds {seconds}"
            )
        else:
            wrk = f"timeout -s KILL {seconds + 20} " + " ".join(
                wrk_command(url, script, seconds, connections)
            )
        body = f"ip link set lo up; {start} PEER=$!; sleep 1.5; {check} && {wrk}; kill $PEER; wait"
        run = subprocess.run(
            ["unshare", "-n", "bash", "-c", body], capture_output=True, text=True, timeout=seconds + 60
        )
        if run.returncode != 0 and "RESULT" not in run.stdout:
            raise SystemExit(f"{server} run failed:\n{run.stdout}\n{run.stderr}")
        figures[method] = parse_wrk(run.stdout + run.stderr)
    return figures


def sequential(url: str, requests: list[bytes], method: str, seconds: int) -> None:
    """One request per connection, one at a time, for ``seconds``: how ``openssl ocsp`` serves (it
    answers HTTP/1.0 and closes; wrk's keep-alive requests got no complete response from it). Prints
    the same RESULT line as the wrk script."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        der = requests[len(latencies) % len(requests)]
        begun = time.perf_counter()
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        if method == "GET":
            connection.request("GET", "/" + quote(base64.b64encode(der).decode(), safe=""))
        else:
            connection.request("POST", "/", der, {"Content-Type": "application/ocsp-request"})
        response = connection.getresponse()
        response.read()
        connection.close()
        errors += response.status != 200
        latencies.append(time.perf_counter() - begun)
    duration = time.perf_counter() - started
    p99 = sorted(latencies)[int(len(latencies) * 0.99)]
    print(f"RESULT {len(latencies)} {int(duration * 1e6)} {int(p99 * 1e6)} {errors} 0")


def save_requests(material: PeerMaterial) -> None:
    for index, der in enumerate(material.requests):
        (material.folder / f"request-{index:02d}.der").write_bytes(der)


def load_requests(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(folder.glob("request-*.der"))]


def report(figures: dict[str, dict[str, Figure]], seconds: int, connections: int) -> None:
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"wrk: 2 threads, {connections} keep-alive connections, {seconds} s per run")
    print(f"mix per cycle: {GOOD} good, {REVOKED} revoked, {UNKNOWN} unknown; no nonce")
    print("| server | method | responses/s | p99 | errors |")
    print("|---|---|---|---|---|")
    for server, by_method in figures.items():
        for method, figure in by_method.items():
            rate = f"{figure.requests_per_second:,.0f}"
            print(f"| {server} | {method} | {rate} | {figure.p99_ms:.1f} ms | {figure.errors} |")
    ours = figures["certctl"]
    for peer in (name for name in figures if name != "certctl"):
        for method in ("POST", "GET"):
            theirs = figures[peer][method]
            if theirs.errors or not theirs.requests_per_second:
                print(f"certctl / {peer} {method}: n/a ({theirs.errors} errors)")
                continue
            ratio = ours[method].requests_per_second / theirs.requests_per_second
            print(f"certctl / {peer} {method}: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--check", help=argparse.SUPPRESS)
    parser.add_argument("--requests", help=argparse.SUPPRESS)
    parser.add_argument("--sequential", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sequential:
        sequential(args.sequential, load_requests(Path(args.requests)), args.method, args.seconds)
        return
    if args.check:
        check_statuses(args.check, load_requests(Path(args.requests)), path="/")
        return
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        figures = {"certctl": bench_certctl(folder, args.seconds, args.connections)}
        (folder / "peer").mkdir()
        material = peer_material(folder / "peer")
        save_requests(material)
        figures["openssl ocsp"] = bench_in_namespace("openssl", material, args.seconds, args.connections)
        if shutil.which("cfssl"):
            figures["cfssl ocspserve"] = bench_in_namespace("cfssl", material, args.seconds, args.connections)
        else:
            print("cfssl not installed (Debian golang-cfssl): skipped")
        report(figures, args.seconds, args.connections)


if __name__ == "__main__":
    main()
