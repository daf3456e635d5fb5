"""One entry per probe type: how the bench builds its checks, targets and goals.

A probe type is measured only when the daemon's probe table has it; adding a
type to healthd makes its rows appear here with no other change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.targets import http_targets, icmp_targets, tcp_targets

TCP_LISTENERS = 10_000  # distinct TCP targets; bigger check counts reuse them
HTTP_LISTENERS = 1_000
ICMP_ADDRESSES = 10_000


def _hostport(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _tcp(i: int) -> dict[str, Any]:
    return {"type": "tcp", "target": _hostport(_TCP[i % TCP_LISTENERS])}


def _syn(i: int) -> dict[str, Any]:
    return {"type": "syn", "target": _hostport(_TCP[i % TCP_LISTENERS])}


def _icmp(i: int) -> dict[str, Any]:
    # one echo per probe, so probes/s and echoes/s are the same number
    return {"type": "icmp", "target": _ICMP[i % ICMP_ADDRESSES], **_icmp_count()}


def _http(i: int) -> dict[str, Any]:
    return {"type": "http", "url": f"http://{_hostport(_HTTP[i % HTTP_LISTENERS])}/"}


def _icmp_count() -> dict[str, int]:
    from healthd.config import CHECK_MODELS

    model = CHECK_MODELS.get("icmp")
    return {"count": 1} if model is not None and "count" in model.model_fields else {}


_TCP = tcp_targets(TCP_LISTENERS)
_HTTP = http_targets(HTTP_LISTENERS)
_ICMP = icmp_targets(ICMP_ADDRESSES)


@dataclass(frozen=True)
class Kind:
    name: str
    check: Callable[[int], dict[str, Any]]  # the i-th check of this type
    reference_target: Callable[[int], str]  # the i-th target as blackbox's `target=` parameter
    cpu_goal: float  # healthd machine CPU per probe <= this share of blackbox + Prometheus
    rate_goal: int | None  # probes/s with lag p99 < 100 ms and no failure
    rate_ladder: tuple[int, ...]  # rates tried, lowest first, until one fails


KINDS: dict[str, Kind] = {
    "tcp": Kind(
        "tcp",
        _tcp,
        lambda i: _hostport(_TCP[i]),
        0.25,
        12_000,
        (2_500, 5_000, 10_000, 12_000, 15_000, 20_000),
    ),
    "syn": Kind(
        "syn",
        _syn,
        lambda i: _hostport(_TCP[i]),
        0.25,
        15_000,
        (2_500, 5_000, 10_000, 15_000, 20_000, 30_000),
    ),
    "icmp": Kind(
        "icmp", _icmp, lambda i: _ICMP[i], 0.25, 20_000, (2_500, 5_000, 10_000, 20_000, 30_000, 40_000)
    ),
    "http": Kind(
        "http",
        _http,
        lambda i: f"http://{_hostport(_HTTP[i])}/",
        0.5,
        None,
        (500, 1_000, 2_000, 3_000, 5_000),
    ),
}
