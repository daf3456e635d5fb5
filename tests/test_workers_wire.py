"""Which worker owns a check, the frames between main and workers, staleness, `scheduler.workers`."""

from __future__ import annotations

from pathlib import Path

import pytest
from healthd import cluster
from healthd.config import CheckKey, Config, format_check_id, load
from healthd.errors import ConfigError
from healthd.histogram import LAG_BUCKETS
from healthd.infos import service_infos
from healthd.results import ErrorKind, ProbeResult
from healthd.store import Store, is_stale
from healthd.workers import WorkerPool
from healthd.workers_wire import (
    HEADER,
    Batch,
    control,
    from_row,
    read_control,
    resolve_workers,
    result_row,
    worker_share,
)


def config_of(checks: int, **scheduler: object) -> Config:
    return Config.model_validate(
        {
            "scheduler": scheduler,
            "services": [
                {
                    "name": f"svc{s}",
                    "checks": [
                        {"name": f"c{i}", "type": "http", "url": "http://127.0.0.1:1/",
                         "basic_auth": {"username": "u", "password": "hunter2"}}
                        for i in range(s, checks, 3)
                    ],
                }
                for s in range(3)
            ],
        }
    )  # fmt: skip


def keys_of(config: Config) -> set[str]:
    return {
        format_check_id(CheckKey(svc.name, check.name)) for svc in config.services for check in svc.checks
    }


def test_auto_is_the_usable_cpus() -> None:
    assert resolve_workers("auto", 2) == 2
    assert resolve_workers("auto", 1) == 1
    assert resolve_workers(3, 2) == 3


def test_the_shares_partition_the_checks_by_the_instance_hashmod() -> None:
    config = config_of(60, max_in_flight=101)
    shares = [worker_share(config, index, 3) for index in range(3)]
    owned = [keys_of(share) for share in shares]
    assert set().union(*owned) == keys_of(config)
    assert sum(map(len, owned)) == 60  # disjoint
    for index, keys in enumerate(owned):
        assert keys == {key for key in keys_of(config) if cluster.shard_of(key, 3) == index}
    assert {share.scheduler.max_in_flight for share in shares} == {34}  # 101 split, rounded up
    assert keys_of(worker_share(config, 0, 1)) == keys_of(config)


def test_the_control_frame_carries_the_config_with_its_secrets() -> None:
    config = config_of(3)
    frame = control(config, {"svc0/c0": ("down", 0, 3)})
    (size,) = HEADER.unpack(frame[: HEADER.size])
    assert size == len(frame) - HEADER.size
    got, seeds = read_control(frame[HEADER.size :])
    assert got == config
    check = got.services[0].checks[0]
    assert check.basic_auth is not None and check.basic_auth.password is not None
    assert check.basic_auth.password.get_secret_value() == "hunter2"
    assert seeds == {"svc0/c0": ("down", 0, 3)}


def test_the_checks_share_their_fields_set_and_a_copy_does_not_leak_into_the_others() -> None:
    config = config_of(6)
    got, _ = read_control(control(config, {})[HEADER.size :])
    first, second = got.services[0].checks[0], got.services[0].checks[1]
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    assert got == config
    changed = first.model_copy(update={"rise": 5})
    assert changed.rise == 5 and "rise" in changed.model_fields_set
    assert "rise" not in second.model_fields_set and second.rise == config.services[0].checks[1].rise


def test_a_worker_state_keeps_no_result_and_takes_a_seed_only_before_its_first() -> None:
    from healthd.worker_loop import DebounceState, lean_infos, seed

    config = config_of(3)
    store = Store(probe_histograms=False, state_type=DebounceState)
    store.apply(lean_infos(config))
    key = CheckKey("svc0", "c0")
    seed(store, {"svc0/c0": ("down", 0, 3)})
    state = store.check(key)
    assert state is not None and state.status.value == "down"
    store.record(key, ProbeResult(time=1.0, ok=True, duration=0.1, latency=0.1))
    assert state.last is None and state.streak_ok == 1
    seed(store, {"svc0/c0": ("down", 0, 3)})  # probed here since: its own state wins
    assert state.streak_ok == 1 and state.streak_fail == 0


def test_results_and_counters_survive_the_batch_frame() -> None:
    failed = ProbeResult(
        time=1.5, ok=False, duration=0.25, latency=None, error_kind=ErrorKind.REFUSED,
        error_message="refused", phases={"connect": 0.001}, details={"local_port": 4242, "ips": ["::1"]},
        gauges={"x": 1.0},
    )  # fmt: skip
    ok = ProbeResult(time=2.0, ok=True, duration=0.1, latency=0.05)
    batch = Batch([result_row(CheckKey("a", "b/c"), failed), result_row(CheckKey("a", "d"), ok)])
    batch.lag_counts, batch.lag_sum, batch.skipped = [1] * (len(LAG_BUCKETS) + 1), 0.5, 3
    batch.task_restarts = [("a", "d")]
    frame = batch.encode()
    back = Batch.decode(frame[HEADER.size :])
    assert [from_row(row) for row in back.results] == [
        (CheckKey("a", "b/c"), failed),
        (CheckKey("a", "d"), ok),
    ]
    assert (back.lag_counts, back.lag_sum, back.skipped, back.task_restarts) == (
        batch.lag_counts, 0.5, 3, [("a", "d")],
    )  # fmt: skip


def test_the_pool_applies_a_batch_as_the_scheduler_would() -> None:
    config = config_of(3)
    store = Store()
    store.apply(service_infos(config), now=0.0)
    changes = []
    pool = WorkerPool(store, 2, changes.append)
    down = ProbeResult(time=1.0, ok=False, duration=0.1, latency=None, error_kind=ErrorKind.REFUSED)
    batch = Batch([result_row(CheckKey("svc0", "c0"), down), result_row(CheckKey("gone", "x"), down)])
    batch.lag_counts, batch.lag_sum, batch.skipped = [2] + [0] * len(LAG_BUCKETS), 0.001, 1
    batch.task_restarts = [("svc0", "c0")]
    pool.take(batch)
    state = store.check(CheckKey("svc0", "c0"))
    assert state is not None and state.status.value == "down" and state.task_restarts == 1
    assert [c.new.value for c in changes] == ["down"]
    assert (store.lag.count, store.daemon.skipped_runs) == (2, 1)
    pool.take(batch)
    assert store.lag.count == 4  # deltas add up


def test_a_check_goes_stale_after_twice_its_interval_and_timeout() -> None:
    config = config_of(3)  # interval 10 s, timeout 2 s by default
    store = Store()
    store.apply(service_infos(config), now=100.0)
    state = store.check(CheckKey("svc0", "c0"))
    assert state is not None and state.info.stale_after == 2 * 10 + 2
    assert not is_stale(state, 122.0) and is_stale(state, 122.5)  # never probed: since installed
    store.record(state.info.key, ProbeResult(time=120.0, ok=True, duration=0.1, latency=0.1))
    assert not is_stale(state, 142.0) and is_stale(state, 142.5)
    unknown = Store()
    unknown.apply(service_infos(config))  # installed without a time: never stale
    assert not any(is_stale(s, 1e12) for s in unknown.all_states())


@pytest.mark.parametrize("value", ["0", "65", "two", "true", "1.5"])
def test_workers_out_of_range_is_a_config_error_with_its_line(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"scheduler:\n  workers: {value}\nservices:\n  - name: a\n    checks:\n"
        "      - {name: t, type: tcp, target: '127.0.0.1:1'}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert raised.value.errors == [
        f"{path}:2: scheduler.workers: must be auto or a whole number from 1 to 64, not "
        + repr({"0": 0, "65": 65, "true": True, "1.5": 1.5}.get(value, value))
    ]
