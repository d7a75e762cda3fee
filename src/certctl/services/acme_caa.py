"""CAA (RFC 8659): may this CA issue for a name? Checked when a dns identifier's challenge has passed.

The relevant record set is the first non-empty CAA set found climbing from the name towards the root.
With none, anyone may issue. Otherwise a wildcard name uses the ``issuewild`` records when there are any,
else ``issue``; a plain name uses ``issue``. Issuance is allowed when one of those records names one of
our CAA identities (the domain before any ``;`` parameters, compared case-insensitively); a record with
an empty domain (``;``) allows no one. A critical record with a tag we do not know forbids issuance
(§4.1), and a lookup that fails forbids it too (fail closed): the order's authorization becomes invalid
with an RFC 8555 ``caa`` or ``dns`` error.
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.resolver

from certctl.services.acme_errors import AcmeError

KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef", "issuemail", "issuevmc"})
CRITICAL = 0x80


def _domain(value: bytes) -> str:
    return value.decode("ascii", "replace").split(";", 1)[0].strip().lower().rstrip(".")


async def relevant_records(resolver: dns.asyncresolver.Resolver, name: str) -> list[tuple[int, str, str]]:
    """(flags, tag, domain) of the relevant CAA set of ``name`` (empty when there is none)."""
    labels = name.rstrip(".").lower().split(".")
    for start in range(len(labels)):
        candidate = ".".join(labels[start:])
        try:
            answer = await resolver.resolve(candidate, "CAA")
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            raise AcmeError("dns", f"the CAA lookup of {candidate} failed: {type(exc).__name__}") from None
        found = [(int(r.flags), r.tag.decode("ascii", "replace").lower(), _domain(r.value)) for r in answer]
        if found:
            return found
    return []


def permits(
    records: list[tuple[int, str, str]], *, wildcard: bool, identities: tuple[str, ...]
) -> str | None:
    """None when issuance is allowed; else why not."""
    for flags, tag, _ in records:
        if flags & CRITICAL and tag not in KNOWN_TAGS:
            return f"a critical CAA record with the unknown tag {tag!r} forbids issuance"
    issue = [domain for _, tag, domain in records if tag == "issue"]
    wild = [domain for _, tag, domain in records if tag == "issuewild"]
    relevant = wild if wildcard and wild else issue
    if not relevant and not (wildcard and wild):
        return None
    ours = {identity.lower().rstrip(".") for identity in identities}
    if any(domain.lower().rstrip(".") in ours for domain in relevant if domain):
        return None
    return "its CAA records do not authorise this CA (" + ", ".join(sorted(ours)) + ")"


async def check_caa(
    resolver: dns.asyncresolver.Resolver, name: str, *, wildcard: bool, identities: tuple[str, ...]
) -> None:
    reason = permits(await relevant_records(resolver, name), wildcard=wildcard, identities=identities)
    if reason is not None:
        label = f"*.{name}" if wildcard else name
        raise AcmeError("caa", f"{label}: {reason}")
