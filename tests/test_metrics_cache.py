"""Kept lines: a scrape that reuses what did not change writes what a fresh render writes."""

from __future__ import annotations

import asyncio
import gzip
import random
import shutil
import subprocess
import zlib

import pytest
from healthd import deflate
from healthd.deflate import CrcTree, Deflated, PieceCompressor, deflated, joined
from healthd.loop_slices import LoopSlices
from healthd.metrics import Exposition
from healthd.probes import GAUGE_HELP
from healthd.results import ErrorKind, ProbeResult
from healthd.scrape import MetricsRenderer, gzip_join, plain_join
from healthd.store import CheckInfo, ServiceInfo, Store
from healthd.uptime import HOUR

T0 = 1_700_000_000.0
TCP = [
    CheckInfo("web", f"tcp{i}", "tcp", f"127.0.0.1:{8000 + i}", rise=1, fall=2, history=10) for i in range(6)
]
PING = CheckInfo("db", "ping", "icmp", "::1", rise=1, fall=1, history=10)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def result(t: float, ok: bool = True, kind: ErrorKind | None = None, **extra: object) -> ProbeResult:
    failed = kind or (None if ok else ErrorKind.TIMEOUT)
    return ProbeResult(
        time=t,
        ok=ok,
        duration=0.001 + (t % 7) / 1000,
        latency=0.0005 if ok else None,
        error_kind=failed,
        error_message=None if failed is None else "no answer",
        **extra,  # type: ignore[arg-type]
    )


def services(*tcp: CheckInfo, labels: dict[str, str] | None = None) -> list[ServiceInfo]:
    return [ServiceInfo("web", labels or {}, tcp), ServiceInfo("db", {}, (PING,))]


async def same_as_fresh(exposition: Exposition, store: Store, clock: Clock) -> bytes:
    """The kept render, both formats, gzip or not, checked against a render from scratch; the text one."""
    fresh = Exposition(store, GAUGE_HELP, clock=clock)
    for openmetrics in (False, True):
        kept = b"".join(await exposition.render_chunks(openmetrics, slices=LoopSlices(0, 0)))
        assert kept == fresh.render(openmetrics)
        # then gzip: the histograms' CRCs the plain render left uncombined, families as kept
        zipped = await exposition.render_parts(openmetrics, LoopSlices(0, 0), gzip=True)
        assert gzip.decompress(gzip_join(zipped)) == fresh.render(openmetrics)
    return kept


async def test_new_results_reloads_and_time_are_all_seen() -> None:
    clock, store = Clock(), Store()
    store.apply(services(*TCP))
    exposition = Exposition(store, GAUGE_HELP, clock=clock)
    await same_as_fresh(exposition, store, clock)  # nothing yet: no results, no uptime
    for t in range(3):
        for info in TCP:
            store.record(info.key, result(T0 + t, phases={"resolve": 0.0, "connect": 0.0004}))
        store.record(PING.key, result(T0 + t, gauges={"healthd_icmp_packet_loss_ratio": t / 4}))
    before = await same_as_fresh(exposition, store, clock)
    # a few new results: a failure, a local error (counted only), a gauge that changes family set
    store.record(TCP[0].key, result(T0 + 5, ok=False))
    store.record(TCP[1].key, result(T0 + 5, ok=False, kind=ErrorKind.LOCAL))
    store.record(PING.key, result(T0 + 5, gauges={"healthd_icmp_rtt_stddev_seconds": 0.001}))
    after = await same_as_fresh(exposition, store, clock)
    assert after != before and b'result="local"' in after
    # a reload: one check gone, one new, one changed (its target), a service's labels changed
    changed = CheckInfo("web", "tcp2", "tcp", "127.0.0.1:9999", rise=1, fall=2, history=10)
    added = CheckInfo("web", "new", "tcp", "127.0.0.1:7000", rise=1, fall=1, history=10)
    store.apply(
        services(TCP[0], TCP[1], changed, *TCP[3:5], added, labels={"team": "a"}), restart={TCP[4].key}
    )
    text = await same_as_fresh(exposition, store, clock)
    assert b"127.0.0.1:9999" in text and b'check="tcp5"' not in text
    store.record(added.key, result(T0 + 6))
    await same_as_fresh(exposition, store, clock)
    # the clock alone: within the hour nothing moves; a day later the 24 h window is empty
    clock.now = T0 + HOUR
    await same_as_fresh(exposition, store, clock)
    clock.now = T0 + 25 * HOUR
    late = await same_as_fresh(exposition, store, clock)
    assert b'window="24h"' not in late and b'window="30d"' in late


async def test_a_restored_state_is_written_again() -> None:
    clock, store = Clock(), Store()
    store.apply(services(*TCP[:2]))
    store.record(TCP[0].key, result(T0))
    exposition = Exposition(store, GAUGE_HELP, clock=clock)
    await same_as_fresh(exposition, store, clock)
    store.apply(services(*TCP[:2]), restart={TCP[0].key, TCP[1].key})  # new states, same checks
    store.record(TCP[1].key, result(T0 + 1, ok=False))
    text = await same_as_fresh(exposition, store, clock)
    assert b'probe_success{service="web",check="tcp1"' in text


async def test_kept_lines_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("needs promtool (Debian package prometheus, installed by `make test` as root)")
    clock, store = Clock(), Store()
    store.apply(services(*TCP))
    exposition = Exposition(store, GAUGE_HELP, clock=clock)
    await exposition.render_chunks()
    for t in range(3):
        store.record(TCP[t].key, result(T0 + t, ok=t != 1, phases={"connect": 0.0004}))
    text = b"".join(await exposition.render_chunks())
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_gzip_takes_the_kept_histograms_as_they_are() -> None:
    """One gzip member (its CRC and size checked by zlib) holding what the plain answer holds."""
    store = Store()
    store.apply(services(*TCP))
    renderer = MetricsRenderer(store, GAUGE_HELP)
    for t in range(3):
        for info in TCP[: 2 + t]:
            store.record(info.key, result(T0 + t, ok=t != 1, phases={"connect": 0.0004}))
        for openmetrics in (False, True):
            zipped = await renderer.render(openmetrics, gzip=True)
            plain = await renderer.render(openmetrics)
            unzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
            text = unzip.decompress(zipped)
            assert unzip.eof and not unzip.unused_data
            assert b"healthd_probe_duration_seconds_bucket" in text
            assert per_check(text) == per_check(plain)


@pytest.mark.parametrize("combine", [True, False], ids=["crc32_combine", "without"])
def test_gzip_of_text_and_deflated_pieces_in_any_order(
    combine: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not combine:  # where libz's crc32_combine cannot be loaded the pieces are inflated
        monkeypatch.setattr(deflate, "_CRC32_COMBINE", None)
    elif deflate._CRC32_COMBINE is None:
        pytest.skip("libz's crc32_combine could not be loaded here")
    texts = [b"a" * 300, b"", b"b\n" * 5000, b"a" * 300]
    compressor = PieceCompressor()  # one compressor for all: each piece must forget the ones before
    tree = CrcTree([zlib.crc32(t) for t in texts], [len(t) for t in texts])
    pieces = joined([compressor.piece(t) for t in texts], tree)
    whole = deflated(b"c\n" * 40000)
    orders: list[list[bytes | Deflated]] = [
        [pieces],
        [b"head\n", pieces, b"tail\n"],
        [pieces, b"x" * 70000, whole, pieces, whole],
    ]
    for chunks in orders:
        text = b"".join(part if isinstance(part, bytes) else part.text() for part in chunks)
        assert text.count(b"b\n") == 5000 * chunks.count(pieces)
        assert gzip.decompress(gzip_join(chunks)) == text == plain_join(chunks)


def test_pieces_without_crcs_are_compressed_again() -> None:
    """Joined for the plain answer (no CRCs combined): a gzip answer of them is still right."""
    texts = [b"one\n", b"two\n"]
    tree = CrcTree([zlib.crc32(t) for t in texts], [len(t) for t in texts])
    pieces = joined([PieceCompressor().piece(t) for t in texts], tree, crc=False)
    assert pieces.crc is None and pieces.text() == b"one\ntwo\n"
    assert gzip.decompress(gzip_join([b"head\n", pieces])) == b"head\none\ntwo\n"


def per_check(text: bytes) -> list[bytes]:
    """The lines of the checks: the process collector's figures move between two renders."""
    return [line for line in text.splitlines() if b'service="' in line]


@pytest.mark.parametrize("count", [0, 1, 2, 7, 64])
def test_crc_tree_is_the_crc_of_the_texts_joined_after_any_changes(count: int) -> None:
    if deflate._CRC32_COMBINE is None:
        pytest.skip("libz's crc32_combine could not be loaded here")
    rng = random.Random(count)
    texts = [rng.randbytes(rng.randrange(0, 40)) for _ in range(count)]
    tree = CrcTree([zlib.crc32(t) for t in texts], [len(t) for t in texts], combine=count % 2 == 0)
    for round_ in range(6):
        changes = {}
        for index in rng.sample(range(count), k=min(count, rng.randrange(1, 4))):
            texts[index] = rng.randbytes(rng.randrange(0, 40))
            changes[index] = (zlib.crc32(texts[index]), len(texts[index]))
        before = tree.crcs[:]
        combine = round_ % 3 != 1  # a plain scrape leaves the combining to the next gzip one
        tree, old = tree.updated(changes, combine), tree
        assert old.crcs == before  # a copy: the job that updates works on its own
        expected = zlib.crc32(b"".join(texts)) if combine or not changes else None
        assert (tree.crc, tree.size) == (expected, sum(map(len, texts)))


def test_crc_tree_without_crc32_combine_knows_the_size_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deflate, "_CRC32_COMBINE", None)
    tree = CrcTree([1, 2, 3], [4, 5, 6]).updated({1: (7, 8)})
    assert (tree.crc, tree.size, tree.crcs) == (None, 18, [1, 7, 3])
    assert CrcTree([zlib.crc32(b"x")], [1]).crc == zlib.crc32(b"x")


async def test_a_scrape_given_up_while_compressing_loses_no_lines() -> None:
    clock, store = Clock(), Store()
    store.apply(services(*TCP))
    exposition = Exposition(store, GAUGE_HELP, clock=clock)
    await same_as_fresh(exposition, store, clock)
    store.record(TCP[0].key, result(T0 + 1, ok=False))
    scrape = asyncio.create_task(exposition.render_parts(gzip=True))
    await asyncio.sleep(0)  # the scrape has written the lines and waits for the threads compressing them
    assert not scrape.done() and exposition._kept._pending
    scrape.cancel()
    with pytest.raises(asyncio.CancelledError):
        await scrape
    text = await same_as_fresh(exposition, store, clock)
    assert b'healthd_probe_duration_seconds_count{service="web",check="tcp0"' in text
