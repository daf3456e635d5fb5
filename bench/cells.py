"""Table cells shared by the report's modules: medians with ranges, verdicts, shares."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from bench.measure import BigRun
from bench.reference import ReferenceWindow

HISTORY = 120


def spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    """median [min-max], or the single value."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    middle = fmt.format(statistics.median(values))
    if len(values) == 1:
        return middle
    return f"{middle} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ok(met: bool | None) -> str:
    return "-" if met is None else ("**met**" if met else "**missed**")


def pct(share: float) -> str:
    return "-" if math.isnan(share) else f"{share:.0%}"


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs and not math.isnan(theirs) and not math.isnan(ours) else float("nan")


def ref_machine_us(ref: Sequence[ReferenceWindow]) -> list[float]:
    return [w.machine_cpu * 1e6 / w.probes for w in ref if w.probes]


def bytes_per_result(results: dict[str, Any]) -> float | None:
    """What a result still to come adds to a daemon whose checks each hold at least one: a
    history ring is reserved whole with its first result, so it is memfill's later-result
    figure (results files written before that figure existed give the average)."""
    memory = results.get("memory") or {}
    value = memory.get("bytes_per_later_result", memory.get("bytes_per_result"))
    return float(value) if value is not None else None


def projected_rss(big: BigRun, per_result: float | None, now: float | None = None) -> float | None:
    """Memory once every check holds `history` results: `now` (the RSS sum unless given, e.g.
    the PSS sum) plus the results still to come, which are the main process's own pages."""
    if per_result is None:
        return None
    missing = big.run.checks * HISTORY - big.stored_results
    return (big.rss_end if now is None else now) + max(missing, 0) * per_result


def projected_pss(big: BigRun, per_result: float | None) -> float | None:
    """The PSS sum once the history is full (None where PSS was not measured)."""
    return None if big.pss_end is None else projected_rss(big, per_result, big.pss_end)


def not_run(results: dict[str, Any], step: str) -> str:
    """Why a figure is absent: left out by --only, or by the time budget."""
    error = (results.get("errors") or {}).get(step)
    if error:
        return f"step failed: {error}"
    only = results.get("only") or []
    return f"not run (`--only {' '.join(only)}`)" if only and step not in only else "not measured"
