"""Snapshots: round trip, identity rules, bad files moved aside, atomic writes (real files)."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest
from healthd import snapshot
from healthd.results import ErrorKind, ProbeResult
from healthd.statefile import FILE_NAME, StateFile
from healthd.store import CheckInfo, ServiceInfo, Status, Store

T0 = 1_800_000_000.0


def make_store(target: str = "127.0.0.1:1", history: int = 10, kind: str = "tcp") -> Store:
    store = Store()
    checks = (
        CheckInfo("s", "a", kind, target, 1, 2, history),
        CheckInfo("s", "b", "icmp", "127.0.0.1", 1, 1, history),
    )
    store.apply([ServiceInfo("s", {}, checks)])
    return store


def fill(store: Store, count: int = 25) -> None:
    for n in range(count):
        t = T0 + 10 * n
        if n % 4 == 3:
            result = ProbeResult(
                time=t,
                ok=False,
                duration=0.5,
                latency=None,
                error_kind=ErrorKind.TIMEOUT,
                error_message=f"no answer within 500ms ({n})",
            )
        else:
            phases = {"resolve": 1e-6, "connect": 1e-4 * (n + 1)}
            if n == 5:
                phases["extra"] = 0.1  # more phases than the first result: kept whole
            result = ProbeResult(
                time=t,
                ok=True,
                duration=2e-4,
                latency=1e-4 * n,
                phases=phases,
                details={"address": "x", "n": n},
            )
        store.record(("s", "a"), result)
        store.record(("s", "b"), ProbeResult(time=t, ok=True, duration=1e-3, latency=1e-3, gauges={"g": 0.5}))


async def round_trip(store: Store) -> bytes:
    return snapshot.encode(await snapshot.capture(store, T0 + 1000))


async def test_round_trip_restores_state_history_failures_counters_and_uptime() -> None:
    old = make_store()
    fill(old)
    new = make_store()
    assert snapshot.restore(new, snapshot.decode(await round_trip(old))) == 2
    for key in (("s", "a"), ("s", "b")):
        before, after = old.check(key), new.check(key)
        assert before is not None and after is not None
        assert list(after.history) == list(before.history)
        assert list(after.failures) == list(before.failures)
        assert after.last == before.history[-1]  # the newest result as history keeps it (to 0.1 µs)
        assert (after.status, after.since, after.streak_ok, after.streak_fail) == (
            before.status,
            before.since,
            before.streak_ok,
            before.streak_fail,
        )
        assert (after.counts, after.transitions) == (before.counts, before.transitions)
        assert (after.last_success, after.last_failure) == (before.last_success, before.last_failure)
        for window in ("1h", "24h", "7d", "30d"):
            assert after.uptime.window(window, T0 + 300) == before.uptime.window(window, T0 + 300)
        assert before.duration_histogram is not None and after.duration_histogram is not None
        assert after.duration_histogram.counts == before.duration_histogram.counts
    restored = new.check(("s", "a"))
    assert restored is not None and len(restored.failures) == 6
    restored_history = list(restored.history)
    fill(new, 2)  # the restored state goes on working
    assert list(restored.history) == [*restored_history[2:], *list(restored.history)[-2:]]
    assert list(restored.history)[-1].time == T0 + 10


@pytest.mark.parametrize(
    ("changes", "restored"),
    [({"target": "127.0.0.1:2"}, 1), ({"kind": "syn"}, 1), ({"history": 4}, 2), ({}, 2)],
)
async def test_only_checks_with_the_same_identity_are_restored(
    changes: dict[str, object], restored: int
) -> None:
    old = make_store()
    fill(old)
    new = make_store(**changes)  # type: ignore[arg-type]
    assert snapshot.restore(new, snapshot.decode(await round_trip(old))) == restored
    state = new.check(("s", "a"))
    assert state is not None
    if restored == 1:
        assert state.status is Status.UNKNOWN and len(state.history) == 0
    else:
        assert len(state.history) == min(state.info.history, 10)


def corruptions(good: bytes) -> dict[str, bytes]:
    future = bytearray(good)
    struct.pack_into("<H", future, 8, snapshot.FORMAT_VERSION + 1)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    return {
        "foreign": b'{"this": "is json"}\n',
        "empty": b"",
        "truncated": good[: len(good) - 7],
        "flipped": bytes(flipped),
        "future": bytes(future),
    }


@pytest.mark.parametrize("case", ["foreign", "empty", "truncated", "flipped", "future"])
async def test_bad_file_is_moved_aside_with_one_warning(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    old = make_store()
    fill(old)
    bad = corruptions(await round_trip(old))[case]
    (tmp_path / FILE_NAME).write_bytes(bad)
    store = make_store()
    with caplog.at_level(logging.WARNING, logger="healthd.statefile"):
        assert await StateFile(store, tmp_path).restore() == 0
    assert len(caplog.records) == 1 and "moved to snapshot.bin.unreadable-" in caplog.records[0].getMessage()
    aside = list(tmp_path.glob(f"{FILE_NAME}.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bad
    assert not (tmp_path / FILE_NAME).exists()
    state = store.check(("s", "a"))
    assert state is not None and state.status is Status.UNKNOWN  # started fresh


async def test_missing_file_is_a_fresh_start_without_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert await StateFile(make_store(), tmp_path / "not-yet").restore() == 0
    assert caplog.records == []


async def test_write_is_atomic_and_private(tmp_path: Path) -> None:
    store = make_store()
    fill(store)
    state_file = StateFile(store, tmp_path / "state")  # created on first write
    assert await state_file.write()
    path = tmp_path / "state" / FILE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == [FILE_NAME]  # no temporary file left
    assert state_file.last.bytes == path.stat().st_size > 0
    fresh = make_store()
    assert await StateFile(fresh, tmp_path / "state").restore() == 2


async def test_unwritable_state_dir_warns_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the directory should be")
    state_file = StateFile(make_store(), blocker)
    with caplog.at_level(logging.WARNING, logger="healthd.statefile"):
        assert not await state_file.write()
        assert not await state_file.write()
    assert len(caplog.records) == 1 and "cannot write" in caplog.records[0].getMessage()


async def test_encode_frees_each_copy_once_packed_and_keeps_the_order() -> None:
    """The copies go as they are packed (freeing all at the end held the GIL ~40 ms at 10k)."""
    store = make_store()
    fill(store)
    copy = await snapshot.capture(store, T0 + 1000)
    packed = snapshot.encode(copy)
    assert copy.checks == []
    assert list(snapshot.decode(packed)) == ["s/a", "s/b"]
