"""What the main process and its probing workers say to each other, and which worker owns what.

Pure: no I/O. Both directions are length-prefixed frames (4 bytes, big-endian).
Main -> worker: pickled control messages (the worker's share of the config,
secrets included, and the debounce state of its checks); they are rare, and
pickle keeps the config models as they are. Worker -> main: msgpack batches,
one per few milliseconds: results as flat rows plus the scheduler's counters
(lag histogram buckets, skipped runs, task restarts) as deltas.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from healthd.cluster import shard_of
from healthd.config import CheckBase, CheckKey, Config, format_check_id
from healthd.results import ErrorKind, ProbeResult

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # a config of 100,000 checks pickles to well under this

Seed = tuple[str, int, int]  # (status, streak_ok, streak_fail) of a check, from main's store


def resolve_workers(setting: int | str, cpus: int) -> int:
    """`scheduler.workers` as a number: `auto` is the usable CPUs (1 on a single CPU)."""
    if setting == "auto":
        return max(1, cpus)
    return int(setting)


def worker_of(key: CheckKey, count: int) -> int:
    """The worker that probes `key`: the same hashmod as the instance shards (healthd.cluster)."""
    return shard_of(format_check_id(key), count) if count > 1 else 0


def worker_share(config: Config, index: int, count: int) -> Config:
    """The config of worker `index` of `count`: its checks, and its part of `max_in_flight`."""
    services = []
    for svc in config.services:
        mine = [check for check in svc.checks if worker_of(CheckKey(svc.name, check.name), count) == index]
        if mine:
            services.append(svc.model_copy(update={"checks": mine}))
    in_flight = math.ceil(config.scheduler.max_in_flight / count)
    scheduler = config.scheduler.model_copy(update={"max_in_flight": in_flight, "workers": 1})
    # model_copy skips validation on purpose: a worker may own no check at all
    return config.model_copy(update={"services": services, "scheduler": scheduler})


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def control(config: Config, seeds: Mapping[str, Seed]) -> bytes:
    """The frame that (re)configures a worker."""
    out = io.BytesIO()
    _SharingPickler(out).dump({"config": config, "seeds": dict(seeds)})
    return frame(out.getvalue())


class _SharingPickler(pickle.Pickler):
    """Pickles the checks with one `__pydantic_fields_set__` per distinct set and one object per
    equal field value, so the worker's checks share them (pickle memoizes by identity): a check's
    own set is ~730 B, most of its model. Nothing mutates them in place: `model_copy` copies the
    set first, and a worker never assigns to its config."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._sets: dict[frozenset[str], set[str]] = {}
        self._values: dict[tuple[type, object], object] = {}

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, CheckBase):
            return NotImplemented
        reduced: Any = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)  # a model reduces to a tuple
        func, args, state, *rest = reduced
        fields = frozenset(state["__pydantic_fields_set__"])
        values = {name: self._shared(value) for name, value in state["__dict__"].items()}
        shared_set = self._sets.setdefault(fields, set(fields))
        state = {**state, "__dict__": values, "__pydantic_fields_set__": shared_set}
        return (func, args, state, *rest)

    def _shared(self, value: object) -> object:
        if type(value) not in (str, int, float, bool) and value is not None:
            return value
        return self._values.setdefault((type(value), value), value)


def read_control(payload: bytes) -> tuple[Config, dict[str, Seed]]:
    message = pickle.loads(payload)  # from our own parent process only (the worker's stdin)
    return message["config"], message["seeds"]


def result_row(key: CheckKey, result: ProbeResult) -> list[Any]:
    kind = None if result.error_kind is None else result.error_kind.value
    return [key.service, key.check, result.time, result.ok, result.duration, result.latency, kind,
            result.error_message, dict(result.phases), dict(result.details), dict(result.gauges)]  # fmt: skip


def from_row(row: Sequence[Any]) -> tuple[CheckKey, ProbeResult]:
    service, check, time, ok, duration, latency, kind, message, phases, details, gauges = row
    result = ProbeResult(
        time=time,
        ok=ok,
        duration=duration,
        latency=latency,
        error_kind=None if kind is None else ErrorKind(kind),
        error_message=message,
        phases=phases,
        details=details,
        gauges=gauges,
    )
    return CheckKey(service, check), result


@dataclass
class Batch:
    """What a worker reports since its last batch."""

    results: list[list[Any]] = field(default_factory=list)
    lag_counts: list[int] = field(default_factory=list)  # per LAG_BUCKETS slot (+Inf last)
    lag_sum: float = 0.0
    skipped: int = 0
    task_restarts: list[tuple[str, str]] = field(default_factory=list)

    def encode(self) -> bytes:
        body = [self.results, self.lag_counts, self.lag_sum, self.skipped, self.task_restarts]
        return frame(msgpack.packb(body, use_bin_type=True, default=str))  # odd detail values as text

    @classmethod
    def decode(cls, payload: bytes) -> Batch:
        results, lag_counts, lag_sum, skipped, restarts = msgpack.unpackb(payload, use_list=True)
        return cls(results, lag_counts, lag_sum, skipped, [tuple(key) for key in restarts])
