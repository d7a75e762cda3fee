"""``certctl jobs`` against a live server: listing, filters, and one-line errors."""

from __future__ import annotations

from pathlib import Path

from support.cli import ok, ok_json, one_error_line, run
from support.live import LiveServer


def test_jobs_list_get_and_errors(live_server: LiveServer, tmp_path: Path) -> None:
    listed = ok_json(live_server, tmp_path, "jobs", "list", "--type", "renewal", "--limit", "5")
    assert isinstance(listed["items"], list)
    ok(live_server, tmp_path, "jobs", "list")
    assert one_error_line(run(live_server, tmp_path, "jobs", "get", "job_missing")).startswith("error: 404")
    bad = run(live_server, tmp_path, "jobs", "list", "--status", "sleeping")
    assert one_error_line(bad).startswith("error: 422")
