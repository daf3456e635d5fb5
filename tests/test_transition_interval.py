"""transition_interval and down_interval: faster re-checks around transitions, on a fixed grid."""

from __future__ import annotations

from typing import Any

import pytest
from healthd.app import service_infos
from healthd.config import CheckKey, Config, build_config
from healthd.errors import ConfigError, ProbeFailure
from healthd.probes import ProbeContext, ProbeResources
from healthd.results import ErrorKind, ProbeOutcome
from healthd.scheduler import Scheduler, grid_slot, stable_fraction
from healthd.store import Store

from tests.test_scheduler import FakeTime

KEY = CheckKey("s", "c")


class Switch:
    """A scripted probe that fails while `failing` is set; records its start times."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.failing = False
        self.starts: list[float] = []

    async def __call__(self, check: Any, ctx: ProbeContext) -> ProbeOutcome:
        self.starts.append(self.time.now)
        if self.failing:
            raise ProbeFailure(ErrorKind.REFUSED, "refused")
        return ProbeOutcome()


def config(**options: Any) -> Config:
    check = {"name": "c", "type": "tcp", "target": "127.0.0.1:1", "interval": "10s", "timeout": "500ms"}
    check.update({"rise": 2, "fall": 3, **options})
    return build_config("test", {"services": [{"name": "s", "checks": [check]}]})


async def run(cfg: Config, time: FakeTime, switch: Switch, script: list[tuple[float, bool]]) -> list[float]:
    """Advance the fake clock; at each (seconds, failing) step flip the probe; the gaps seen."""
    store = Store()
    store.apply(service_infos(cfg))
    scheduler = Scheduler(
        store,
        {"tcp": switch},
        resources=ProbeResources(),
        clock=time.clock,
        wall=lambda: time.now - 1000.0,
        sleep=time.sleep,
    )
    scheduler.start(cfg)
    try:
        for seconds, failing in script:
            switch.failing = failing
            await time.advance(seconds)
    finally:
        await scheduler.stop()
    return [round(b - a, 6) for a, b in zip(switch.starts, switch.starts[1:], strict=False)]


async def test_faster_while_between_states_and_while_down_then_back_to_interval() -> None:
    time = FakeTime()
    switch = Switch(time)
    cfg = config(transition_interval="1s", down_interval="5s")
    gaps = await run(cfg, time, switch, [(35, False), (30, True), (40, False), (40, False)])
    # up: 10 s; first failure -> 1 s while failing toward down (fall 3); down: 5 s;
    # first success while down -> the next 1 s grid point (rise 2); up again: 10 s
    # (a gap that switches grids is shorter: from the old grid's point to the new grid's next one)
    assert gaps[:3] == [10.0, 10.0, 10.0] and gaps[-3:] == [10.0, 10.0, 10.0]
    steady = [g for g in gaps if g in (1.0, 5.0, 10.0)]
    collapsed = [g for i, g in enumerate(steady) if i == 0 or g != steady[i - 1]]
    assert collapsed == [10.0, 1.0, 5.0, 10.0], gaps
    last_down = len(gaps) - 1 - gaps[::-1].index(5.0)
    assert 1.0 <= gaps[last_down + 1] < 2.0  # the first success while down: re-checked on the 1 s grid
    assert all(g <= 10.0 for g in gaps)


def on_grid(start: float, interval: float) -> bool:
    # the fake wall clock reads monotonic time - 1000
    offset = (start - 1000.0 - stable_fraction(KEY) * interval) % interval
    return min(offset, interval - offset) < 1e-6


async def test_every_start_lies_on_the_grid_of_the_interval_in_use() -> None:
    time = FakeTime()
    switch = Switch(time)
    cfg = config(transition_interval="2s", down_interval="3s", fall=2, rise=1)
    await run(cfg, time, switch, [(40, False), (40, True), (40, False)])
    assert len(switch.starts) > 12
    for start in switch.starts:
        assert any(on_grid(start, interval) for interval in (10.0, 2.0, 3.0)), start
    assert any(on_grid(s, 3.0) and not on_grid(s, 10.0) for s in switch.starts)  # down_interval was used


async def test_without_the_options_the_interval_never_changes() -> None:
    time = FakeTime()
    switch = Switch(time)
    gaps = await run(config(), time, switch, [(35, False), (60, True), (40, False)])
    assert set(gaps) == {10.0}


def test_grid_slot_is_the_next_grid_point_not_before_earliest() -> None:
    slot = grid_slot(KEY, 4.0, earliest=1003.0, mono_now=1000.0, wall_now=0.0)
    assert 1003.0 <= slot < 1007.0 and on_grid(slot, 4.0)
    assert grid_slot(KEY, 4.0, earliest=990.0, mono_now=1000.0, wall_now=0.0) >= 1000.0


@pytest.mark.parametrize("option", ["transition_interval", "down_interval"])
def test_timeout_must_fit_the_faster_intervals(option: str) -> None:
    with pytest.raises(ConfigError, match=f"timeout 500ms exceeds {option} 200ms"):
        config(**{option: "200ms"})
