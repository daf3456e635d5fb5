"""The bench's Goals table: each issue-12 verdict follows from the figures and their references."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench import goals
from bench.cloop import LoopWindow
from bench.measure import BigRun, HealthdRun, RateSearch
from bench.polling import PollStats
from bench.steps_ref import FpingSteady
from bench.truth import TruthCheck, TruthRun


def run(
    checks: int = 1000, machine_us: float = 100.0, lag_p99: float = 0.015, failures: float = 0
) -> HealthdRun:
    return HealthdRun(
        checks, 1000, 10_000, 30_000, failures, {}, 0, 0.001, lag_p99, 1.0, 1.0, machine_us, 80, 10, 0.2,
        200 * 2**20, 0.05, 1000,
    )  # fmt: skip


def big(checks: int, rss_mb: float, metrics_s: float = 0.05, lag_p99: float = 0.015) -> BigRun:
    polls = {
        "/metrics": PollStats("/metrics", [metrics_s], [1000]),
        "/api/v1/services": PollStats("/x", [0.03], [9]),
    }
    return BigRun(run(checks, lag_p99=lag_p99), 3, checks * 3, int(rss_mb * 2**20), [metrics_s], 1000, [0.03], 9,
                  polls=polls)  # fmt: skip


def loop(mode: str, machine_us: float) -> LoopWindow:
    return LoopWindow(mode, True, 72, 10, 10_000, 0, machine_us, machine_us, 0.1)


def results(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "mode": "full",
        "only": [],
        "types": {
            "tcp": {"scheduled": [run(machine_us=150)], "reference": []},
            "syn": {"scheduled": [run(machine_us=80)], "reference": []},
            "icmp": {"scheduled": [run(machine_us=90)], "reference": []},
        },
        "cloop_paced": {"note": "built", "built": True, "modes": {"full": [loop("full", 50)], "syn": [loop("syn", 25)]}},
        "fping_steady": FpingSteady(72, 10, 1000, 40, 0, 82_000),
        "memory": {"bytes_per_result": 70},
        "big": {"polled": big(10_000, 200)},
    }  # fmt: skip
    return base | over


def verdict(rows: list[str], starts: str) -> str:
    [row] = [r for r in rows if r.startswith(f"| {starts}")]
    return row.rsplit("|", 2)[-2].strip()


def test_floor_ratios_against_the_c_loop_and_fping() -> None:
    rows = goals.rows(results())
    assert verdict(rows, "tcp: machine CPU/probe at 1,000/s, steady") == "**missed**"  # 150 / 50 = 3.0 > 2.5
    assert verdict(rows, "syn: machine CPU/probe at 1,000/s, steady") == "**met**"  # 80 / 25 = 3.2 <= 3.5
    assert verdict(rows, "icmp: machine CPU/probe at 1,000/s, steady") == "**missed**"  # 90 / 40 > 2
    assert "80 µs vs 25 µs = 3.20x" in "".join(rows)
    quick = goals.rows(results(mode="quick"))
    assert "3.20x (--quick: not steady state)" in "".join(quick)


def test_the_polled_10k_run_is_judged_on_lag_failures_and_projected_rss() -> None:
    slow = results(big={"polled": big(10_000, 200, lag_p99=0.030, metrics_s=0.2)})
    rows = goals.rows(slow)
    assert (
        verdict(rows, "10,000 checks every 10 s, `/metrics` and `/api/v1/services` read every 1 s: lag")
        == "**missed**"
    )
    assert verdict(rows, "10,000 checks: `/metrics` (gzip) ≤ 100 ms") == "**missed**"
    assert verdict(rows, "10,000 checks: `GET /api/v1/services` ≤ 50 ms") == "**met**"
    # 200 MB now plus 10,000 x 117 results still to come at 70 bytes: 278 MB
    assert "278 MB projected" in "".join(rows)


def test_memory_is_judged_by_the_trees_pss_with_the_rss_sum_beside_it() -> None:
    label = "10,000 checks every 10 s, `/metrics` and `/api/v1/services` read every 1 s: RSS"
    unmeasured = goals.rows(results())
    assert "(judged by RSS: PSS not measured)" in verdict_cell(unmeasured, label)
    shared = big(10_000, 320)  # workers' shared pages counted once per process: 398 MB projected
    rows = goals.rows(results(big={"polled": dataclasses.replace(shared, pss_end=180 * 2**20)}))
    assert verdict(rows, label) == "**met**"  # 180 MB + 78 MB of history still to come
    assert "PSS sum 180 MB now, 258 MB projected; RSS sum 320 MB now, 398 MB projected" in verdict_cell(
        rows, label
    )
    heavy = goals.rows(results(big={"polled": dataclasses.replace(shared, pss_end=250 * 2**20)}))
    assert verdict(heavy, label) == "**missed**"


def test_truth_misses_on_a_false_failure_even_when_the_latency_is_right() -> None:
    checks = {
        "tcp": TruthCheck("tcp", [20.3, 20.4], [20.1, 20.2]),
        "icmp": TruthCheck("icmp", [20.1], [20.1], ["timeout"]),
        "http": TruthCheck("http", [52.0], [40.5]),
    }
    rows = goals.rows(results(truth=TruthRun(6000, checks, 6000, 0, 0.01, 30, 0, 0.1)))
    assert (
        verdict(rows, "truth under load (6,000 checks/s, `/metrics` every 1 s, 20 ms delay link): tcp")
        == "**met**"
    )
    assert (
        verdict(rows, "truth under load (6,000 checks/s, `/metrics` every 1 s, 20 ms delay link): icmp")
        == "**missed**"
    )
    assert (
        verdict(rows, "truth under load (6,000 checks/s, `/metrics` every 1 s, 20 ms delay link): http")
        == "**missed**"
    )


def test_steps_left_out_say_so() -> None:
    rows = goals.rows(results(only=["big"], types={}, cloop_paced={}, fping_steady=None))
    assert "not run (`--only big`)" in verdict_cell(rows, "tcp: sustained")
    skipped = goals.rows(results(truth=TruthRun(6000, {}, 0, 0, 0, 0, 0, 0, skipped="needs root")))
    assert "skipped: needs root" in "".join(skipped)


def test_rates_show_the_single_process_figure_and_the_floor() -> None:
    default = RateSearch(15_000, [(15_000, run(15_000), "pass")])
    single = RateSearch(5_000, [(5_000, run(5_000), "pass"), (10_000, run(10_000, lag_p99=0.3), "fail")])
    unpaced = {"modes": {"syn": LoopWindow("syn", False, 1, 5, 180_000, 0, 25, 20, 0.9)}}
    data = {"syn": {"workers": "default", "default": default, "single": single}}
    rows = goals.rows(results(rates=data, cloop_unpaced=unpaced))
    row = next(r for r in rows if r.startswith("| syn: sustained"))
    assert (
        "15,000/s (tried up to 15,000/s) default workers; 5,000/s (tried up to 10,000/s) with `workers: 1`"
        in row
    )
    assert "C epoll syn unpaced 36,000/s" in row
    assert verdict(rows, "syn: sustained") == "**met**"


def verdict_cell(rows: list[str], starts: str) -> str:
    [row] = [r for r in rows if r.startswith(f"| {starts}")]
    return row.split("|")[2]


def test_no_cost_verdict_when_other_work_saturates_the_machine() -> None:
    busy = LoopWindow("syn", True, 72, 10, 10_000, 0, 25, 20, 0.97)
    rows = goals.rows(
        results(cloop_paced={"built": True, "modes": {"full": [loop("full", 50)], "syn": [busy]}})
    )
    assert verdict(rows, "syn: machine CPU/probe at 1,000/s, steady") == "-"
    assert "machine 97% busy: saturated by other work" in "".join(rows)
    assert verdict(rows, "tcp: machine CPU/probe at 1,000/s, steady") == "**missed**"


def test_the_projection_uses_what_a_later_result_adds_once_each_ring_is_reserved() -> None:
    label = "10,000 checks every 10 s, `/metrics` and `/api/v1/services` read every 1 s: RSS"
    reserved = results(memory={"bytes_per_result": 70, "bytes_per_later_result": 1})
    # 200 MB now plus 10,000 x 117 later results at 1 byte: the rings are already held
    assert "RSS sum 200 MB now, 201 MB projected" in verdict_cell(goals.rows(reserved), label)
