"""docs/reference/targets.md is generated from the target option models; it must never drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from certctl.agent.targets import TargetConfigError, parse_options, registry, secret_fields
from certctl.agent.targets.reference import render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "targets.md"
EXPECTED = {
    "apache",
    "caddy",
    "dovecot",
    "envoy",
    "files",
    "haproxy",
    "keystore",
    "nginx",
    "postfix",
    "ssh",
    "traefik",
}


def test_targets_page_matches_the_models() -> None:
    assert PAGE.read_text() == render(), "run `make docs` and commit docs/reference/targets.md"


def test_every_target_type_loads() -> None:
    loaded, broken = registry()
    assert set(loaded) == EXPECTED
    assert broken == {}
    assert registry()[0]["ssh"].agentless
    assert "password" in secret_fields("keystore")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"certificate_path": "site.crt", "key_path": "/k"}, "absolute path"),
        ({"certificate_path": "/a/../b", "key_path": "/k"}, ".."),
        (
            {"certificate_path": "/c", "key_path": "/k", "test_command": ["sh", "-c", "nginx -t && rm x"]},
            "metacharacter",
        ),
        ({"certificate_path": "/c", "key_path": "/k", "test_command": []}, "at least the program"),
        ({"certificate_path": "/c", "key_path": "/k", "extra": 1}, "extra"),
        ({"key_path": "/k"}, "certificate_path"),
    ],
)
def test_bad_options_are_one_readable_line(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(TargetConfigError) as raised:
        parse_options("nginx", options)
    message = str(raised.value)
    assert fragment in message and "\n" not in message
