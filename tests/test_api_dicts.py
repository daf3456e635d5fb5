"""The services listing's plain dicts say exactly what the response models say."""

from __future__ import annotations

import orjson
from healthd.api import _service_model
from healthd.api_dicts import encode, services_dict, services_json
from healthd.api_models import ServicesResponse, ShardModel
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, ServiceInfo, Store

UP = CheckInfo("web", "tcp", "tcp", "127.0.0.1:80", rise=1, fall=1, history=10)
DOWN = CheckInfo("web", "http", "http", "http://127.0.0.1:8080/", rise=1, fall=1, history=10)
NEVER = CheckInfo("db", "ping", "icmp", "::1", rise=1, fall=1, history=10)


def store() -> Store:
    store = Store()
    store.apply([ServiceInfo("web", {"team": "core"}, (UP, DOWN)), ServiceInfo("db", {}, (NEVER,))])
    ok = ProbeResult(
        time=1_700_000_000.123456,
        ok=True,
        duration=0.00123456789,
        latency=0.0004,
        phases={"resolve": 0.0, "connect": 0.0004},
        details={"address": "127.0.0.1:80", "sizes": [1, 2]},
    )
    failed = ProbeResult(
        time=1_700_000_002.0,  # whole seconds: the format drops the fraction, in both
        ok=False,
        duration=2.0,
        latency=None,
        error_kind=ErrorKind.TIMEOUT,
        error_message="no answer within 2s",
    )
    store.record(UP.key, ok)
    store.record(DOWN.key, failed)
    return store


NOW = 1_700_000_010.0


def models_json(store: Store) -> bytes:
    services = [_service_model(store, s, NOW) for s in store.services]
    index, count, replicas = store.daemon.shard
    shard = ShardModel(index=index, count=count, replicas=replicas, checks=3)
    return ServicesResponse(shard=shard, services=services).model_dump_json().encode()


def test_dicts_encode_to_the_models_json() -> None:
    filled = store()
    assert orjson.loads(encode(services_dict(filled, filled.services, NOW))) == orjson.loads(models_json(filled))


def test_dicts_validate_against_the_models() -> None:
    filled = store()
    body = orjson.loads(encode(services_dict(filled, filled.services, NOW)))
    parsed = ServicesResponse.model_validate(body)
    web, db = parsed.services
    assert [c.status for c in web.checks] == ["up", "down"]
    assert web.checks[1].last is not None and web.checks[1].last.error is not None
    assert web.checks[1].last.error.kind == "timeout"
    assert db.checks[0].last is None
    assert body["services"][0]["checks"][0]["last"]["time"] == "2023-11-14T22:13:20.123456Z"
    assert web.uptime.h1 == 0.5 and web.checks[0].uptime.h1 == 1.0 and db.uptime.h1 is None


async def test_the_sliced_listing_is_the_same_json() -> None:
    filled = store()
    sliced = await services_json(filled, filled.services, NOW, pause_after=0)  # a pause after each service
    assert orjson.loads(sliced) == orjson.loads(encode(services_dict(filled, filled.services, NOW)))
    shard = {"index": 0, "count": 1, "replicas": 1, "checks": 3}
    assert orjson.loads(await services_json(filled, (), NOW)) == {"shard": shard, "services": []}
