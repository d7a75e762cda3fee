"""Name constraints (RFC 5280 §4.2.1.10) and profile SAN patterns in certctl.pki.names."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from certctl.pki.errors import NameConstraintError
from certctl.pki.names import (
    NameConstraints,
    check_constraints_within,
    check_names,
    inherit_constraints,
    match_san_pattern,
)


def test_values_are_canonicalised() -> None:
    nc = NameConstraints(
        permitted_dns=("Example.COM", ".Corp.Example.com", "example.com"),
        permitted_ip=("10.0.0.0/8", "2001:DB8::/32", "192.0.2.1"),
        permitted_email=("Ops@Example.com", ".Example.ORG"),
    )
    assert nc.permitted_dns == ("example.com", ".corp.example.com")
    assert nc.permitted_ip == ("10.0.0.0/8", "2001:db8::/32", "192.0.2.1/32")
    assert nc.permitted_email == ("Ops@example.com", ".example.org")
    assert not nc.is_empty
    assert NameConstraints().is_empty


@pytest.mark.parametrize(
    "kwargs",
    [
        {"permitted_dns": ("-bad.example.com",)},
        {"permitted_dns": ("a..example.com",)},
        {"permitted_dns": ("*.example.com",)},
        {"permitted_dns": ("",)},
        {"permitted_dns": ("exa mple.com",)},
        {"excluded_dns": ("x" * 64 + ".com",)},
        {"permitted_ip": ("10.0.0.1/8",)},
        {"permitted_ip": ("10.0.0.0/33",)},
        {"excluded_ip": ("example.com",)},
        {"permitted_email": ("@example.com",)},
        {"permitted_email": ("a b@example.com",)},
        {"permitted_email": ("user@-bad.com",)},
        {"permitted_dns": "example.com"},
        {"permitted_dns": (1,)},
    ],
)
def test_bad_values_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(NameConstraintError):
        NameConstraints(**kwargs)  # type: ignore[arg-type]


def test_dict_round_trip_and_validation() -> None:
    nc = NameConstraints(permitted_dns=("example.com",), excluded_ip=("10.1.0.0/16",))
    data = nc.to_dict()
    assert data["permitted_dns"] == ["example.com"]
    assert data["excluded_email"] == []
    assert set(data) == {
        "permitted_dns",
        "excluded_dns",
        "permitted_ip",
        "excluded_ip",
        "permitted_email",
        "excluded_email",
    }
    assert NameConstraints.from_dict(data) == nc
    assert NameConstraints.from_dict({}) == NameConstraints()
    with pytest.raises(NameConstraintError, match="unknown"):
        NameConstraints.from_dict({"permitted_uri": ["x"]})
    with pytest.raises(NameConstraintError, match="list of strings"):
        NameConstraints.from_dict({"permitted_dns": "example.com"})
    with pytest.raises(NameConstraintError):
        NameConstraints.from_dict({"permitted_ip": ["999.0.0.0/8"]})


def test_extension_round_trip() -> None:
    assert NameConstraints().to_extension() is None
    nc = NameConstraints(
        permitted_dns=("example.com",),
        permitted_ip=("10.0.0.0/8", "fd00::/8"),
        excluded_dns=("secret.example.com",),
        excluded_email=(".example.org",),
    )
    ext = nc.to_extension()
    assert ext is not None
    assert x509.DNSName("example.com") in (ext.permitted_subtrees or [])
    assert x509.IPAddress(ipaddress.ip_network("fd00::/8")) in (ext.permitted_subtrees or [])
    assert NameConstraints.from_extension(ext) == nc
    assert NameConstraints.from_extension(x509.Extension(ext.oid, True, ext)) == nc
    only_excluded = NameConstraints(excluded_dns=("bad.example",)).to_extension()
    assert only_excluded is not None
    assert only_excluded.permitted_subtrees is None


def test_from_extension_refuses_unsupported_forms_unless_asked() -> None:
    directory = x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme")]))
    ext = x509.NameConstraints(
        permitted_subtrees=[directory, x509.DNSName("example.com")], excluded_subtrees=None
    )
    with pytest.raises(NameConstraintError, match="DirectoryName"):
        NameConstraints.from_extension(ext)
    lenient = NameConstraints.from_extension(ext, ignore_unsupported=True)
    assert lenient == NameConstraints(permitted_dns=("example.com",))


@pytest.mark.parametrize(
    ("name", "constraint", "ok"),
    [
        ("example.com", "example.com", True),
        ("www.example.com", "example.com", True),
        ("a.b.example.com", "example.com", True),
        ("WWW.EXAMPLE.COM", "example.com", True),
        ("www.example.com.", "example.com", True),
        ("badexample.com", "example.com", False),
        ("example.com.evil.org", "example.com", False),
        ("example.org", "example.com", False),
        ("example.com", ".example.com", False),
        ("www.example.com", ".example.com", True),
        ("*.example.com", "example.com", True),
        ("*.example.com", "www.example.com", False),
    ],
)
def test_dns_permitted(name: str, constraint: str, ok: bool) -> None:
    problems = check_names(NameConstraints(permitted_dns=(constraint,)), dns_names=[name])
    assert (problems == []) is ok, problems


def test_dns_excluded_wins_over_permitted() -> None:
    nc = NameConstraints(permitted_dns=("example.com",), excluded_dns=("secret.example.com",))
    assert check_names(nc, dns_names=["www.example.com", "example.com"]) == []
    problems = check_names(nc, dns_names=["db.secret.example.com", "www.example.com"])
    assert len(problems) == 1
    assert "excluded" in problems[0]
    assert "db.secret.example.com" in problems[0]


def test_wildcard_names_cannot_sneak_past_exclusions() -> None:
    nc = NameConstraints(excluded_dns=("secret.example.com",))
    assert check_names(nc, dns_names=["*.example.com"]) != []
    assert check_names(nc, dns_names=["*.other.example.com"]) == []
    assert (
        check_names(NameConstraints(excluded_dns=(".secret.example.com",)), dns_names=["*.example.com"]) == []
    )


def test_dns_without_permitted_list_allows_anything_not_excluded() -> None:
    nc = NameConstraints(excluded_dns=("evil.org",), permitted_ip=("10.0.0.0/8",))
    assert check_names(nc, dns_names=["anything.example.net"]) == []
    assert check_names(nc, dns_names=["www.evil.org"]) != []


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("10.1.2.3", True),
        ("10.255.255.255", True),
        ("11.0.0.1", False),
        ("10.9.0.1", False),
        ("2001:db8::1", True),
        ("2001:db9::1", False),
        ("::ffff:10.1.2.3", False),
        ("not-an-ip", False),
    ],
)
def test_ip_constraints(address: str, ok: bool) -> None:
    nc = NameConstraints(permitted_ip=("10.0.0.0/8", "2001:db8::/32"), excluded_ip=("10.9.0.0/16",))
    problems = check_names(nc, ip_addresses=[address])
    assert (problems == []) is ok, problems


def test_v4_only_permitted_list_refuses_v6() -> None:
    problems = check_names(NameConstraints(permitted_ip=("192.0.2.0/24",)), ip_addresses=["::1"])
    assert problems
    assert "outside the permitted IP ranges" in problems[0]


@pytest.mark.parametrize(
    ("email", "constraint", "ok"),
    [
        ("ops@example.com", "ops@example.com", True),
        ("ops@EXAMPLE.com", "ops@example.com", True),
        ("dev@example.com", "ops@example.com", False),
        ("ops@example.com", "example.com", True),
        ("ops@mail.example.com", "example.com", False),
        ("ops@mail.example.com", ".example.com", True),
        ("ops@example.com", ".example.com", False),
        ("ops@example.org", "example.com", False),
        ("not-an-email", "example.com", False),
    ],
)
def test_email_permitted(email: str, constraint: str, ok: bool) -> None:
    problems = check_names(NameConstraints(permitted_email=(constraint,)), emails=[email])
    assert (problems == []) is ok, problems


def test_email_excluded() -> None:
    nc = NameConstraints(excluded_email=(".example.org", "ceo@example.com"))
    assert check_names(nc, emails=["a@example.com", "b@example.org"]) == []
    assert len(check_names(nc, emails=["ceo@example.com", "x@mail.example.org"])) == 2


def test_empty_constraints_allow_everything() -> None:
    assert check_names(NameConstraints(), dns_names=["x.y"], ip_addresses=["::1"], emails=["a@b.c"]) == []


@pytest.mark.parametrize(
    ("child", "parent", "ok"),
    [
        (
            NameConstraints(permitted_dns=("a.example.com",)),
            NameConstraints(permitted_dns=("example.com",)),
            True,
        ),
        (
            NameConstraints(permitted_dns=("example.com",)),
            NameConstraints(permitted_dns=("example.com",)),
            True,
        ),
        (
            NameConstraints(permitted_dns=(".example.com",)),
            NameConstraints(permitted_dns=("example.com",)),
            True,
        ),
        (
            NameConstraints(permitted_dns=("example.com",)),
            NameConstraints(permitted_dns=(".example.com",)),
            False,
        ),
        (
            NameConstraints(permitted_dns=(".a.example.com",)),
            NameConstraints(permitted_dns=(".example.com",)),
            True,
        ),
        (NameConstraints(permitted_dns=("com",)), NameConstraints(permitted_dns=("example.com",)), False),
        (
            NameConstraints(permitted_dns=("example.org",)),
            NameConstraints(permitted_dns=("example.com",)),
            False,
        ),
        (NameConstraints(permitted_ip=("10.1.0.0/16",)), NameConstraints(permitted_ip=("10.0.0.0/8",)), True),
        (NameConstraints(permitted_ip=("10.0.0.0/7",)), NameConstraints(permitted_ip=("10.0.0.0/8",)), False),
        (NameConstraints(permitted_ip=("fd00::/16",)), NameConstraints(permitted_ip=("10.0.0.0/8",)), False),
        (NameConstraints(permitted_email=("a@x.com",)), NameConstraints(permitted_email=("x.com",)), True),
        (NameConstraints(permitted_email=("x.com",)), NameConstraints(permitted_email=("a@x.com",)), False),
        (NameConstraints(permitted_email=(".m.x.com",)), NameConstraints(permitted_email=(".x.com",)), True),
        (NameConstraints(permitted_email=(".x.com",)), NameConstraints(permitted_email=("x.com",)), False),
        (NameConstraints(), NameConstraints(permitted_dns=("example.com",)), True),
        (NameConstraints(permitted_dns=("anything.org",)), NameConstraints(), True),
    ],
)
def test_check_constraints_within(child: NameConstraints, parent: NameConstraints, ok: bool) -> None:
    assert (check_constraints_within(child, parent) == []) is ok


def test_inherit_constraints() -> None:
    parent = NameConstraints(permitted_dns=("example.com",), excluded_ip=("10.0.0.0/8",))
    child = NameConstraints(permitted_dns=("a.example.com",), excluded_dns=("x.a.example.com",))
    assert inherit_constraints(None, None) is None
    assert inherit_constraints(child, None) == child
    assert inherit_constraints(None, parent) == parent
    assert inherit_constraints(child, parent) == NameConstraints(
        permitted_dns=("a.example.com",), excluded_dns=("x.a.example.com",), excluded_ip=("10.0.0.0/8",)
    )


@pytest.mark.parametrize(
    ("name", "pattern", "ok"),
    [
        ("a.example.com", "*.example.com", True),
        ("A.Example.COM", "*.EXAMPLE.com", True),
        ("*.example.com", "*.example.com", True),
        ("a.b.example.com", "*.example.com", False),
        ("example.com", "*.example.com", False),
        (".example.com", "*.example.com", False),
        ("aexample.com", "*.example.com", False),
        ("a.example.com.evil.org", "*.example.com", False),
        ("a_b.example.com", "*.example.com", True),
        ("-a.example.com", "*.example.com", False),
        ("a.example.com", "**.example.com", True),
        ("a.b.c.example.com", "**.example.com", True),
        ("*.b.example.com", "**.example.com", True),
        ("a.*.example.com", "**.example.com", False),
        ("a..example.com", "**.example.com", False),
        ("example.com", "**.example.com", False),
        ("www.example.com", "www.example.com", True),
        ("WWW.example.com", "www.EXAMPLE.com", True),
        ("a.www.example.com", "www.example.com", False),
        ("example.com", "www.example.com", False),
        ("*.example.com", "www.example.com", False),
    ],
)
def test_match_san_pattern(name: str, pattern: str, ok: bool) -> None:
    assert match_san_pattern(name, pattern) is ok
