"""Scheduler timing with a fake clock and scripted probes; run_probe with real exceptions."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import defaultdict
from typing import Any

import pytest
from healthd.app import service_infos
from healthd.config import Config, TcpCheck, build_config, diff_configs, format_check_id
from healthd.errors import ProbeFailure
from healthd.metrics import Exposition
from healthd.probes import ProbeContext, ProbeResources
from healthd.results import ErrorKind, ProbeOutcome
from healthd.scheduler import Scheduler, first_slot, next_slot, run_probe, stable_fraction
from healthd.store import ServiceInfo, Store

from tests.waiting import LOOP_CLOCK_SLACK


class FakeTime:
    """Virtual monotonic time: sleepers wake in order when the test advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(delay, 0.0), next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            self.now = when
            if not future.done():
                future.set_result(None)
            await settle()
        self.now = target


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


class ScriptedProbe:
    """Records when each check starts and how many runs overlap; takes `duration` fake seconds."""

    def __init__(self, time: FakeTime, duration: float = 0.0) -> None:
        self.time = time
        self.duration = duration
        self.starts: dict[str, list[float]] = defaultdict(list)
        self.in_flight = 0
        self.max_in_flight = 0
        self.per_check: dict[str, int] = defaultdict(int)
        self.max_per_check = 0

    async def __call__(self, check: Any, ctx: ProbeContext) -> ProbeOutcome:
        self.starts[check.name].append(self.time.now)
        self.in_flight += 1
        self.per_check[check.name] += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_per_check = max(self.max_per_check, self.per_check[check.name])
        try:
            if self.duration:
                await self.time.sleep(self.duration)
        finally:
            self.in_flight -= 1
            self.per_check[check.name] -= 1
        return ProbeOutcome()


def make_config(n: int, interval: str = "10s", timeout: str = "1s", max_in_flight: int = 1024) -> Config:
    checks = [
        {
            "name": f"c{i}",
            "type": "tcp",
            "target": f"127.0.0.1:{i + 1}",
            "interval": interval,
            "timeout": timeout,
        }
        for i in range(n)
    ]
    return build_config(
        "test", {"scheduler": {"max_in_flight": max_in_flight}, "services": [{"name": "s", "checks": checks}]}
    )


def start(config: Config, probe: ScriptedProbe, time: FakeTime) -> tuple[Scheduler, Store]:
    store = Store()
    store.apply(service_infos(config))
    scheduler = Scheduler(
        store,
        {"tcp": probe},
        resources=ProbeResources(),  # scripted probes use none
        clock=time.clock,
        wall=lambda: 0.0,
        sleep=time.sleep,
    )
    scheduler.start(config)
    return scheduler, store


def test_next_slot_keeps_the_grid_and_skips_missed_slots() -> None:
    assert next_slot(100.0, 10.0, 100.5) == (110.0, 0)
    assert next_slot(100.0, 10.0, 110.0) == (120.0, 1)  # the slot at 110 is taken: skip it
    assert next_slot(100.0, 10.0, 135.0) == (140.0, 3)


def test_first_slot_is_stable_and_within_one_interval() -> None:
    key = ("svc", "chk")
    assert stable_fraction(key) == stable_fraction(("svc", "chk"))
    slot = first_slot(key, 10.0, mono_now=50.0, wall_now=1234.5)
    assert 50.0 <= slot < 60.0
    # the phase is tied to the wall clock: a restart 3 s later plans the same wall-clock slots
    later = first_slot(key, 10.0, mono_now=53.0, wall_now=1237.5)
    assert (later - 53.0 + 1237.5) % 10.0 == pytest.approx((slot - 50.0 + 1234.5) % 10.0)


async def test_first_runs_spread_over_the_interval() -> None:
    time = FakeTime()
    probe = ScriptedProbe(time)
    scheduler, _ = start(make_config(1000), probe, time)
    await time.advance(9.999)
    firsts = sorted(starts[0] - 1000.0 for starts in probe.starts.values())
    assert len(firsts) == 1000
    per_second = [sum(1 for t in firsts if s <= t < s + 1) for s in range(10)]
    assert min(per_second) >= 60 and max(per_second) <= 140, per_second  # ~100 each, no burst
    await scheduler.stop()


async def test_fixed_rate_without_drift_when_probes_are_slow() -> None:
    time = FakeTime()
    probe = ScriptedProbe(time, duration=0.7)
    scheduler, store = start(make_config(3, interval="2s"), probe, time)
    await time.advance(20.0)
    for starts in probe.starts.values():
        gaps = {round(b - a, 9) for a, b in itertools.pairwise(starts)}
        assert gaps == {2.0}, starts
        assert len(starts) == 10
    assert store.lag.count == 30 and store.lag.sum == pytest.approx(0.0)
    await scheduler.stop()


async def test_overrun_skips_a_slot_and_never_overlaps() -> None:
    time = FakeTime()
    probe = ScriptedProbe(time, duration=2.5)  # longer than the interval (fake time is not the timeout)
    scheduler, store = start(make_config(1, interval="2s", timeout="2s"), probe, time)
    await time.advance(20.0)
    starts = probe.starts["c0"]
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(starts)}
    assert gaps == {4.0}  # every second slot skipped, none bunched
    assert probe.max_per_check == 1
    assert store.daemon.skipped_runs >= 4
    await scheduler.stop()


async def test_global_cap_on_probes_in_flight_shows_as_lag() -> None:
    time = FakeTime()
    probe = ScriptedProbe(time, duration=0.5)
    scheduler, store = start(make_config(50, interval="1s", max_in_flight=4), probe, time)
    await time.advance(3.0)
    assert probe.max_in_flight == 4
    assert store.lag.sum > 0  # queued probes start late and that is measured
    await scheduler.stop()


async def test_apply_restarts_only_what_changed() -> None:
    time = FakeTime()
    probe = ScriptedProbe(time)
    old = make_config(3, interval="1s")
    scheduler, store = start(old, probe, time)
    await time.advance(3.0)
    new_data = {
        "services": [
            {
                "name": "s",
                "checks": [
                    {"name": "c0", "type": "tcp", "target": "127.0.0.1:1", "interval": "1s", "timeout": "1s"},
                    {
                        "name": "c1",
                        "type": "tcp",
                        "target": "127.0.0.1:99",
                        "interval": "1s",
                        "timeout": "1s",
                    },
                    {"name": "c9", "type": "tcp", "target": "127.0.0.1:9", "interval": "1s", "timeout": "1s"},
                ],
            }
        ]
    }
    new = build_config("test", new_data)
    diff = diff_configs(old, new)
    ids = [[format_check_id(key) for key in keys] for keys in (diff.added, diff.removed, diff.changed)]
    assert tuple(ids) == (["s/c9"], ["s/c2"], ["s/c1"])
    store.apply(service_infos(new), restart={("s", "c1")})
    scheduler.apply(new, diff)
    assert scheduler.running == 3
    before_c2 = len(probe.starts["c2"])
    await time.advance(3.0)
    assert len(probe.starts["c2"]) == before_c2  # removed: no more runs
    assert len(probe.starts["c9"]) >= 2  # added
    assert len(probe.starts["c0"]) >= 5  # unchanged: kept running
    await scheduler.stop()
    assert scheduler.running == 0


def tcp(**options: Any) -> TcpCheck:
    return TcpCheck.model_validate({"type": "tcp", "name": "x", "target": "127.0.0.1:1", **options})


async def test_run_probe_turns_every_exception_into_a_result(
    caplog: pytest.LogCaptureFixture, resources: ProbeResources
) -> None:
    async def refused(check: Any, ctx: ProbeContext) -> ProbeOutcome:
        raise ProbeFailure(ErrorKind.REFUSED, "nope")

    async def hangs(check: Any, ctx: ProbeContext) -> ProbeOutcome:
        await asyncio.sleep(10)
        return ProbeOutcome()

    async def buggy(check: Any, ctx: ProbeContext) -> ProbeOutcome:
        raise KeyError("oops")

    async def fine(check: Any, ctx: ProbeContext) -> ProbeOutcome:
        return ProbeOutcome(phases={"connect": 0.001}, latency=0.001)

    r = await run_probe(refused, tcp(), resources)
    assert (r.ok, r.error_kind, r.error_message) == (False, ErrorKind.REFUSED, "nope")
    r = await run_probe(hangs, tcp(timeout="50ms", interval="1s"), resources)
    assert (r.error_kind, r.error_message) == (ErrorKind.TIMEOUT, "no answer within 50ms")
    assert 0.05 - LOOP_CLOCK_SLACK <= r.duration < 0.5
    r = await run_probe(buggy, tcp(), resources)
    assert r.error_kind is ErrorKind.ERROR and "KeyError" in (r.error_message or "")
    assert "raised unexpectedly" in caplog.text  # logged with its traceback
    r = await run_probe(fine, tcp(), resources)
    assert r.ok and r.latency == 0.001 and r.phases == {"connect": 0.001}


def test_store_infos_carry_settings() -> None:
    infos: list[ServiceInfo] = service_infos(make_config(1))
    assert infos[0].checks[0].settings["target"] == "127.0.0.1:1"
    assert infos[0].checks[0].settings["interval"] == "10s"


async def test_a_dead_check_task_is_logged_restarted_with_backoff_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime()
    calls: list[float] = []

    async def broken_twice(check: Any, ctx: ProbeContext) -> ProbeOutcome:
        calls.append(time.now)
        if len(calls) <= 2:
            # not an outcome: building the result fails in run_probe, outside its protection
            return None  # type: ignore[return-value]
        return ProbeOutcome()

    config = make_config(1, interval="1s", timeout="500ms")
    store = Store()
    store.apply(service_infos(config))
    scheduler = Scheduler(
        store,
        {"tcp": broken_twice},
        resources=ProbeResources(),
        clock=time.clock,
        wall=lambda: 0.0,
        sleep=time.sleep,
    )
    with caplog.at_level(logging.ERROR, logger="healthd.scheduler"):
        scheduler.start(config)
        await time.advance(8.0)
    state = store.check(("s", "c0"))
    assert state is not None
    assert state.task_restarts == 2
    assert len(calls) >= 3 and state.last is not None and state.last.ok  # it runs again
    # restarted after 1 s, then after 2 s (plus the check's phase, under one interval)
    assert 1.0 <= calls[1] - calls[0] < 2.0
    assert 2.0 <= calls[2] - calls[1] < 3.0
    deaths = [r for r in caplog.records if "the task of check s/c0 died" in r.getMessage()]
    assert [r.getMessage().rsplit(" ", 1)[-1] for r in deaths] == ["1s", "2s"]
    assert all(r.exc_info is not None and r.exc_info[0] is AttributeError for r in deaths)  # the traceback
    text = Exposition(store, {}).render().decode()
    assert 'healthd_check_task_restarts_total{check="c0",service="s"} 2.0' in text
    await scheduler.stop()
    assert scheduler.running == 0
