"""The services listing as plain dicts, encoded with orjson.

`GET /api/v1/services` answers with every check: at 10,000 checks, building
pydantic models per request took ~0.3 s of the event loop, about three times
what plain dicts and orjson take. The response models in `api_models` stay the
contract (the OpenAPI document is generated from them); a test holds these
dicts equal to the models' own JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from healthd.results import ProbeResult
from healthd.store import CheckState, ServiceInfo, Store, is_stale
from healthd.uptime import WINDOW_NAMES

_JSON_OPTIONS = orjson.OPT_UTC_Z  # "…Z", as pydantic writes a UTC datetime


def _time(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def result_dict(result: ProbeResult) -> dict[str, Any]:
    """`api_models.Result` of a probe result."""
    error = None
    if result.error_kind is not None:
        error = {"kind": result.error_kind.value, "message": result.error_message or ""}
    return {
        "time": datetime.fromtimestamp(result.time, UTC),
        "ok": result.ok,
        "latency_ms": None if result.latency is None else round(result.latency * 1000, 4),
        "duration_ms": round(result.duration * 1000, 4),
        "error": error,
        "phases_ms": {k: round(v * 1000, 4) for k, v in result.phases.items()},
        "details": dict(result.details),
    }


Counts = list[tuple[int, int]]  # (probes, successes) per window, in WINDOW_NAMES order


def ratios(counts: Counts) -> dict[str, float | None]:
    """`api_models.UptimeRatios` of per-window counts."""
    return {name: s / p if p else None for name, (p, s) in zip(WINDOW_NAMES, counts, strict=True)}


def summary_dict(state: CheckState, counts: Counts, now: float) -> dict[str, Any]:
    """`api_models.CheckSummary` of a check, given its window counts."""
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
        "uptime": ratios(counts),
        "last": None if state.last is None else result_dict(state.last),
        "stale": is_stale(state, now),
    }


def service_dict(store: Store, service: ServiceInfo, now: float) -> dict[str, Any]:
    """`api_models.ServiceModel` of a service: its uptime sums its checks' counts."""
    states = store.states_of(service)
    counts = [[state.uptime.counts(name, now) for name in WINDOW_NAMES] for state in states]
    totals = [(sum(c[w][0] for c in counts), sum(c[w][1] for c in counts)) for w in range(len(WINDOW_NAMES))]
    return {
        "name": service.name,
        "status": store.status_of(service).value,
        "labels": dict(service.labels),
        "uptime": ratios(totals),
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


async def services_json(
    store: Store, services: Iterable[ServiceInfo], now: float, pause_after: float = 0.002
) -> bytes:
    """`services_dict()` encoded, handing the event loop back every `pause_after` seconds.

    Each service is built and encoded in one piece, so its status agrees with
    its checks' and no step encodes the whole listing; the listing as a whole
    may span a few probe results.
    """
    parts = []
    slice_end = time.perf_counter() + pause_after
    for service in list(services):
        parts.append(encode(service_dict(store, service, now)))
        if time.perf_counter() > slice_end:
            await asyncio.sleep(0)
            slice_end = time.perf_counter() + pause_after
    shard = encode(shard_dict(store))
    return b'{"shard":' + shard + b',"services":[' + b",".join(parts) + b"]}"


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=_JSON_OPTIONS)
