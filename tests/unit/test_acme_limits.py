"""What the ACME limits per registered domain and per client address count a name or an address as."""

from __future__ import annotations

import pytest

from certctl.services.acme_limits import address_key, registered_domain


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("dns", "a.b.example.com", "example.com"),
        ("dns", "www.example.co.uk", "example.co.uk"),
        ("dns", "*.svc.example.co.uk", "example.co.uk"),
        ("dns", "example.com", "example.com"),
        ("dns", "co.uk", "co.uk"),  # a public suffix counts as itself
        ("dns", "svc.corp.internal", "corp.internal"),  # an unlisted top-level label is a suffix
        ("dns", "team.github.io", "team.github.io"),  # the list's private section
        ("ip", "192.0.2.7", "192.0.2.7"),
        ("ip", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_registered_domain(kind: str, value: str, expected: str) -> None:
    assert registered_domain(kind, value) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("testclient", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_address_key(host: str | None, expected: str) -> None:
    assert address_key(host) == expected
