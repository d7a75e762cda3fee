"""The agent's loop: heartbeat, fetch work, make keys and CSRs, deploy, report — pull-only, with jitter
and bounded backoff. The server never connects to the agent.

One cycle handles what the server offers: for a certificate to *enrol* the agent makes (or reuses) the
pending key, sends the CSR and deploys what comes back; for one to *deploy* it finds the key by the
certificate's public key. Each target's deployer does the file transaction (lock, snapshot, switch,
test, reload, verify, roll back) and the outcome goes back to the server.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import random
import socket
from dataclasses import dataclass, field
from typing import Any

from certctl import __version__
from certctl.agent.api import AgentApi, AgentRetired, ServerError
from certctl.agent.deploy.base import Deployer, DeployResult, Material, Outcome, StepFailed
from certctl.agent.keys import KeyStore
from certctl.agent.state import StateDir
from certctl.agent.targets import TargetConfigError, build_deployer, parse_options

log = logging.getLogger("certctl.agent")

MAX_BACKOFF = 300.0
MISSING_KEY = "the private key of this certificate is not on this host; renew it to make a new key here"


def host_facts() -> dict[str, str]:
    return {
        "hostname": socket.gethostname()[:255],
        "os": f"{platform.system()} {platform.release()}"[:100],
        "arch": platform.machine()[:50],
        "version": __version__[:50],
    }


@dataclass
class CycleReport:
    enrolled: int = 0
    held: int = 0
    deployed: int = 0
    failed: int = 0
    checked: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0


class AgentRunner:
    def __init__(self, state: StateDir, api: AgentApi, *, dry_run: bool = False) -> None:
        self._state = state
        self._api = api
        self._keys = KeyStore(state.keys)
        self.dry_run = dry_run

    async def heartbeat(self) -> None:
        await self._api.heartbeat(host_facts())

    async def cycle(self) -> CycleReport:
        report = CycleReport()
        work = await self._api.work()
        for check in work.get("checks", []):
            await self._check(check["target"], report)
        for item in work.get("items", []):
            await self._item(item, report)
        return report

    async def run_forever(self, *, poll_seconds: float = 30.0, heartbeat_seconds: float = 60.0) -> int:
        """Until retired (exit 0) or cancelled. Errors back off exponentially up to five minutes."""
        failures = 0
        last_heartbeat = -heartbeat_seconds
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - last_heartbeat >= heartbeat_seconds:
                    await self.heartbeat()
                    last_heartbeat = loop.time()
                report = await self.cycle()
                for line in report.lines:
                    log.info("%s", line)
                failures = 0
                delay = poll_seconds * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not security)
            except AgentRetired:
                log.warning("this agent was retired on the server; exiting")
                self._state.forget_credential()
                return 0
            except ServerError as exc:
                failures += 1
                delay = min(MAX_BACKOFF, poll_seconds * 2 ** min(failures, 8)) * random.uniform(0.5, 1.0)  # noqa: S311
                log.warning("server call failed (%s); retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)

    async def _check(self, target: dict[str, Any], report: CycleReport) -> None:
        try:
            deployer = self._deployer(target)
            message = await deployer.check()
            ok = True
        except (StepFailed, TargetConfigError) as exc:
            ok, message = False, str(exc)
        except Exception as exc:
            ok, message = False, f"{type(exc).__name__}: {exc}"
        report.checked += 1
        report.lines.append(f"check {target['name']}: {'ok' if ok else 'FAILED'}: {message}")
        if not self.dry_run:
            await self._api.report_check(target["id"], ok=ok, message=message)

    async def _item(self, item: dict[str, Any], report: CycleReport) -> None:
        name = item["certificate_name"]
        version = item.get("version")
        if item["action"] == "enrol":
            if self.dry_run:
                report.lines.append(f"{name}: would generate a {item['key_type']} key and send a CSR")
                return
            csr = self._keys.csr_for(
                item["certificate_id"],
                item["key_type"],
                common_name=item.get("common_name"),
                sans=item["sans"],
            )
            answer = await self._api.submit_csr(item["certificate_id"], csr)
            if answer["status"] != "issued":
                report.held += 1
                report.lines.append(f"{name}: CSR held for approval; the key waits here")
                return
            version = answer["version"]
            self._keys.file_certified(item["certificate_id"], version["cert_pem"])
            report.enrolled += 1
            report.lines.append(f"{name}: key generated here, certificate {version['serial']} issued")
        if version is None:
            return
        key_pem = self._keys.key_for(version["cert_pem"])
        for deployment in item["deployments"]:
            target = deployment["target"]
            if key_pem is None:
                result = DeployResult(Outcome.FAILED, MISSING_KEY)
            else:
                material = Material(
                    certificate_pem=version["cert_pem"],
                    chain_pem=version["chain_pem"],
                    private_key_pem=key_pem,
                    fingerprint_sha256=version["fingerprint_sha256"],
                )
                result = await self._deploy(target, material)
            self._tally(report, name, target["name"], result)
            if not self.dry_run:
                await self._api.report(
                    deployment["id"],
                    {
                        "outcome": str(result.outcome),
                        "message": result.message[:4000],
                        "steps": [step[:500] for step in result.steps[:100]],
                        "served_fingerprint": result.served_fingerprint,
                    },
                )

    async def _deploy(self, target: dict[str, Any], material: Material) -> DeployResult:
        try:
            deployer = self._deployer(target)
            return await deployer.deploy(material, dry_run=self.dry_run)
        except TargetConfigError as exc:
            return DeployResult(Outcome.FAILED, str(exc))
        except StepFailed as exc:
            return DeployResult(Outcome.FAILED, str(exc))
        except Exception as exc:  # a deployer bug must not stop the agent; report it
            log.warning("deployer for %s raised", target["name"], exc_info=True)
            return DeployResult(Outcome.FAILED, f"{type(exc).__name__}: {exc}")

    def _deployer(self, target: dict[str, Any]) -> Deployer:
        options = parse_options(target["type"], target["options"])
        return build_deployer(target["type"], options, state_dir=self._state.target_dir(target["id"]))

    @staticmethod
    def _tally(report: CycleReport, name: str, target: str, result: DeployResult) -> None:
        if result.ok:
            report.deployed += 1
        else:
            report.failed += 1
        report.lines.append(f"{name} -> {target}: {result.outcome}: {result.message}")
