"""Run the ``certctl`` CLI as a user would: a subprocess with only CERTCTL_* settings from the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.live import LiveServer

CERTCTL = [sys.executable, "-m", "certctl.cli.main"]


def run(
    live: LiveServer,
    cwd: Path,
    *args: str,
    key: str | None = None,
    server: str | None = None,
    trust: bool = True,
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CERTCTL_") and k not in ("COLUMNS", "LINES")
    }
    env |= {"CERTCTL_SERVER": server or live.url, "CERTCTL_API_KEY": key or live.admin_key}
    if trust:
        env["CERTCTL_CA_BUNDLE"] = str(live.ca_bundle)
    return subprocess.run([*CERTCTL, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def ok(live: LiveServer, cwd: Path, *args: str, key: str | None = None) -> str:
    result = run(live, cwd, *args, key=key)
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    return result.stdout


def ok_json(live: LiveServer, cwd: Path, *args: str, key: str | None = None) -> Any:
    return json.loads(ok(live, cwd, *args, "--output", "json", key=key))


def one_error_line(result: subprocess.CompletedProcess[str], exit_code: int = 1) -> str:
    """The failure is exit ``exit_code`` and exactly one ``error: ...`` line on stderr, no traceback."""
    assert result.returncode == exit_code, f"exit {result.returncode}: {result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]
