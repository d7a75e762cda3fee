"""Name constraints and certificate-profile name patterns.

:class:`NameConstraints` is the value form of the X.509 nameConstraints extension
(RFC 5280 §4.2.1.10) restricted to the three name forms certctl issues: dNSName,
iPAddress and rfc822Name.  :func:`check_names` applies the RFC 5280 §4.2.1.10 matching
rules to a set of subject names, :func:`check_constraints_within` checks that a
subordinate CA does not try to widen its issuer's permitted subtrees, and
:func:`match_san_pattern` implements the wildcard patterns used by certificate profiles.

DNS constraints follow RFC 5280: ``example.com`` covers ``example.com`` and every name
below it.  The leading-dot form ``.example.com`` (an OpenSSL/GnuTLS convention that
RFC 5280 only defines for URIs and mailboxes) covers only names strictly below it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from cryptography import x509

from certctl.pki.errors import NameConstraintError

__all__ = [
    "NameConstraints",
    "check_constraints_within",
    "check_names",
    "dns_name_in_subtree",
    "inherit_constraints",
    "match_san_pattern",
]

_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SAN_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_MAX_DNS_LENGTH = 253


def _normalize_domain(value: str, *, what: str) -> str:
    """Lower-case a domain (RFC 1034 §3.5 LDH labels); raise NameConstraintError when malformed."""
    domain = value.strip().lower()
    if not domain or len(domain) > _MAX_DNS_LENGTH:
        raise NameConstraintError(f"invalid {what} {value!r}: domain must be 1-{_MAX_DNS_LENGTH} characters")
    for label in domain.split("."):
        if not _LDH_LABEL.fullmatch(label):
            raise NameConstraintError(f"invalid {what} {value!r}: {label!r} is not a valid DNS label")
    return domain


def _normalize_dns_constraint(value: str) -> str:
    """Canonical form of a dNSName subtree: ``example.com`` or ``.example.com``."""
    text = value.strip()
    if text.startswith("."):
        return "." + _normalize_domain(text[1:], what="DNS constraint")
    return _normalize_domain(text, what="DNS constraint")


def _normalize_ip_constraint(value: str) -> str:
    """Canonical CIDR text of an iPAddress subtree (RFC 5280 §4.2.1.10: address plus mask)."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError:
        raise NameConstraintError(f"invalid IP constraint {value!r}: expected a CIDR network") from None


def _normalize_email_constraint(value: str) -> str:
    """Canonical rfc822Name subtree: a mailbox, a host, or ``.domain`` for any host below it."""
    text = value.strip()
    if "@" in text:
        local, _, domain = text.rpartition("@")
        if not local or any(ch.isspace() or ch == "@" for ch in local):
            raise NameConstraintError(f"invalid email constraint {value!r}: bad local part")
        return f"{local}@{_normalize_domain(domain, what='email constraint')}"
    if text.startswith("."):
        return "." + _normalize_domain(text[1:], what="email constraint")
    return _normalize_domain(text, what="email constraint")


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class NameConstraints:
    """Permitted and excluded subtrees per name form (RFC 5280 §4.2.1.10).

    Values are validated and canonicalised on construction (lower-case DNS, canonical
    CIDR text); malformed input raises :class:`NameConstraintError`.
    """

    permitted_dns: tuple[str, ...] = ()
    excluded_dns: tuple[str, ...] = ()
    permitted_ip: tuple[str, ...] = ()
    excluded_ip: tuple[str, ...] = ()
    permitted_email: tuple[str, ...] = ()
    excluded_email: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        normalizers = {
            "dns": _normalize_dns_constraint,
            "ip": _normalize_ip_constraint,
            "email": _normalize_email_constraint,
        }
        for field in fields(self):
            raw: object = getattr(self, field.name)
            if isinstance(raw, str) or not isinstance(raw, (tuple, list)):
                raise NameConstraintError(f"{field.name} must be a list of strings")
            if not all(isinstance(item, str) for item in raw):
                raise NameConstraintError(f"{field.name} must be a list of strings")
            normalize = normalizers[field.name.split("_", 1)[1]]
            object.__setattr__(self, field.name, _unique(normalize(item) for item in raw))

    @property
    def is_empty(self) -> bool:
        """True when no subtree of any kind is present (nothing is constrained)."""
        return not any(getattr(self, field.name) for field in fields(self))

    def to_extension(self) -> x509.NameConstraints | None:
        """The nameConstraints extension value, or None when empty (RFC 5280 forbids an empty one)."""
        permitted = _general_names(self.permitted_dns, self.permitted_ip, self.permitted_email)
        excluded = _general_names(self.excluded_dns, self.excluded_ip, self.excluded_email)
        if not permitted and not excluded:
            return None
        return x509.NameConstraints(permitted_subtrees=permitted or None, excluded_subtrees=excluded or None)

    @classmethod
    def from_extension(
        cls,
        ext: x509.NameConstraints | x509.Extension[x509.NameConstraints],
        *,
        ignore_unsupported: bool = False,
    ) -> NameConstraints:
        """Read a nameConstraints extension.

        Other name forms (directoryName, URI...) raise :class:`NameConstraintError`, or are
        skipped with ``ignore_unsupported`` (path validation still enforces them).
        """
        value = ext.value if isinstance(ext, x509.Extension) else ext
        permitted = _split_general_names(value.permitted_subtrees or (), ignore_unsupported)
        excluded = _split_general_names(value.excluded_subtrees or (), ignore_unsupported)
        return cls(
            permitted_dns=permitted[0],
            permitted_ip=permitted[1],
            permitted_email=permitted[2],
            excluded_dns=excluded[0],
            excluded_ip=excluded[1],
            excluded_email=excluded[2],
        )

    def to_dict(self) -> dict[str, list[str]]:
        """JSON-friendly form: every field name mapped to a list of strings."""
        return {field.name: list(getattr(self, field.name)) for field in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NameConstraints:
        """Inverse of :meth:`to_dict`; missing keys mean empty, unknown keys are refused."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise NameConstraintError(f"unknown name constraint field(s): {', '.join(unknown)}")
        values: dict[str, tuple[str, ...]] = {}
        for key, raw in data.items():
            if isinstance(raw, str) or not isinstance(raw, (list, tuple)):
                raise NameConstraintError(f"{key} must be a list of strings")
            values[key] = tuple(raw)
        return cls(**values)


def _general_names(dns: Iterable[str], ips: Iterable[str], emails: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(value) for value in dns]
    names.extend(x509.IPAddress(ipaddress.ip_network(value)) for value in ips)
    names.extend(x509.RFC822Name(value) for value in emails)
    return names


def _split_general_names(
    names: Iterable[x509.GeneralName], ignore_unsupported: bool
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    dns: list[str] = []
    ips: list[str] = []
    emails: list[str] = []
    for name in names:
        if isinstance(name, x509.DNSName):
            dns.append(name.value)
        elif isinstance(name, x509.IPAddress) and isinstance(
            name.value, (ipaddress.IPv4Network, ipaddress.IPv6Network)
        ):
            ips.append(str(name.value))
        elif isinstance(name, x509.RFC822Name):
            emails.append(name.value)
        elif not ignore_unsupported:
            raise NameConstraintError(f"unsupported name constraint form: {type(name).__name__}")
    return tuple(dns), tuple(ips), tuple(emails)


def dns_name_in_subtree(name: str, subtree: str) -> bool:
    """Whether a (lower-case) DNS name lies in a dNSName subtree (RFC 5280 §4.2.1.10).

    ``example.com`` matches itself and any name formed by adding labels on the left;
    ``.example.com`` matches only names strictly below ``example.com``.
    """
    if subtree.startswith("."):
        return name.endswith(subtree) and len(name) > len(subtree)
    return name == subtree or name.endswith("." + subtree)


def _wildcard_covers(name: str, subtree: str) -> bool:
    """Whether a wildcard name ``*.rest`` could stand for some name inside ``subtree``.

    Used for excluded subtrees: ``*.example.com`` must be refused under an exclusion of
    ``secret.example.com`` because it would be valid for that host.
    """
    if not name.startswith("*."):
        return False
    if dns_name_in_subtree(name, subtree):
        return True
    if subtree.startswith("."):
        return False
    head, _, tail = subtree.partition(".")
    return head != "" and tail == name[2:]


def _email_in_subtree(local: str, domain: str, subtree: str) -> bool:
    """rfc822Name matching (RFC 5280 §4.2.1.10): exact mailbox, exact host, or ``.domain``."""
    if "@" in subtree:
        sub_local, _, sub_domain = subtree.rpartition("@")
        return local == sub_local and domain == sub_domain
    if subtree.startswith("."):
        return domain.endswith(subtree)
    return domain == subtree


def _canonical_dns(name: str) -> str:
    lowered = name.strip().lower()
    return lowered[:-1] if lowered.endswith(".") else lowered


def check_names(
    constraints: NameConstraints,
    *,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    emails: Iterable[str] = (),
) -> list[str]:
    """Human-readable violations of ``constraints`` by the given subject names (empty list: all fine).

    Follows RFC 5280 §4.2.1.10: an excluded match always wins, and when permitted subtrees
    exist for a name form, every name of that form must fall inside one of them.  IPv4
    and IPv6 are one name form (iPAddress), so a v4-only permitted list refuses v6 names.
    Callers must include a host-like subject CN in ``dns_names`` themselves.
    """
    problems: list[str] = []
    for raw in dns_names:
        name = _canonical_dns(raw)
        hit = next((s for s in constraints.excluded_dns if _wildcard_covers(name, s)), None)
        if hit is None:
            hit = next((s for s in constraints.excluded_dns if dns_name_in_subtree(name, s)), None)
        if hit is not None:
            problems.append(f"DNS name {raw!r} is excluded by constraint {hit!r}")
        elif constraints.permitted_dns and not any(
            dns_name_in_subtree(name, s) for s in constraints.permitted_dns
        ):
            allowed = ", ".join(constraints.permitted_dns)
            problems.append(f"DNS name {raw!r} is outside the permitted DNS subtrees ({allowed})")
    excluded_nets = [ipaddress.ip_network(net) for net in constraints.excluded_ip]
    permitted_nets = [ipaddress.ip_network(net) for net in constraints.permitted_ip]
    for raw in ip_addresses:
        try:
            address = ipaddress.ip_address(raw.strip())
        except ValueError:
            problems.append(f"{raw!r} is not a valid IP address")
            continue
        hit_net = next((net for net in excluded_nets if address in net), None)
        if hit_net is not None:
            problems.append(f"IP address {raw!r} is excluded by constraint {str(hit_net)!r}")
        elif permitted_nets and not any(address in net for net in permitted_nets):
            allowed = ", ".join(constraints.permitted_ip)
            problems.append(f"IP address {raw!r} is outside the permitted IP ranges ({allowed})")
    for raw in emails:
        local, at, domain = raw.strip().rpartition("@")
        if not at or not local or not domain:
            problems.append(f"{raw!r} is not a valid email address")
            continue
        domain = _canonical_dns(domain)
        hit = next((s for s in constraints.excluded_email if _email_in_subtree(local, domain, s)), None)
        if hit is not None:
            problems.append(f"email address {raw!r} is excluded by constraint {hit!r}")
        elif constraints.permitted_email and not any(
            _email_in_subtree(local, domain, s) for s in constraints.permitted_email
        ):
            allowed = ", ".join(constraints.permitted_email)
            problems.append(f"email address {raw!r} is outside the permitted email subtrees ({allowed})")
    return problems


def _dns_subtree_within(child: str, parent: str) -> bool:
    """Whether every name in dNSName subtree ``child`` is also in subtree ``parent``."""
    if child.startswith("."):
        # Strict subdomains of C are all inside P exactly when C itself is in P's full subtree.
        return dns_name_in_subtree(child[1:], parent.lstrip("."))
    return dns_name_in_subtree(child, parent)


def _email_subtree_within(child: str, parent: str) -> bool:
    """Whether every mailbox matched by rfc822Name subtree ``child`` is matched by ``parent``."""
    if "@" in child:
        local, _, domain = child.rpartition("@")
        return _email_in_subtree(local, domain, parent)
    if "@" in parent:
        return False
    if child.startswith("."):
        return parent.startswith(".") and dns_name_in_subtree(child[1:], parent[1:])
    return _email_in_subtree("x", child, parent)


def check_constraints_within(child: NameConstraints, parent: NameConstraints) -> list[str]:
    """Permitted subtrees of a subordinate CA that escape its issuer's permitted subtrees.

    RFC 5280 §6.1.4 intersects constraints along the path, so a wider child subtree
    would never validate; refusing it at issuance makes the mistake visible.  A child
    with no permitted list for a name form simply inherits the parent's.
    """
    problems: list[str] = []
    if parent.permitted_dns:
        for sub in child.permitted_dns:
            if not any(_dns_subtree_within(sub, p) for p in parent.permitted_dns):
                problems.append(f"DNS constraint {sub!r} is not within the issuer's permitted DNS subtrees")
    if parent.permitted_ip:
        parent_nets = [ipaddress.ip_network(p) for p in parent.permitted_ip]
        for sub in child.permitted_ip:
            net = ipaddress.ip_network(sub)
            if not any(_network_within(net, p) for p in parent_nets):
                problems.append(f"IP constraint {sub!r} is not within the issuer's permitted IP ranges")
    if parent.permitted_email:
        for sub in child.permitted_email:
            if not any(_email_subtree_within(sub, p) for p in parent.permitted_email):
                problems.append(f"email constraint {sub!r} is not within the issuer's permitted subtrees")
    return problems


def inherit_constraints(
    child: NameConstraints | None, parent: NameConstraints | None
) -> NameConstraints | None:
    """The constraints a subordinate CA should carry so it states its effective limits itself.

    Path validation intersects permitted subtrees and unions excluded ones along the path
    (RFC 5280 §6.1.4 (g)), so writing that result into the child changes nothing for
    verifiers but lets issuance checks see every inherited limit from the issuing CA
    alone.  ``child`` is assumed to be within ``parent`` (see
    :func:`check_constraints_within`).
    """
    if parent is None or parent.is_empty:
        return child
    if child is None:
        return parent
    return NameConstraints(
        permitted_dns=child.permitted_dns or parent.permitted_dns,
        excluded_dns=parent.excluded_dns + child.excluded_dns,
        permitted_ip=child.permitted_ip or parent.permitted_ip,
        excluded_ip=parent.excluded_ip + child.excluded_ip,
        permitted_email=child.permitted_email or parent.permitted_email,
        excluded_email=parent.excluded_email + child.excluded_email,
    )


def _network_within(
    child: ipaddress.IPv4Network | ipaddress.IPv6Network,
    parent: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> bool:
    if isinstance(child, ipaddress.IPv4Network) and isinstance(parent, ipaddress.IPv4Network):
        return child.subnet_of(parent)
    if isinstance(child, ipaddress.IPv6Network) and isinstance(parent, ipaddress.IPv6Network):
        return child.subnet_of(parent)
    return False


def _san_label_ok(label: str, *, leftmost: bool) -> bool:
    return (leftmost and label == "*") or _SAN_LABEL.fullmatch(label) is not None


def match_san_pattern(name: str, pattern: str) -> bool:
    """Whether a requested subject name is allowed by a certificate-profile pattern (case-insensitive).

    ``*.example.com`` allows exactly one extra label (``a.example.com`` and the literal
    wildcard ``*.example.com``, not ``a.b.example.com``); ``**.example.com`` allows any
    depth of subdomains but not the apex; any other pattern allows only itself.  A
    ``*`` label is only accepted leftmost, as in RFC 6125 §6.4.3 wildcard names.
    """
    candidate = name.strip().lower()
    rule = pattern.strip().lower()
    for prefix, max_labels in (("**.", None), ("*.", 1)):
        if rule.startswith(prefix):
            suffix = rule[len(prefix) - 1 :]
            if not candidate.endswith(suffix) or len(candidate) == len(suffix):
                return False
            labels = candidate[: -len(suffix)].split(".")
            if max_labels is not None and len(labels) > max_labels:
                return False
            return all(_san_label_ok(label, leftmost=i == 0) for i, label in enumerate(labels))
    return candidate == rule
