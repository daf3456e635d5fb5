"""The text writer: escaping, family grouping, label caching across reloads, async = sync."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from healthd.loop_slices import LoopSlices
from healthd.metrics import Exposition
from healthd.probes import GAUGE_HELP
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, ServiceInfo, Store
from prometheus_client.parser import text_string_to_metric_families

UP = CheckInfo("web", "tcp", "tcp", "127.0.0.1:80", rise=1, fall=1, history=10)
ODD = CheckInfo("web", "odd", "http", 'http://h/"quoted"\\path\nx', rise=1, fall=1, history=10)
PING = CheckInfo("db", "ping", "icmp", "::1", rise=2, fall=2, history=10)
NEW = CheckInfo("db", "tcp", "tcp", "[::1]:5432", rise=1, fall=1, history=10)


def result(t: float, ok: bool = True, **extra: object) -> ProbeResult:
    return ProbeResult(
        time=t,
        ok=ok,
        duration=0.001 * (t + 1),
        latency=0.0005 if ok else None,
        error_kind=None if ok else ErrorKind.TIMEOUT,
        error_message=None if ok else "no answer",
        **extra,  # type: ignore[arg-type]
    )


def filled(histograms: bool) -> Store:
    store = Store(probe_histograms=histograms)
    store.apply([ServiceInfo("web", {"team": 'a"b'}, (UP, ODD)), ServiceInfo("db", {}, (PING, NEW))])
    for t in range(4):
        store.record(UP.key, result(t, ok=t != 2, phases={"resolve": 0.0, "connect": 0.0004}))
        store.record(ODD.key, result(t, phases={"connect": 0.001, "processing": 0.002}))
        store.record(PING.key, result(t, gauges={"healthd_icmp_packet_loss_ratio": t / 4}))
    store.record_lag(0.003)
    return store


def parsed(
    text: str,
) -> tuple[list[tuple[str, str, str]], dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    families = list(text_string_to_metric_families(text))
    meta = [(f.name, f.type, f.documentation) for f in families]
    samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    return meta, samples


@pytest.mark.parametrize("histograms", [True, False])
def test_families_parse_back_to_the_store(histograms: bool) -> None:
    store = filled(histograms)
    meta, samples = parsed(Exposition(store, GAUGE_HELP).render().decode())
    names = [name for name, _, _ in meta]
    assert len(names) == len(set(names))  # each family written once, its samples together
    odd = frozenset({"service": "web", "check": "odd", "type": "http", "target": ODD.target}.items())
    assert samples[("probe_success", odd)] == 1.0  # quotes, backslash and newline round-trip
    assert samples[("probe_http_duration_seconds", odd | {("phase", "processing")})] == 0.002
    ping = frozenset({"service": "db", "check": "ping", "type": "icmp", "target": "::1"}.items())
    assert samples[("healthd_icmp_packet_loss_ratio", ping)] == 0.75
    assert ("healthd_icmp_packet_loss_ratio", "gauge", GAUGE_HELP["healthd_icmp_packet_loss_ratio"]) in meta
    up = frozenset({"service": "web", "check": "tcp", "type": "tcp", "target": "127.0.0.1:80"}.items())
    assert samples[("healthd_probes_total", up | {("result", "timeout")})] == 1.0
    assert samples.get(("healthd_probe_duration_seconds_bucket", up | {("le", "+Inf")})) == (
        4.0 if histograms else None
    )
    assert samples.get(("healthd_probe_duration_seconds_sum", up)) == (
        pytest.approx(0.01) if histograms else None
    )
    assert samples[("healthd_service_info", frozenset({"service": "web", "team": 'a"b'}.items()))] == 1.0


def test_labels_follow_a_reload() -> None:
    store = filled(True)
    exposition = Exposition(store, GAUGE_HELP)
    assert b'target="127.0.0.1:80"' in exposition.render()
    moved = CheckInfo("web", "tcp", "tcp", "127.0.0.1:81", rise=1, fall=1, history=10)
    store.apply([ServiceInfo("web", {}, (moved,))], restart={moved.key})
    text = exposition.render()
    assert b'target="127.0.0.1:81"' in text and b'target="127.0.0.1:80"' not in text


def test_removed_checks_vanish() -> None:
    store = filled(True)
    store.apply([ServiceInfo("db", {}, (NEW,))])
    assert b'service="web"' not in Exposition(store, GAUGE_HELP).render()


def test_promtool_accepts_the_exposition() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("needs promtool (Debian package prometheus, installed by `make test` as root)")
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=Exposition(filled(True), GAUGE_HELP).render(),
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_the_async_writer_gives_the_same_text() -> None:
    store = filled(True)
    exposition = Exposition(store, GAUGE_HELP)
    assert b"".join(await exposition.render_chunks(slices=LoopSlices(0, 0))) == exposition.render()
