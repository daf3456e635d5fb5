"""The page's model, read from the store through the API's own builders.

Server-side rendering shows what the API serves: each check row starts as the
API's check dict, the bar series is the uptime endpoint's series, the service
uptime the listing's; all built by the API's own builders (healthd.api_dicts).
Only the rows of one page are built; the banner counts read statuses only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from healthd import api_dicts
from healthd.api_dicts import jsonable
from healthd.config import format_check_id
from healthd.page import view
from healthd.store import CheckState, ServiceInfo, Store, service_status
from healthd.uptime import series_shape

HISTORY_SHOWN = 50
FAILURES_SHOWN = 10


def check_href(service: str, check: str) -> str:
    return f"/status/{quote(service, safe='')}/{quote(check, safe='')}"


@dataclass
class Row:
    id: str  # SERVICE/CHECK, as events name it
    href: str
    data: dict[str, Any]  # the API's check dict
    status: str
    since: float | None
    error: Mapping[str, str] | None
    latency: str
    uptime: list[tuple[str, str]]
    bars: list[view.Bar]
    strip: view.Strip
    series_url: str
    spark: view.Sparkline | None


@dataclass
class Group:
    name: str
    status: str
    labels: Mapping[str, str]
    total: int  # checks of the service, whatever the filter
    uptime: list[tuple[str, str]]
    rows: list[Row] = field(default_factory=list)


@dataclass
class StatusModel:
    counts: view.Counts
    groups: list[Group]
    filters: view.Filters
    page: int
    pages: int
    matched: int
    now: float


def series(state: CheckState, mode: str, now: float, full: bool = True) -> list[dict[str, Any]]:
    """The uptime endpoint's bucket series for this check (`?window=90h&step=1h` or 90d/1d).

    `full=False`, for the list page's strips: only what the colours and the sparkline need, the
    same numbers without the API model (90 models a row cost ~1 ms; a page has 50 rows).
    """
    window, step = series_shape(*view.BAR_MODES[mode])
    buckets = state.uptime.series(window, step, now)
    if full:
        return [jsonable(api_dicts.bucket_dict(b)) for b in buckets]
    return [
        {
            "probes": w.probes,
            "successes": w.successes,
            "ratio": w.ratio,
            "latency_ms": {"mean": None if w.latency_mean is None else w.latency_mean * 1000},
        }
        for w in (b.window for b in buckets)
    ]


def service_uptime(store: Store, service: ServiceInfo, now: float) -> Mapping[str, float | None]:
    """The service's uptime ratios, as the API lists them."""
    counts = (api_dicts.counts_of(s, now) for s in store.states_of(service))
    return api_dicts.ratios(api_dicts.summed(counts))


def check_uptime(state: CheckState, now: float) -> Mapping[str, float | None]:
    return api_dicts.ratios(api_dicts.counts_of(state, now))


def build_row(state: CheckState, mode: str, now: float, full: bool = False) -> Row:
    """One check as the page shows it; `full` adds a tooltip per bar (the check's own page)."""
    data = jsonable(api_dicts.summary_dict(state, api_dicts.counts_of(state, now), now))
    buckets = series(state, mode, now, full)
    window, step = view.BAR_MODES[mode]
    last = data.get("last") or {}
    info = state.info
    return Row(
        id=format_check_id(info.key),
        href=check_href(info.service, info.name),
        data=data,
        status=state.status.value,
        since=state.since,
        error=last.get("error"),
        latency=view.latency_text(last.get("latency_ms")),
        uptime=view.uptime_texts(data["uptime"]),
        bars=view.bars(buckets, mode) if full else [],
        strip=view.strip(buckets, mode),
        series_url=f"/api/v1/services/{quote(info.service, safe='')}/checks/{quote(info.name, safe='')}"
        f"/uptime?window={window}&step={step}",
        spark=view.sparkline(buckets),
    )


def status_model(store: Store, filters: view.Filters) -> StatusModel:
    """Banner counts over everything; rows of the asked page, grouped by service, down first.

    Runs on the event loop for every page view, so the per-check work is kept to
    a status read (Status is a StrEnum: it is its own dict key, no `.value`); only
    the rows of the asked page are built.
    """
    counts = view.Counts()
    chosen: list[tuple[ServiceInfo, str, list[CheckState]]] = []
    for service in store.services:
        states = store.states_of(service)
        present = Counter(state.status for state in states)
        status = service_status(states).value
        counts.services[status] += 1
        for check_status, n in present.items():
            counts.checks[check_status] += n
        if filters.label and not view.label_matches(filters.label, service.labels):
            continue
        if len(present) > 1:  # mixed: down first, then unknown, then up
            states = sorted(states, key=lambda state: view.RANK[state.status])
        if filters.q or filters.status:
            states = [
                s
                for s in states
                if view.row_matches(filters, (service.name, status), (s.info.name, s.status))
            ]
        if states:
            chosen.append((service, status, states))
    chosen.sort(key=lambda item: view.RANK[item[1]])
    matched = sum(len(states) for _, _, states in chosen)
    pages = view.pages(matched)
    page, now = min(filters.page, pages), time.time()
    groups = _groups(store, chosen, page, filters.bars, now)
    return StatusModel(counts, groups, filters, page, pages, matched, now)


def _groups(
    store: Store, chosen: list[tuple[ServiceInfo, str, list[CheckState]]], page: int, mode: str, now: float
) -> list[Group]:
    skip, room = (page - 1) * view.PAGE_SIZE, view.PAGE_SIZE
    groups: list[Group] = []
    for service, status, states in chosen:
        if skip >= len(states):
            skip -= len(states)
            continue
        shown = states[skip : skip + room]
        skip, room = 0, room - len(shown)
        uptime = view.uptime_texts(service_uptime(store, service, now))
        group = Group(service.name, status, service.labels, len(service.checks), uptime)
        group.rows = [build_row(state, mode, now) for state in shown]
        groups.append(group)
        if not room:
            break
    return groups


@dataclass
class CheckModel:
    row: Row
    detail: dict[str, Any]
    service_status: str
    labels: Mapping[str, str]
    history: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    windows: Mapping[str, Any] | None
    mode: str
    now: float


def check_model(store: Store, service: ServiceInfo, state: CheckState, mode: str) -> CheckModel:
    now = time.time()
    detail = jsonable(api_dicts.detail_dict(state, now))
    history = jsonable([api_dicts.result_dict(r) for r in reversed(state.history)])
    return CheckModel(
        row=build_row(state, mode, now, full=True),
        detail=detail,
        service_status=store.status_of(service).value,
        labels=service.labels,
        history=history[:HISTORY_SHOWN],
        failures=detail["failures"][:FAILURES_SHOWN],
        windows=detail["windows"],
        mode=mode,
        now=now,
    )
