"""The API's one builder (api_dicts) says exactly what the response models say, and the
services listing's cache answers exactly what building every dict afresh answers."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from healthd import api_dicts
from healthd.api_dicts import encode, services_dict
from healthd.api_listing import ListingCache, _differ, services_json
from healthd.api_models import (
    CheckDetail,
    CheckSummary,
    ErrorResponse,
    HistoryResponse,
    Result,
    ServiceModel,
    ServicesResponse,
    UptimeSeries,
)
from healthd.loop_slices import LoopSlices
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, ServiceInfo, Store
from healthd.uptime import DAY, HOUR, MINUTE, WINDOW_NAMES, Uptime
from pydantic import BaseModel, ValidationError

UP = CheckInfo("web", "tcp", "tcp", "127.0.0.1:80", rise=1, fall=1, history=10)
DOWN = CheckInfo("web", "http", "http", "http://127.0.0.1:8080/", rise=1, fall=1, history=10)
NEVER = CheckInfo("db", "ping", "icmp", "::1", rise=1, fall=1, history=10)
NOW = 1_700_000_010.0
OK = ProbeResult(
    time=1_700_000_000.123456,
    ok=True,
    duration=0.00123456789,
    latency=0.0004,
    phases={"resolve": 0.0, "connect": 0.0004},
    details={"address": "127.0.0.1:80", "sizes": [1, 2]},
)
FAILED = ProbeResult(
    time=1_700_000_002.0,  # whole seconds: the format drops the fraction, in both
    ok=False,
    duration=2.0,
    latency=None,
    error_kind=ErrorKind.TIMEOUT,
    error_message="no answer within 2s",
)


def store() -> Store:
    store = Store()
    store.apply([ServiceInfo("web", {"team": "core"}, (UP, DOWN)), ServiceInfo("db", {}, (NEVER,))])
    store.record(UP.key, OK)
    store.record(DOWN.key, FAILED)
    return store


def validated(model: type[BaseModel], body: Any) -> dict[str, Any]:
    """`body` encoded, parsed, validated by `model` and written back by it: equal to what was sent
    unless the dicts say something the model does not (a field missing, extra, or of another type)."""
    sent = orjson.loads(encode(body))
    assert orjson.loads(model.model_validate(sent).model_dump_json()) == sent, model.__name__
    parsed: dict[str, Any] = sent
    return parsed


def test_every_answer_validates_against_its_model() -> None:
    filled = store()
    state = filled.check(DOWN.key)
    assert state is not None
    body = validated(ServicesResponse, services_dict(filled, filled.services, NOW))
    validated(ServiceModel, api_dicts.service_dict(filled, filled.services[0], NOW))
    validated(CheckSummary, api_dicts.summary_dict(state, api_dicts.counts_of(state, NOW), NOW))
    detail = validated(CheckDetail, api_dicts.detail_dict(state, NOW))
    validated(HistoryResponse, api_dicts.history_dict(list(state.history)))
    validated(Result, api_dicts.result_dict(OK))
    buckets = state.uptime.series(2 * HOUR, HOUR, NOW)
    validated(UptimeSeries, api_dicts.series_dict(state, "2h", "1h", buckets))
    validated(ErrorResponse, api_dicts.error_dict("invalid_config", "rejected", ["a: b"]))
    web, db = body["services"]
    assert [c["status"] for c in web["checks"]] == ["up", "down"]
    assert web["checks"][1]["last"]["error"] == {"kind": "timeout", "message": "no answer within 2s"}
    assert db["checks"][0]["last"] is None
    assert web["checks"][0]["last"]["time"] == "2023-11-14T22:13:20.123456Z"
    assert (
        web["uptime"]["1h"] == 0.5 and web["checks"][0]["uptime"]["1h"] == 1.0 and db["uptime"]["1h"] is None
    )
    assert detail["windows"]["1h"]["probes"] == 1 and set(detail["windows"]["1h"]["latency_ms"]) == {
        "mean",
        "p50",
        "p95",
        "p99",
    }


def test_the_ratios_are_of_every_window_in_order() -> None:
    assert api_dicts.ratios((2, 1, 0, 0, 4, 4, 8, 2)) == dict(
        zip(WINDOW_NAMES, (0.5, None, 1.0, 0.25), strict=True)
    )
    assert list(api_dicts.ratios(api_dicts.summed([]))) == list(WINDOW_NAMES)


def test_a_field_the_models_do_not_know_fails_the_validation() -> None:
    body = api_dicts.result_dict(OK)
    with pytest.raises(AssertionError):
        validated(Result, {**body, "stale": True})  # a field only the dicts have
    with pytest.raises(ValidationError):
        validated(Result, {k: v for k, v in body.items() if k != "details"})  # one they lack
    with pytest.raises(ValidationError):
        validated(Result, {**body, "details": None})  # one of another type


async def listing(cache: ListingCache, filled: Store, now: float) -> Any:
    return orjson.loads(await services_json(cache, filled, filled.services, now, LoopSlices(0, 0)))


async def assert_cache_agrees(cache: ListingCache, filled: Store, now: float) -> None:
    """The cache's bytes are exactly those of every dict built afresh, for the listing and each service."""
    fresh = encode(services_dict(filled, filled.services, now))
    assert await services_json(cache, filled, filled.services, now, LoopSlices(0, 0)) == fresh
    for service in filled.services:
        assert cache.service_json(filled, service, now) == encode(
            api_dicts.service_dict(filled, service, now)
        )


async def test_the_cached_listing_follows_results_time_and_reloads() -> None:
    filled, cache = store(), ListingCache()
    await assert_cache_agrees(cache, filled, NOW)
    await assert_cache_agrees(cache, filled, NOW)  # all from the cache
    filled.record(UP.key, FAILED)  # a new result: state, last and uptime change
    await assert_cache_agrees(cache, filled, NOW)
    filled.record(UP.key, FAILED)  # the same result object again: only the uptime counts show it
    await assert_cache_agrees(cache, filled, NOW)
    for later in (MINUTE, HOUR, 2 * HOUR, DAY, 25 * HOUR, 31 * DAY):  # results age out of windows
        await assert_cache_agrees(cache, filled, NOW + later)
    await assert_cache_agrees(cache, filled, NOW - HOUR)  # a clock stepped back
    await assert_cache_agrees(cache, filled, NOW)
    restored = filled.check(UP.key)
    assert restored is not None
    fresh = Uptime()  # as a snapshot's restore replaces it, with no result recorded since
    fresh.observed = restored.uptime.observed  # the same count: only the object tells them apart
    restored.uptime = fresh
    await assert_cache_agrees(cache, filled, NOW)
    renamed = dataclasses.replace(UP, target="127.0.0.1:81", labels={"new": "label"})
    filled.apply([ServiceInfo("web", {"team": "edge"}, (renamed, DOWN))])  # a reload keeps the state
    await assert_cache_agrees(cache, filled, NOW)
    assert await listing(cache, filled, NOW) == orjson.loads(
        encode(services_dict(filled, filled.services, NOW))
    )
    assert len(cache._fragments) == 2 and len(cache._services) == 1  # the removed ones are gone


async def test_the_sliced_listing_is_the_same_json() -> None:
    filled, cache = store(), ListingCache()
    sliced = await services_json(cache, filled, filled.services, NOW, LoopSlices(0, 0))  # a pause per service
    assert orjson.loads(sliced) == orjson.loads(encode(services_dict(filled, filled.services, NOW)))
    shard = {"index": 0, "count": 1, "replicas": 1, "checks": 3}
    assert orjson.loads(await services_json(cache, filled, (), NOW)) == {"shard": shard, "services": []}


async def test_the_cached_listing_follows_a_check_going_stale() -> None:
    watched = dataclasses.replace(UP, stale_after=5.0)
    filled, cache = Store(), ListingCache()
    filled.apply([ServiceInfo("web", {}, (watched,))])
    at = 1_700_000_040.0  # a minute's start: the checks below stay in one minute bucket
    filled.record(watched.key, dataclasses.replace(OK, time=at))
    await assert_cache_agrees(cache, filled, at + 1)
    await assert_cache_agrees(cache, filled, at + 10)  # no new result: only the clock moved
    body = await listing(cache, filled, at + 10)
    assert body["services"][0]["checks"][0]["stale"] is True
    filled.record(watched.key, dataclasses.replace(OK, time=at + 11))
    await assert_cache_agrees(cache, filled, at + 12)
    assert (await listing(cache, filled, at + 12))["services"][0]["checks"][0]["stale"] is False


async def test_the_cached_listing_follows_the_hour_window_within_one_hour() -> None:
    filled, cache = store(), ListingCache()
    hour = 1_700_006_400.0  # an hour's start, far from a day's
    filled.record(UP.key, dataclasses.replace(OK, time=hour - 30 * MINUTE))  # in the previous hour
    await assert_cache_agrees(cache, filled, hour + 29 * MINUTE)
    # the same hour and day: the result leaves the 1 h window, the 24 h one keeps it
    await assert_cache_agrees(cache, filled, hour + 31 * MINUTE)
    body = await listing(cache, filled, hour + 31 * MINUTE)
    assert body["services"][0]["checks"][0]["uptime"]["1h"] is None
    assert body["services"][0]["checks"][0]["uptime"]["24h"] == 1.0
    await assert_cache_agrees(cache, filled, hour + 29 * MINUTE)  # and the clock stepped back
    await assert_cache_agrees(cache, filled, hour + 90 * MINUTE)


def _stale_after_five_seconds() -> tuple[CheckInfo, Store, ListingCache, float]:
    """A check that goes stale 5 s after its one result (at the returned time), beside another."""
    watched = dataclasses.replace(UP, stale_after=5.0)
    filled, cache = Store(), ListingCache()
    filled.apply([ServiceInfo("web", {}, (watched, DOWN))])
    at = 1_700_000_040.0
    filled.record(watched.key, dataclasses.replace(OK, time=at))
    return watched, filled, cache, at


async def test_the_cached_listing_follows_a_local_error_and_a_restart_in_place() -> None:
    watched, filled, cache, at = _stale_after_five_seconds()
    await assert_cache_agrees(cache, filled, at + 10)  # stale
    local = dataclasses.replace(FAILED, time=at + 11, error_kind=ErrorKind.LOCAL)
    filled.record(watched.key, local)  # moves only `last_seen`: no longer stale, nothing else
    await assert_cache_agrees(cache, filled, at + 12)
    assert (await listing(cache, filled, at + 12))["services"][0]["checks"][0]["stale"] is False
    filled.apply(filled.services, restart={watched.key}, now=at + 12)  # same services, a new state
    await assert_cache_agrees(cache, filled, at + 13)
    assert (await listing(cache, filled, at + 13))["services"][0]["checks"][0]["last"] is None


async def test_the_cut_between_checks_survives_any_text() -> None:
    odd = '\x00,"uptime":{},\x00,{"name":'
    checks = tuple(
        dataclasses.replace(UP, name=f"c{n}{odd}", target=odd, labels={odd: odd}) for n in range(3)
    )
    filled, cache = Store(), ListingCache()
    filled.apply([ServiceInfo(odd, {odd: odd}, checks)])
    for n, info in enumerate(checks):
        filled.record(info.key, dataclasses.replace(OK, time=NOW - n, details={odd: [odd, {odd: odd}]}))
    await assert_cache_agrees(cache, filled, NOW)
    await assert_cache_agrees(cache, filled, NOW + MINUTE)


async def test_the_cached_listing_follows_a_clock_stepped_back_past_a_stale_check() -> None:
    _, filled, cache, at = _stale_after_five_seconds()
    await assert_cache_agrees(cache, filled, at + 10)  # stale
    await assert_cache_agrees(cache, filled, at + 1)  # no result, but the clock stepped back
    assert (await listing(cache, filled, at + 1))["services"][0]["checks"][0]["stale"] is False


async def test_a_check_turns_stale_while_another_of_its_service_gets_results() -> None:
    quiet, busy = (dataclasses.replace(info, stale_after=5.0) for info in (UP, DOWN))
    filled, cache = Store(), ListingCache()
    filled.apply([ServiceInfo("web", {}, (quiet, busy))])
    at = 1_700_000_040.0
    for info in (quiet, busy):
        filled.record(info.key, dataclasses.replace(OK, time=at))
    for later in range(1, 12):  # only `busy` gets results; `quiet` turns stale after 5 s
        filled.record(busy.key, dataclasses.replace(OK, time=at + later))
        await assert_cache_agrees(cache, filled, at + later + 0.5)
    checks = (await listing(cache, filled, at + 11.5))["services"][0]["checks"]
    assert [check["stale"] for check in checks] == [True, False]


async def test_only_the_checks_with_a_new_result_are_encoded_again() -> None:
    filled, cache = store(), ListingCache()
    await services_json(cache, filled, filled.services, NOW)
    kept = dict(cache._fragments)
    filled.record(UP.key, dataclasses.replace(OK, time=NOW - 1))
    await assert_cache_agrees(cache, filled, NOW)
    renewed = [name for name, fragment in cache._fragments.items() if fragment is not kept[name]]
    assert renewed == [tuple(UP.key)]


def test_differ_gives_the_places_where_two_lists_differ() -> None:
    same = object()
    assert _differ([1, 2, 3, same], [1, 5, 3, object()]) == [1, 3]
    assert _differ([same, (1, same)], [same, (1, same)]) == []
