"""What the dashboard templates are given: the Jinja environment, display filters, the expiry timeline
geometry and the certificate-list filters (parsed from the query string, turned back into links).

Kept apart from the routes so the request handling stays short and the view logic is testable alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from certctl.domain.lifecycle import CertificateStatus
from certctl.store.repositories.certificates import SORTABLE, CertificateQuery

STATUS_LABELS = {str(CertificateStatus.RENEWAL_IN_PROGRESS): "Renewing"}
STATUSES = tuple(str(s) for s in CertificateStatus)
TIMELINE_WEEKS = 13
PAGE_SIZE = 50
MAX_SEARCH = 200
MAX_CURSOR = 2000


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def status_class(status: str) -> str:
    """CSS modifier for a status badge (``status-active``); unknown values get a neutral one."""
    return f"status-{status.lower()}" if status in STATUSES else "status-unknown"


def format_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


def format_date(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value is not None else "—"


def relative_days(value: datetime | None, now: datetime) -> str:
    """``in 12 days`` / ``3 days ago`` / ``today``: how urgent an expiry is, at a glance."""
    if value is None:
        return ""
    days = (value - now).days
    if value >= now:
        return "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
    ago = (now - value).days
    return "today" if ago == 0 else f"{ago} day{'s' if ago != 1 else ''} ago"


def colon_hex(value: str) -> str:
    """Fingerprints and serials as ``AB:CD:...`` (how browsers and OpenSSL show them)."""
    clean = value.replace(":", "").upper()
    return ":".join(clean[i : i + 2] for i in range(0, len(clean), 2))


def breakable_hex(value: str) -> Markup:
    """Colon hex that wraps only between byte pairs (``<wbr>`` after each colon), for long fingerprints."""
    return Markup(":<wbr>").join(colon_hex(value).split(":"))


def static_files() -> dict[str, tuple[bytes, str]]:
    """The files /static serves, read once from the package: name -> (content, media type)."""
    media = {
        "htmx.min.js": "text/javascript; charset=utf-8",
        "certctl.css": "text/css; charset=utf-8",
        "favicon.svg": "image/svg+xml",
    }
    folder = resources.files("certctl.web") / "static"
    return {name: ((folder / name).read_bytes(), kind) for name, kind in media.items()}


def make_environment(assets: Mapping[str, tuple[bytes, str]]) -> Environment:
    """Autoescaping Jinja environment; asset URLs carry a content hash so they can be cached for long."""
    env = Environment(
        loader=PackageLoader("certctl.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        status_label=status_label,
        status_class=status_class,
        time=format_time,
        date=format_date,
        colon_hex=colon_hex,
        breakable_hex=breakable_hex,
    )
    env.globals["asset"] = {
        name: f"/static/{name}?v={hashlib.sha256(content).hexdigest()[:12]}"
        for name, (content, _) in assets.items()
    }
    env.globals["statuses"] = STATUSES
    return env


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str
    title: str
    kind: str


@dataclass(frozen=True)
class Timeline:
    """An SVG bar chart laid out on the server: one bar of already expired, then one per coming week."""

    width: int
    height: int
    baseline: float
    divider: float
    bars: tuple[Bar, ...]
    upcoming: int


def weekly_counts(not_afters: Iterable[datetime], now: datetime) -> list[int]:
    """Certificates expiring per week from now (same bucketing as ``GET /api/v1/stats``)."""
    weeks = [0] * TIMELINE_WEEKS
    for not_after in not_afters:
        weeks[min(TIMELINE_WEEKS - 1, (not_after - now).days // 7)] += 1
    return weeks


def build_timeline(*, expired: int, weeks: Sequence[int], now: datetime, soon: timedelta) -> Timeline:
    width, height, top, bottom, left = 1040, 230, 24, 40, 8
    slot = (width - 2 * left) / (len(weeks) + 1)
    bar_width = slot * 0.7
    plot = height - top - bottom
    peak = max([expired, *weeks, 1])
    bars: list[Bar] = []
    for index, count in enumerate([expired, *weeks]):
        bar_height = plot * count / peak if count else 2.0
        x = left + index * slot + (slot - bar_width) / 2
        y = height - bottom - bar_height
        if index == 0:
            label, kind = "Expired", "expired"
            title = f"{count} expired"
        else:
            start = now + timedelta(weeks=index - 1)
            label = start.strftime("%b %d").replace(" 0", " ")
            kind = "soon" if timedelta(weeks=index - 1) < soon else "later"
            title = f"{count} expiring in the week from {start.strftime('%Y-%m-%d')}"
        bars.append(Bar(x, y, bar_width, bar_height, count, label, title, kind if count else "empty"))
    return Timeline(width, height, float(height - bottom), left + slot, tuple(bars), sum(weeks))


@dataclass(frozen=True)
class ListFilters:
    """The certificate list's filters, sort and page, read leniently: a bad value is dropped, not an error."""

    status: str = ""
    issuer: str = ""
    profile: str = ""
    environment: str = ""
    q: str = ""
    sort: str = "name"
    descending: bool = False
    cursor: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ListFilters:
        sort = params.get("sort", "name")
        descending = sort.startswith("-")
        sort = sort.lstrip("-")
        status = params.get("status", "")
        return cls(
            status=status if status in STATUSES else "",
            issuer=params.get("issuer", "")[:64],
            profile=params.get("profile", "")[:64],
            environment=params.get("environment", "")[:64],
            q=params.get("q", "").strip()[:MAX_SEARCH],
            sort=sort if sort in SORTABLE else "name",
            descending=descending and sort in SORTABLE,
            cursor=params.get("cursor", "")[:MAX_CURSOR],
        )

    def query(self, limit: int = PAGE_SIZE) -> CertificateQuery:
        return CertificateQuery(
            status=(self.status,) if self.status else (),
            issuer_id=self.issuer or None,
            profile_id=self.profile or None,
            environment=self.environment or None,
            search=self.q or None,
            sort=self.sort,
            descending=self.descending,
            cursor=self.cursor or None,
            limit=limit,
        )

    @property
    def sort_param(self) -> str:
        return ("-" if self.descending else "") + self.sort

    @property
    def active(self) -> bool:
        return any((self.status, self.issuer, self.profile, self.environment, self.q))

    def url(self, **changes: Any) -> str:
        """The list URL with these filters, some changed; empty values and the default sort are left out."""
        target = replace(self, **changes)
        pairs = {
            "q": target.q,
            "status": target.status,
            "issuer": target.issuer,
            "profile": target.profile,
            "environment": target.environment,
            "sort": "" if target.sort_param == "name" else target.sort_param,
            "cursor": target.cursor,
        }
        query = urlencode({k: v for k, v in pairs.items() if v})
        return "/certificates" + (f"?{query}" if query else "")

    def sort_url(self, column: str) -> str:
        """Clicking a header sorts by it ascending, clicking again flips the direction; paging restarts."""
        descending = not self.descending if column == self.sort else False
        return self.url(sort=column, descending=descending, cursor="")

    def sort_state(self, column: str) -> str:
        """``ascending``/``descending``/``none`` for the header's ``aria-sort``."""
        if column != self.sort:
            return "none"
        return "descending" if self.descending else "ascending"


def names_by_id(items: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {str(item["id"]): str(item["name"]) for item in items}
