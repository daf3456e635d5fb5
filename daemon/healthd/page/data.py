"""The page's model, read from the store through the API's own builders.

Server-side rendering shows what the API serves: each check row starts as the
API's check dict (so fields the API gains, such as `uptime`, appear here with
no second code path), and the bar series is the uptime endpoint's series.
Only the rows of one page are built; the banner counts read statuses only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from healthd.api_models import CheckDetail, CheckSummary, Result
from healthd.config import format_check_id
from healthd.page import view
from healthd.store import CheckState, ServiceInfo, Store, service_status

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


def series(store: Store, state: CheckState, mode: str) -> list[dict[str, Any]] | None:
    """The uptime endpoint's bucket series for this check, or None while the store has none."""
    builder = getattr(store, "uptime_series", None)  # the uptime windows' series builder
    if builder is None:
        return None
    window, step = view.BAR_MODES[mode]
    result: list[dict[str, Any]] | None = builder(state.info.key, window, step)
    return result


def service_uptime(store: Store, service: ServiceInfo) -> Mapping[str, float | None] | None:
    builder = getattr(store, "service_uptime", None)
    return builder(service) if builder is not None else None


def check_uptime(state: CheckState) -> Mapping[str, float | None] | None:
    """The check's uptime ratios as the API lists them, or None before the API has them."""
    uptime: Mapping[str, float | None] | None = CheckSummary.of(state).model_dump(mode="json").get("uptime")
    return uptime


def build_row(store: Store, state: CheckState, mode: str) -> Row:
    data = CheckSummary.of(state).model_dump(mode="json")
    buckets = series(store, state, mode)
    window, step = view.BAR_MODES[mode]
    last = data.get("last") or {}
    since = view.parse_time(data.get("since")) if "since" in data else state.since
    info = state.info
    return Row(
        id=format_check_id(info.key),
        href=check_href(info.service, info.name),
        data=data,
        status=state.status.value,
        since=since,
        error=last.get("error"),
        latency=view.latency_text(last.get("latency_ms")),
        uptime=view.uptime_texts(data.get("uptime")),
        bars=view.bars(buckets, mode),
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
    page = min(filters.page, pages)
    return StatusModel(
        counts, _groups(store, chosen, page, filters.bars), filters, page, pages, matched, time.time()
    )


def _groups(
    store: Store, chosen: list[tuple[ServiceInfo, str, list[CheckState]]], page: int, mode: str
) -> list[Group]:
    skip, room = (page - 1) * view.PAGE_SIZE, view.PAGE_SIZE
    groups: list[Group] = []
    for service, status, states in chosen:
        if skip >= len(states):
            skip -= len(states)
            continue
        shown = states[skip : skip + room]
        skip, room = 0, room - len(shown)
        uptime = view.uptime_texts(service_uptime(store, service))
        group = Group(service.name, status, service.labels, len(service.checks), uptime)
        group.rows = [build_row(store, state, mode) for state in shown]
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
    detail = CheckDetail.of(state).model_dump(mode="json")
    history = [Result.of(r).model_dump(mode="json") for r in reversed(state.history)]
    failures = detail.get("failures")
    if failures is None:  # no separate failure ring: the failures still in history
        failures = [r for r in history if not r["ok"]]
    return CheckModel(
        row=build_row(store, state, mode),
        detail=detail,
        service_status=store.status_of(service).value,
        labels=service.labels,
        history=history[:HISTORY_SHOWN],
        failures=failures[:FAILURES_SHOWN],
        windows=detail.get("windows"),
        mode=mode,
        now=time.time(),
    )
