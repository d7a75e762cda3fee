"""DNS name patterns for issuance policies, and how they meet requested names (wildcards included).

Pattern syntax (case-insensitive, a trailing dot is ignored):

- ``example.com``: exactly that name.
- ``*.example.com``: one label below it (``a.example.com``, and the literal wildcard name
  ``*.example.com``), not ``a.b.example.com`` and not the apex.
- ``**.example.com`` or ``.example.com``: any depth below it (``a.example.com``, ``a.b.example.com``,
  ``*.a.example.com``), not the apex. ``.example.com`` is the OpenSSL nameConstraints spelling.

A requested wildcard name ``*.s`` stands for every name one label below ``s`` (RFC 6125 §6.4.3), so it
is judged by the set of names it is valid for, not by its text: :func:`covers` (an allow-list) needs the
whole set inside the pattern, :func:`overlaps` (a deny-list) refuses it as soon as one name of the set
falls in the pattern. A deny of ``api.prod.example.com`` therefore also refuses ``*.prod.example.com``,
and a deny of ``*.prod.example.com`` refuses the literal wildcard ``*.prod.example.com``.
:class:`PatternSet` answers the same questions for a whole list of patterns with a few lookups per name.

Pure: no I/O. :mod:`certctl.pki.names` has a profile-pattern matcher, but the layer rules keep
``domain`` from importing ``pki`` and its literal matching has no deny (overlap) form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
MAX_NAME_LENGTH = 253


class Reach(StrEnum):
    """Which names a pattern (or a requested name) stands for, relative to its ``base``."""

    EXACT = "exact"
    ONE_LABEL = "one_label"
    ANY_DEPTH = "any_depth"


@dataclass(frozen=True)
class DnsPattern:
    reach: Reach
    base: str

    def __str__(self) -> str:
        prefix = {Reach.EXACT: "", Reach.ONE_LABEL: "*.", Reach.ANY_DEPTH: "**."}[self.reach]
        return prefix + self.base


def _clean(text: str) -> str:
    return text.strip().lower().rstrip(".")


def parse_pattern(text: str) -> DnsPattern:
    """The pattern ``text`` stands for; ``ValueError`` with a readable reason when it is malformed."""
    value = _clean(text)
    reach, base = Reach.EXACT, value
    for prefix, prefix_reach in (("**.", Reach.ANY_DEPTH), ("*.", Reach.ONE_LABEL), (".", Reach.ANY_DEPTH)):
        if value.startswith(prefix):
            reach, base = prefix_reach, value[len(prefix) :]
            break
    if not base or len(base) > MAX_NAME_LENGTH:
        raise ValueError(f"pattern {text!r} needs a domain of 1-{MAX_NAME_LENGTH} characters")
    for label in base.split("."):
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"pattern {text!r}: {label!r} is not a DNS label (a wildcard may only lead: *. or **.)"
            )
    return DnsPattern(reach, base)


def requested(name: str) -> DnsPattern:
    """A requested subject name as the set of names a certificate for it is valid for: a name whose first
    label holds ``*`` covers one label below its parent; any other name covers itself only."""
    value = _clean(name)
    first, dot, parent = value.partition(".")
    if "*" in first and dot and parent:
        return DnsPattern(Reach.ONE_LABEL, parent)
    return DnsPattern(Reach.EXACT, value)


def is_wildcard(name: str) -> bool:
    return requested(name).reach is Reach.ONE_LABEL


def _strictly_below(name: str, suffix: str) -> bool:
    return name.endswith("." + suffix)


def _one_label_below(name: str, suffix: str) -> bool:
    return _strictly_below(name, suffix) and "." not in name[: -len(suffix) - 1]


def _at_or_below(name: str, suffix: str) -> bool:
    return name == suffix or _strictly_below(name, suffix)


def _in_pattern(name: str, pattern: DnsPattern) -> bool:
    """One concrete name (no wildcard) against a pattern."""
    if pattern.reach is Reach.EXACT:
        return name == pattern.base
    if pattern.reach is Reach.ONE_LABEL:
        return _one_label_below(name, pattern.base)
    return _strictly_below(name, pattern.base)


def covers(pattern: DnsPattern, name: str) -> bool:
    """Every name a certificate for ``name`` is valid for lies inside ``pattern`` (allow-list test)."""
    asked = requested(name)
    if asked.reach is Reach.EXACT:
        return _in_pattern(asked.base, pattern)
    if pattern.reach is Reach.ONE_LABEL:
        return asked.base == pattern.base
    if pattern.reach is Reach.ANY_DEPTH:
        return _at_or_below(asked.base, pattern.base)
    return False


def overlaps(pattern: DnsPattern, name: str) -> bool:
    """Some name a certificate for ``name`` is valid for lies inside ``pattern`` (deny-list test)."""
    asked = requested(name)
    if asked.reach is Reach.EXACT:
        return _in_pattern(asked.base, pattern)
    if pattern.reach is Reach.EXACT:
        return _one_label_below(pattern.base, asked.base)
    if pattern.reach is Reach.ONE_LABEL:
        return asked.base == pattern.base
    return _at_or_below(asked.base, pattern.base)


class PatternSet:
    """Many patterns at once, matched in time proportional to a name's label count rather than to the
    number of patterns (a deny-list of hundreds of entries costs a few dictionary lookups per name).
    Answers what :func:`covers` and :func:`overlaps` answer for each pattern, returning a matching one."""

    def __init__(self, patterns: Iterable[DnsPattern]) -> None:
        self._exact: dict[str, DnsPattern] = {}
        self._exact_by_parent: dict[str, DnsPattern] = {}
        self._one_label: dict[str, DnsPattern] = {}
        self._any_depth: dict[str, DnsPattern] = {}
        for pattern in patterns:
            if pattern.reach is Reach.EXACT:
                self._exact.setdefault(pattern.base, pattern)
                self._exact_by_parent.setdefault(_parent(pattern.base), pattern)
            elif pattern.reach is Reach.ONE_LABEL:
                self._one_label.setdefault(pattern.base, pattern)
            else:
                self._any_depth.setdefault(pattern.base, pattern)

    def _below(self, name: str, *, inclusive: bool) -> DnsPattern | None:
        """An any-depth pattern whose base is ``name`` (when inclusive) or one of its parent domains."""
        labels = name.split(".")
        for start in range(0 if inclusive else 1, len(labels)):
            found = self._any_depth.get(".".join(labels[start:]))
            if found is not None:
                return found
        return None

    def covering(self, name: str) -> DnsPattern | None:
        asked = requested(name)
        if asked.reach is Reach.EXACT:
            return self._concrete(asked.base)
        return self._one_label.get(asked.base) or self._below(asked.base, inclusive=True)

    def overlapping(self, name: str) -> DnsPattern | None:
        asked = requested(name)
        if asked.reach is Reach.EXACT:
            return self._concrete(asked.base)
        return (
            self._exact_by_parent.get(asked.base)
            or self._one_label.get(asked.base)
            or self._below(asked.base, inclusive=True)
        )

    def _concrete(self, name: str) -> DnsPattern | None:
        return (
            self._exact.get(name) or self._one_label.get(_parent(name)) or self._below(name, inclusive=False)
        )


def _parent(name: str) -> str:
    return name.partition(".")[2]


def looks_like_dns_name(text: str) -> bool:
    """Whether a subject common name is written as a host name (so name policies must see it too)."""
    value = _clean(text)
    if "." not in value or len(value) > MAX_NAME_LENGTH or value.replace(".", "").isdigit():
        return False
    labels = value.split(".")
    labels[0] = labels[0].replace("*", "x")
    return all(_LABEL.fullmatch(label) for label in labels)
