"""The page's model, read from the store through the API's own builders.

Server-side rendering shows what the API serves: each check row starts as the
API's check dict (so fields the API gains, such as `uptime`, appear here with
no second code path), and the bar series is the uptime endpoint's series.
Only the rows of one page are built; the banner counts read statuses only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from healthd.api_models import CheckDetail, CheckSummary, Result
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
        id=f"{info.service}/{info.name}",
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
    """Banner counts over everything; rows of the asked page, grouped by service, down first."""
    counts = view.Counts()
    ordered: list[tuple[ServiceInfo, str, list[CheckState]]] = []
    for service in store.services:
        states = store.states_of(service)
        status = service_status(states).value
        counts.services[status] += 1
        view.count_statuses((s.status.value for s in states), counts.checks)
        if not filters.label or view.label_matches(filters.label, service.labels):
            ordered.append((service, status, states))
    ordered.sort(key=lambda item: view.RANK[item[1]])
    matched = [
        (service, status, state)
        for service, status, states in ordered
        for state in sorted(states, key=lambda s: view.RANK[s.status.value])
        if view.row_matches(filters, (service.name, status), (state.info.name, state.status.value))
    ]
    pages = view.pages(len(matched))
    page = min(filters.page, pages)
    groups: list[Group] = []
    for service, status, state in matched[(page - 1) * view.PAGE_SIZE : page * view.PAGE_SIZE]:
        if not groups or groups[-1].name != service.name:
            uptime = view.uptime_texts(service_uptime(store, service))
            groups.append(Group(service.name, status, service.labels, len(service.checks), uptime))
        groups[-1].rows.append(build_row(store, state, filters.bars))
    return StatusModel(counts, groups, filters, page, pages, len(matched), time.time())


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
