"""``certctl notifications`` against a live server, with a real local HTTP receiver for the webhook."""

from __future__ import annotations

import json
import time
from pathlib import Path

from support.cli import ok, ok_json, one_error_line, run
from support.live import LiveServer
from support.receivers import WEBHOOK_SECRET, http_receiver


def test_channel_with_secret_file_rule_and_test_message(live_server: LiveServer, tmp_path: Path) -> None:
    secret_file = tmp_path / "hmac"
    secret_file.write_text(WEBHOOK_SECRET + "\n")
    with http_receiver() as receiver:
        url_file = _url_file(tmp_path, receiver.url)
        created = ok_json(
            live_server, tmp_path, "notifications", "channels", "create", "--name", "cli-hook", "--type",
            "webhook", "--secret-file", f"hmac_secret={secret_file}", "--secret-file", f"url={url_file}",
        )  # fmt: skip
        assert created["secrets_set"] == ["hmac_secret", "url"]
        assert WEBHOOK_SECRET not in json.dumps(created)
        listed = ok(live_server, tmp_path, "notifications", "channels", "list")
        assert WEBHOOK_SECRET not in listed
        ok(live_server, tmp_path, "notifications", "channels", "test", created["id"])
        deadline = time.monotonic() + 20
        while not receiver.on("/webhook") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert receiver.on("/webhook"), "the signed test message did not arrive"
    rule = ok_json(live_server, tmp_path, "notifications", "rules", "create", "--name", "cli-rule",
                   "--channel", created["id"], "--event", "certificate.revoked")  # fmt: skip
    assert rule["channel_ids"] == [created["id"]]
    ok(live_server, tmp_path, "notifications", "deliveries", "list")
    absent = f"url={tmp_path / 'absent'}"
    missing = run(
        live_server, tmp_path, "notifications", "channels", "create", "--name", "x", "--type", "webhook",
        "--secret-file", absent,
    )  # fmt: skip
    assert one_error_line(missing).startswith("error:")
    ok(live_server, tmp_path, "notifications", "rules", "delete", rule["id"])
    ok(live_server, tmp_path, "notifications", "channels", "delete", created["id"])


def _url_file(folder: Path, base: str) -> Path:
    path = folder / "url"
    path.write_text(f"{base}/webhook\n")
    return path
