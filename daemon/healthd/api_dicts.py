"""Every JSON answer of the API, built as plain dicts from the store and encoded with orjson.

This is the one builder: the handlers, the services listing's cache (`api_listing`) and the
status page all use it. The pydantic models in `api_models` are the contract: the OpenAPI
document is generated from them and a test validates these dicts' JSON against them, so the
two cannot drift apart. Models are not built per request: at 10,000 checks that took about
three times what dicts and orjson take.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from healthd.results import ProbeResult
from healthd.store import CheckState, ServiceInfo, Store, is_stale
from healthd.uptime import WINDOW_NAMES, SeriesBucket, Window

_JSON_OPTIONS = orjson.OPT_UTC_Z  # "…Z", as pydantic writes a UTC datetime

#: (probes, successes) of each window, flat, in WINDOW_NAMES order: 1h probes, 1h successes, 24h …
Counts = tuple[int, ...]


def encode(body: Any, indent: bool = False) -> bytes:
    return orjson.dumps(body, option=_JSON_OPTIONS | (orjson.OPT_INDENT_2 if indent else 0))


def jsonable(body: Any) -> Any:
    """`body` as JSON values (times as RFC 3339 strings), for templates."""
    return orjson.loads(encode(body))


def _time(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 4)


def result_dict(result: ProbeResult) -> dict[str, Any]:
    """`api_models.Result` of a probe result."""
    error = None
    if result.error_kind is not None:
        error = {"kind": result.error_kind.value, "message": result.error_message or ""}
    latency = result.latency
    return {
        "time": datetime.fromtimestamp(result.time, UTC),
        "ok": result.ok,
        "latency_ms": None if latency is None else round(latency * 1000, 4),  # `_ms`, inlined: hot
        "duration_ms": round(result.duration * 1000, 4),
        "error": error,
        "phases_ms": {k: round(v * 1000, 4) for k, v in result.phases.items()},
        "details": dict(result.details),
    }


def counts_of(state: CheckState, now: float) -> Counts:
    return state.uptime.all_counts(now)


def summed(counts: Iterable[Counts]) -> Counts:
    """The counts of several checks added up, window by window (a service's uptime)."""
    totals = tuple(map(sum, zip(*counts, strict=True)))
    return totals or (0,) * (2 * len(WINDOW_NAMES))


def ratios(counts: Counts) -> dict[str, float | None]:
    """`api_models.UptimeRatios` of flat window counts (of WINDOW_NAMES, which a test holds to
    these four). Spelled out: a comprehension took five times as long, once per check per request."""
    p1h, s1h, p24h, s24h, p7d, s7d, p30d, s30d = counts
    return {
        "1h": s1h / p1h if p1h else None,
        "24h": s24h / p24h if p24h else None,
        "7d": s7d / p7d if p7d else None,
        "30d": s30d / p30d if p30d else None,
    }


def summary_head(state: CheckState) -> dict[str, Any]:
    """The fields of `api_models.CheckSummary` before `uptime`, in the document's order."""
    info = state.info
    return {
        "name": info.name,
        "type": info.type,
        "target": info.target,
        "status": state.status.value,
        "labels": dict(info.labels),
        "since": _time(state.since),
        "last_success": _time(state.last_success),
        "last_failure": _time(state.last_failure),
    }


def last_dict(state: CheckState) -> dict[str, Any] | None:
    return None if state.last is None else result_dict(state.last)


def summary_dict(state: CheckState, counts: Counts, now: float, stale: bool | None = None) -> dict[str, Any]:
    """`api_models.CheckSummary` of a check, given its window counts (and `is_stale`, if known)."""
    if stale is None:
        stale = is_stale(state, now)
    return {**summary_head(state), "uptime": ratios(counts), "last": last_dict(state), "stale": stale}


def _latency(window: Window) -> dict[str, float | None]:
    latency = {"mean": _ms(window.latency_mean)}
    if window.percentiles is not None:
        latency.update(zip(("p50", "p95", "p99"), (_ms(p) for p in window.percentiles), strict=True))
    return latency


def window_dict(window: Window) -> dict[str, Any]:
    """`api_models.WindowStats`."""
    return {
        "probes": window.probes,
        "successes": window.successes,
        "ratio": window.ratio,
        "down_seconds": round(window.down_seconds, 3),
        "latency_ms": _latency(window),
    }


def detail_dict(state: CheckState, now: float) -> dict[str, Any]:
    """`api_models.CheckDetail` of a check."""
    info = state.info
    return {
        **summary_dict(state, counts_of(state, now), now),
        "service": info.service,
        "consecutive_successes": state.streak_ok,
        "consecutive_failures": state.streak_fail,
        "counters": dict(state.counts),
        "transitions": dict(state.transitions),
        "settings": dict(info.settings.items()),  # one dump of the model, not one per key
        "windows": {name: window_dict(state.uptime.window(name, now)) for name in WINDOW_NAMES},
        "failures": [result_dict(result) for result in reversed(state.failures)],
    }


def service_dict(store: Store, service: ServiceInfo, now: float) -> dict[str, Any]:
    """`api_models.ServiceModel` of a service, built whole (`api_listing` builds it in pieces)."""
    states = store.states_of(service)
    counts = [counts_of(state, now) for state in states]
    return {
        "name": service.name,
        "status": store.status_of(service).value,
        "labels": dict(service.labels),
        "uptime": ratios(summed(counts)),
        "checks": [summary_dict(state, c, now) for state, c in zip(states, counts, strict=True)],
    }


def shard_dict(store: Store) -> dict[str, int]:
    """`api_models.ShardModel`: which shard answers, and how many checks it owns."""
    index, count, replicas = store.daemon.shard
    owned = sum(len(service.checks) for service in store.services)
    return {"index": index, "count": count, "replicas": replicas, "checks": owned}


def services_dict(store: Store, services: Iterable[ServiceInfo], now: float) -> dict[str, Any]:
    """`api_models.ServicesResponse` of these services."""
    built = [service_dict(store, service, now) for service in services]
    return {"shard": shard_dict(store), "services": built}


def history_dict(results: Sequence[ProbeResult]) -> dict[str, Any]:
    """`api_models.HistoryResponse`."""
    return {"results": [result_dict(result) for result in results]}


def series_dict(state: CheckState, window: str, step: str, buckets: Iterable[SeriesBucket]) -> dict[str, Any]:
    """`api_models.UptimeSeries`."""
    return {
        "service": state.info.service,
        "check": state.info.name,
        "window": window,
        "step": step,
        "buckets": [bucket_dict(bucket) for bucket in buckets],
    }


def bucket_dict(bucket: SeriesBucket) -> dict[str, Any]:
    """`api_models.SeriesBucketModel`."""
    window = bucket.window
    return {
        "start": datetime.fromtimestamp(bucket.start, UTC),
        "probes": window.probes,
        "successes": window.successes,
        "ratio": window.ratio,
        "down_seconds": round(window.down_seconds, 3),
        "latency_ms": {"mean": _ms(window.latency_mean)},
    }


def error_dict(code: str, message: str, errors: list[str] | None = None) -> dict[str, Any]:
    """`api_models.ErrorResponse`."""
    return {"error": {"code": code, "message": message, "errors": errors}}
