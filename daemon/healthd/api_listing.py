"""`GET /api/v1/services` at 10,000 checks: each check's JSON kept, rebuilt only when it changed.

A check's part of the listing depends on its state (changed by a new result, a reload or a
restore) and on its uptime counts, which also change as time moves a window on by a bucket.
So each check keeps its encoded JSON and where in it the ratios are. A request re-encodes
only the checks with a result since the last request (about 1,000 of 10,000 checks at a 10 s
interval and a 1 s poll) and the ratios of those whose counts moved; a service none of whose
checks had a result is answered from its kept bytes. The bytes are `api_dicts`' own JSON, so
the answer is exactly what building every dict afresh gives (a test compares the two).

What a check's JSON is made of is listed in `_state_key` (and `stale`, which the clock alone
can change); a service's fast path looks only at `Uptime.observed`, which every result that
changes a check's state moves on, and at `stale`. A field that can change without a new result
must join both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from healthd import api_dicts
from healthd.api_dicts import Counts, encode
from healthd.config import CheckKey
from healthd.loop_slices import LoopSlices
from healthd.store import CheckState, ServiceInfo, Store, is_stale, service_status
from healthd.uptime import DAY, HOUR, MINUTE, Uptime


def _state_key(state: CheckState) -> tuple[object, ...]:
    """Everything of a check's state that its listing shows, bar the clock's part of the uptime."""
    uptime = state.uptime
    return (
        state.info,
        state.status,
        state.since,
        state.last_success,
        state.last_failure,
        state.last,
        uptime,
        uptime.observed,
    )


@dataclass(slots=True)
class _Fragment:
    """One check's JSON; `json[start:end]` is its uptime ratios, replaced when the counts move."""

    key: tuple[object, ...]
    json: bytes  # '{"name":…,"uptime":{…},"last":…}'
    start: int
    end: int
    buckets: tuple[int, int, int] = (-1, -1, -1)  # the minute, hour and day the counts are of
    counts: Counts = ()

    def set_counts(self, counts: Counts) -> None:
        ratios = encode(api_dicts.ratios(counts))
        self.json = self.json[: self.start] + ratios + self.json[self.end :]
        self.end, self.counts = self.start + len(ratios), counts


class ListingCache:
    """Each check's encoded summary, for the listing and one service's answer. Owned by the app."""

    def __init__(self) -> None:
        # keyed by (service, check) as a plain tuple: equal to the CheckKey, cheaper to make
        self._fragments: dict[tuple[str, str], _Fragment] = {}
        self._services: dict[str, _Service] = {}

    def check(self, state: CheckState, now: float, buckets: tuple[int, int, int]) -> _Fragment:
        """The check's fragment, up to date for `now` (whose buckets the caller worked out)."""
        stale = is_stale(state, now)  # the one field that changes with the clock, without a result
        key, name = (*_state_key(state), stale), (state.info.service, state.info.name)
        fragment = self._fragments.get(name)
        if fragment is None or fragment.key != key:
            head = encode(api_dicts.summary_head(state))[:-1] + b',"uptime":'
            tail = (
                b',"last":'
                + encode(api_dicts.last_dict(state))
                + (b',"stale":true}' if stale else b',"stale":false}')
            )
            fragment = self._fragments[name] = _Fragment(key, head + tail, len(head), len(head))
        if fragment.buckets != buckets:
            counts = api_dicts.counts_of(state, now)
            if counts != fragment.counts:
                fragment.set_counts(counts)
            fragment.buckets = buckets
        return fragment

    def service_json(self, store: Store, service: ServiceInfo, now: float) -> bytes:
        """`api_dicts.service_dict()` encoded, from the checks' fragments.

        A service whose checks are the same objects as last time needs no look at each check's
        state: those without a new result (`Uptime.observed`) keep their fragment as it is.
        """
        buckets = (int(now // MINUTE), int(now // HOUR), int(now // DAY))
        states = store.states_of(service)
        uptimes = [state.uptime for state in states]  # a restore replaces a check's uptime
        observed = [uptime.observed for uptime in uptimes]
        stale = [is_stale(state, now) for state in states]
        entry = self._services.get(service.name)
        same = entry is not None and entry.service is service and entry.states == states
        if entry is None or not same or entry.uptimes != uptimes or entry.buckets != buckets:
            fragments = [self.check(state, now, buckets) for state in states]
            entry = self._services[service.name] = _Service(
                service, states, uptimes, observed, stale, buckets, fragments
            )
        elif entry.observed != observed or entry.stale != stale:
            marks = zip(observed, entry.observed, stale, entry.stale, strict=True)
            for at, (new, old, new_stale, old_stale) in enumerate(marks):
                if new != old or new_stale != old_stale:
                    entry.fragments[at] = self.check(states[at], now, buckets)
            entry.observed, entry.stale, entry.json = observed, stale, b""
        if not entry.json:
            entry.json = _service_bytes(service, states, entry.fragments)
        return entry.json

    def forget_removed(self, store: Store) -> None:
        """Drop what is kept of checks and services a reload removed."""
        if len(self._fragments) > sum(len(service.checks) for service in store.services):
            kept = self._fragments.items()
            self._fragments = {k: f for k, f in kept if store.check(CheckKey(*k)) is not None}
        if len(self._services) > len(store.services):
            self._services = {k: e for k, e in self._services.items() if store.service(k) is not None}


@dataclass(slots=True)
class _Service:
    """A service's answer as last built, and the objects and counters it was built from."""

    service: ServiceInfo
    states: list[CheckState]
    uptimes: list[Uptime]
    observed: list[int]
    stale: list[bool]
    buckets: tuple[int, int, int]
    fragments: list[_Fragment]
    json: bytes = b""


def _service_bytes(service: ServiceInfo, states: list[CheckState], fragments: list[_Fragment]) -> bytes:
    head = {
        "name": service.name,
        "status": service_status(states).value,
        "labels": dict(service.labels),
        "uptime": api_dicts.ratios(api_dicts.summed(f.counts for f in fragments)),
    }
    checks = b",".join(f.json for f in fragments)
    return encode(head)[:-1] + b',"checks":[' + checks + b"]}"


async def services_json(
    cache: ListingCache,
    store: Store,
    services: Iterable[ServiceInfo],
    now: float,
    slices: LoopSlices | None = None,
) -> bytes:
    """`api_dicts.services_dict()` encoded, handing the event loop back between slices.

    Each service is built in one piece, so its status agrees with its checks'; the listing
    as a whole may span a few probe results.
    """
    slices = slices or LoopSlices()
    parts = [b""]  # the head's place; services and commas follow, all joined in one copy
    for service in list(services):
        parts += (cache.service_json(store, service, now), b",")
        await slices.pause_if_due()
    cache.forget_removed(store)
    if len(parts) > 1:
        parts.pop()  # no comma after the last service
    parts[0] = b'{"shard":' + encode(api_dicts.shard_dict(store)) + b',"services":['
    parts.append(b"]}")
    return b"".join(parts)
