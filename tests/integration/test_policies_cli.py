"""``certctl policies`` against a live server: create from a rules file, inspect, preview violations,
see a refusal as one error line, change and delete. The policy only targets an environment no other test
uses, so the shared live server keeps issuing for everyone else."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import ok, ok_json, one_error_line, run
from support.live import LiveServer

ENV = "cli-policy-env"
ISSUE = ["certs", "issue", "--issuer", "local", "--profile", "default"]


def test_policies_create_get_violations_update_delete(live_server: LiveServer, tmp_path: Path) -> None:
    issued = ok_json(
        live_server, tmp_path, *ISSUE, "--name", "cli-pol-before", "--cn", "a.secret.example.test",
        "--environment", ENV, "--key-out", str(tmp_path / "before.key"),
    )  # fmt: skip
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            [{"type": "denied_domains", "patterns": ["**.secret.example.test"], "environments": [ENV]}]
        )
    )
    created = ok_json(
        live_server, tmp_path, "policies", "create", "--name", "cli-secret", "--file", str(rules)
    )
    assert created["rules"][0]["patterns"] == ["**.secret.example.test"]
    try:
        assert "cli-secret" in ok(live_server, tmp_path, "policies", "list")
        table = ok(live_server, tmp_path, "policies", "get", "cli-secret")
        assert "denied_domains" in table and "**.secret.example.test" in table

        found = ok_json(live_server, tmp_path, "policies", "violations", "cli-secret", "--all")
        assert [item["certificate_id"] for item in found["items"]] == [issued["id"]]
        assert "cli-pol-before" in ok(live_server, tmp_path, "policies", "violations", "cli-secret")

        refused = run(
            live_server, tmp_path, *ISSUE, "--name", "cli-pol-after", "--cn", "b.secret.example.test",
            "--environment", ENV, "--key-out", str(tmp_path / "after.key"),
        )  # fmt: skip
        line = one_error_line(refused)
        assert "422" in line and 'policy "cli-secret" rule 1 (denied_domains)' in line
        assert not (tmp_path / "after.key").exists()

        rules.write_text(json.dumps({"rules": [{"type": "wildcards", "mode": "sometimes"}]}))
        bad = run(live_server, tmp_path, "policies", "update", "cli-secret", "--file", str(rules))
        assert "422" in one_error_line(bad)
        disabled = ok_json(live_server, tmp_path, "policies", "update", "cli-secret", "--disabled")
        assert disabled["enabled"] is False
        assert "nothing to change" in one_error_line(run(live_server, tmp_path, "policies", "update", "x"), 2)
        rules.write_text("{not json")
        assert "not valid JSON" in one_error_line(
            run(live_server, tmp_path, "policies", "create", "--name", "x", "--file", str(rules))
        )
    finally:
        ok(live_server, tmp_path, "policies", "delete", "cli-secret")
    assert "404" in one_error_line(run(live_server, tmp_path, "policies", "get", "cli-secret"))
