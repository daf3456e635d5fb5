"""`GET /api/v1/services` at 10,000 checks: each check's JSON kept, rebuilt only when it changed.

A check's part of the listing depends on its state (changed by a new result, a reload or a
restore) and on its uptime counts, which also change as time moves a window on by a bucket.
So each check keeps its encoded JSON and where in it the ratios are. A request re-encodes
only the checks with a result since the last request (about 1,000 of 10,000 checks at a 10 s
interval and a 1 s poll), all of a service's in one orjson call, and the ratios of those whose
counts moved; when only the minute moved on, only the 1 h counts are taken again. A service is
re-joined only if one of its bytes moved. The bytes are `api_dicts`' own JSON, so the answer is
exactly what building every dict afresh gives (a test compares the bytes).

Which checks to look at is told by their marks, read without a call per check: the state's
`changes` (every result moves it, a local error too), its uptime object (a restore replaces
it) and its info (a reload replaces it). The one field that changes with the clock alone,
`stale`, is looked at again only once the clock reaches the earliest time a check of the
service could turn stale (`_Fragment.stale_at`), or steps back. The states themselves are
looked up again only after a reload (`Store.applied`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress, count
from math import inf
from operator import add, attrgetter, ne, sub
from typing import Any

import orjson

from healthd import api_dicts
from healthd.api_dicts import Counts, encode
from healthd.config import CheckKey
from healthd.loop_slices import LoopSlices
from healthd.store import CheckState, ServiceInfo, Store, is_stale, service_status
from healthd.uptime import DAY, HOUR, MINUTE, WINDOW_NAMES

_CUT = orjson.Fragment(b"\x00")  # see _encoded
_UPTIME_FIELD = b',"uptime":{'  # its first place in a check's JSON: no string can hold it unescaped
_MARK = attrgetter("changes", "uptime", "info")  # see the module's docstring
_JSON, _STALE_AT, _COUNTS = attrgetter("json"), attrgetter("stale_at"), attrgetter("counts")
# `stale_at` is this much early: `is_stale` subtracts, the deadline adds, and they may round apart
_STALE_MARGIN = 1e-3
Buckets = tuple[int, int, int]  # the minute, hour and day `now` is in


@dataclass(slots=True)
class _Fragment:
    """One check's JSON; `json[start:end]` is its uptime ratios, replaced when the counts move."""

    mark: tuple[object, ...]  # `_MARK` of the state it was built from
    stale: bool
    stale_at: float  # the earliest time it may turn stale (inf: stale already, or never)
    json: bytes  # '{"name":…,"uptime":{…},"last":…}'
    start: int
    end: int
    buckets: Buckets  # the counts are of
    counts: Counts

    def set_counts(self, counts: Counts) -> None:
        ratios = encode(api_dicts.ratios(counts))
        self.json = self.json[: self.start] + ratios + self.json[self.end :]
        self.end, self.counts = self.start + len(ratios), counts


def _encoded(bodies: list[dict[str, Any]]) -> list[bytes]:
    """Each body's `encode()`, from one encoding of them all: orjson's output for a value that
    has to be kept costs several times its encoding, so the bytes are cut from one output.
    A raw NUL byte between them is the cut mark: JSON text never holds one (strings escape it)."""
    marked: list[object] = []
    for body in bodies:
        marked += (body, _CUT)
    return encode(marked)[1:-3].split(b",\x00,")  # '[' body ',\x00,' body … ',\x00]'


def _stale_at(state: CheckState, stale: bool) -> float:
    if stale or state.last_seen is None:
        return inf
    return state.last_seen + state.info.stale_after - _STALE_MARGIN


def _fragment(state: CheckState, stale: bool, json: bytes, buckets: Buckets, counts: Counts) -> _Fragment:
    start = json.index(_UPTIME_FIELD) + len(_UPTIME_FIELD) - 1  # at the ratios' "{"
    end = json.index(b"}", start) + 1
    return _Fragment(_MARK(state), stale, _stale_at(state, stale), json, start, end, buckets, counts)


def _moved_counts(fragment: _Fragment, state: CheckState, now: float, buckets: Buckets) -> Counts:
    """The counts at `now` of a check with no result since `fragment.counts`: when only the minute
    moved on, the 24 h, 7 d and 30 d windows (hour and day buckets) are as they were."""
    if fragment.buckets[1:] == buckets[1:]:
        return (*state.uptime.counts(WINDOW_NAMES[0], now), *fragment.counts[2:])
    return api_dicts.counts_of(state, now)


def _differ(new: Sequence[object], old: Sequence[object]) -> list[int]:
    """The places where two lists of the same length differ, found without a loop in Python."""
    return list(compress(count(), map(ne, new, old)))


class ListingCache:
    """Each check's encoded summary, for the listing and one service's answer. Owned by the app."""

    def __init__(self) -> None:
        # keyed by (service, check) as a plain tuple: equal to the CheckKey, cheaper to make
        self._fragments: dict[tuple[str, str], _Fragment] = {}
        self._services: dict[str, _Service] = {}

    def refresh(self, states: list[CheckState], now: float, buckets: Buckets) -> list[_Fragment]:
        """The checks' fragments, up to date for `now` (whose buckets the caller worked out)."""
        fragments: list[_Fragment | None] = []
        changed: list[tuple[int, bool, CheckState]] = []
        for state in states:
            stale = is_stale(state, now)  # the one field that changes with the clock, without a result
            fragment = self._fragments.get((state.info.service, state.info.name))
            if fragment is None or fragment.mark != _MARK(state) or fragment.stale is not stale:
                changed.append((len(fragments), stale, state))
            elif fragment.buckets != buckets:  # the same mark: no result since the counts were taken
                counts = _moved_counts(fragment, state, now, buckets)
                if counts != fragment.counts:
                    fragment.set_counts(counts)
                fragment.buckets = buckets
            fragments.append(fragment)  # a changed check's place, filled below
        if changed:
            taken = [api_dicts.counts_of(state, now) for _, _, state in changed]
            pairs = zip(changed, taken, strict=True)
            bodies = [api_dicts.summary_dict(state, c, now, stale) for (_, stale, state), c in pairs]
            for (at, stale, state), c, json in zip(changed, taken, _encoded(bodies), strict=True):
                name = (state.info.service, state.info.name)
                fragments[at] = self._fragments[name] = _fragment(state, stale, json, buckets, c)
        return [fragment for fragment in fragments if fragment is not None]  # all of them by now

    def service_json(self, store: Store, service: ServiceInfo, now: float) -> bytes:
        """`api_dicts.service_dict()` encoded, from the checks' fragments.

        Only a reload replaces the store's states (`Store.applied`); until then the checks'
        marks (`_MARK`) tell which need a look at their state, and the clock only whether one
        may have turned stale. The service is re-joined only if a byte moved.
        """
        buckets = (int(now // MINUTE), int(now // HOUR), int(now // DAY))
        entry = self._services.get(service.name)
        if entry is None or entry.service is not service or entry.applied != store.applied:
            entry = _Service(service, store.applied, store.states_of(service))
            self._services[service.name] = entry
        states = entry.states
        marks: list[tuple[object, ...]] = list(map(_MARK, states))
        if entry.buckets != buckets or not entry.looked <= now < entry.stale_at:
            entry.fragments = self.refresh(states, now, buckets)  # every check may have moved
            entry.totals = api_dicts.summed(map(_COUNTS, entry.fragments))
        elif marks != entry.marks:
            moved = _differ(marks, entry.marks)
            fresh = self.refresh([states[at] for at in moved], now, buckets)
            totals = entry.totals  # summing every check's took a third of the service's time
            for at, fragment in zip(moved, fresh, strict=True):
                totals = tuple(map(add, totals, map(sub, fragment.counts, entry.fragments[at].counts)))
                entry.fragments[at] = fragment
            entry.totals = totals
        else:
            return entry.json
        entry.marks, entry.buckets, entry.looked = marks, buckets, now
        entry.stale_at = min(map(_STALE_AT, entry.fragments), default=inf)
        parts = list(map(_JSON, entry.fragments))
        head = _service_head(service, states, entry.totals)
        if head != entry.head or parts != entry.parts:
            entry.head, entry.parts = head, parts
            entry.json = head + b',"checks":[' + b",".join(parts) + b"]}"
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
    """A service's answer as last built, and what it was built from: the checks' states, their
    marks when last looked at, and the time of that look."""

    service: ServiceInfo
    applied: int  # `Store.applied` when the states were looked up
    states: list[CheckState]
    marks: list[tuple[object, ...]] = field(default_factory=list)
    buckets: Buckets = (-1, -1, -1)
    looked: float = inf  # a clock stepped back before it: a stale check may be fresh again
    stale_at: float = -inf  # the earliest a check may turn stale
    fragments: list[_Fragment] = field(default_factory=list)
    totals: Counts = ()  # the fragments' counts summed: the service's uptime
    head: bytes = b""
    parts: list[bytes] = field(default_factory=list)
    json: bytes = b""


def _service_head(service: ServiceInfo, states: list[CheckState], totals: Counts) -> bytes:
    """The service's fields before `checks`, as '{"name":…,"uptime":{…}'; `totals`: the checks'
    counts summed."""
    head = {
        "name": service.name,
        "status": service_status(states).value,
        "labels": dict(service.labels),
        "uptime": api_dicts.ratios(totals),
    }
    return encode(head)[:-1]


async def services_parts(
    cache: ListingCache,
    store: Store,
    services: Iterable[ServiceInfo],
    now: float,
    slices: LoopSlices | None = None,
) -> list[bytes]:
    """`api_dicts.services_dict()` encoded, as pieces that join to it (a service's answer, as kept,
    is one), handing the event loop back between slices.

    Each service is built in one piece, so its status agrees with its checks'; the listing
    as a whole may span a few probe results.
    """
    slices = slices or LoopSlices()
    parts = [b""]  # the head's place; services and commas follow
    for service in list(services):
        parts += (cache.service_json(store, service, now), b",")
        await slices.pause_if_due()
    cache.forget_removed(store)
    if len(parts) > 1:
        parts.pop()  # no comma after the last service
    parts[0] = b'{"shard":' + encode(api_dicts.shard_dict(store)) + b',"services":['
    parts.append(b"]}")
    return parts


async def services_json(
    cache: ListingCache,
    store: Store,
    services: Iterable[ServiceInfo],
    now: float,
    slices: LoopSlices | None = None,
) -> bytes:
    """`services_parts()` joined."""
    return b"".join(await services_parts(cache, store, services, now, slices))
