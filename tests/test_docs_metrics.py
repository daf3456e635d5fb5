"""The metric names the docs give are the ones the daemon exports.

What exists comes from a real daemon's /metrics (every family writes its HELP and
TYPE even before it has samples), plus the families that appear only once a probe
reports them: the gauges probes declare, each type's phase family and the name
lookup. Every `healthd_*` name in the README, docs and deploy files must be one of
them, as a family or as a sample its type gives (`_total` for counters; `_bucket`,
`_count`, `_sum` for histograms); docs/metrics.md's table must list each family
with its type.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from healthd.app import create_app
from healthd.config import load_config
from healthd.metrics_text import DNS_LOOKUP
from healthd.probes import GAUGE_HELP, PROBES
from prometheus_client.parser import text_string_to_metric_families

MakeClient = Callable[[web.Application], Awaitable[TestClient[Any, web.Application]]]

ROOT = Path(__file__).resolve().parent.parent
METRICS_DOC = ROOT / "docs" / "metrics.md"
NAME = re.compile(r"\bhealthd_[a-z0-9_]*[a-z0-9]")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
TABLE_ROW = re.compile(r"^\| (`[^|]*`) \| ([a-z]*) \|")  # | `name{labels}`, `name` | kind | meaning |
TABLE_NAME = re.compile(r"`([a-z_<>]+[a-z*])")


def documents() -> Iterator[Path]:
    yield ROOT / "README.md"
    yield from sorted((ROOT / "docs").glob("*.md"))
    for path in sorted((ROOT / "deploy").rglob("*")):
        if path.is_file() and path.suffix in (".yml", ".yaml", ".json", ".service", ".md"):
            yield path


def documented() -> dict[str, list[str]]:
    """Each `healthd_*` name in the docs -> where it is named (FILE:LINE)."""
    found: dict[str, list[str]] = {}
    for path in documents():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name in NAME.findall(line):
                found.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{number}")
    return found


def families(exposition: str) -> dict[str, str]:
    """Family name -> type, of an exposition and of the families that need a probe's result."""
    kinds = {family.name: family.type for family in text_string_to_metric_families(exposition)}
    late = {*GAUGE_HELP, DNS_LOOKUP, *(f"probe_{probe_type}_duration_seconds" for probe_type in PROBES)}
    return {**dict.fromkeys(late, "gauge"), **kinds}


def sample_names(kinds: dict[str, str]) -> set[str]:
    return {*kinds, *(name + suffix for name, kind in kinds.items() for suffix in SUFFIXES.get(kind, ()))}


def table(doc: str) -> dict[str, str]:
    """docs/metrics.md's table: each name in a row's first cell -> the row's kind."""
    rows: dict[str, str] = {}
    for line in doc.splitlines():
        if row := TABLE_ROW.match(line):
            for name in TABLE_NAME.findall(row.group(1)):
                for expanded in (name.replace("<type>", t) for t in PROBES) if "<type>" in name else (name,):
                    rows[expanded] = row.group(2)
    return rows


@pytest.fixture
async def exported(tmp_path: Path, closed_port: int, aiohttp_client: MakeClient) -> dict[str, str]:
    path = tmp_path / "config.yaml"
    path.write_text(
        'server: {listen: "127.0.0.1:0"}\ndefaults: {interval: 1h}\n'
        f"services: [{{name: docs, checks: [{{type: tcp, target: '127.0.0.1:{closed_port}'}}]}}]\n"
    )
    client = await aiohttp_client(create_app(load_config(path), path))
    response = await client.get("/metrics")
    assert response.status == 200
    return families(await response.text())


def test_the_docs_name_metrics() -> None:
    # the checks below must have something to check
    assert {"healthd_check_up", "healthd_probes_total", "healthd_build_info"} <= set(documented())
    assert {"probe_success": "gauge", "healthd_scheduler_lag_seconds": "histogram"}.items() <= table(
        METRICS_DOC.read_text(encoding="utf-8")
    ).items()


def test_every_documented_metric_is_exported(exported: dict[str, str]) -> None:
    names = sample_names(exported)
    unknown = {name: places for name, places in documented().items() if name not in names}
    assert not unknown, "\n".join(f"{name}: {', '.join(places)}" for name, places in sorted(unknown.items()))


def test_the_metrics_table_lists_every_family_with_its_type(exported: dict[str, str]) -> None:
    rows = table(METRICS_DOC.read_text(encoding="utf-8"))
    listed = {name.removesuffix("_total") if rows[name] == "counter" else name: rows[name] for name in rows}
    ours = {name: kind for name, kind in exported.items() if name.startswith(("healthd_", "probe_"))}
    wrong = {name: (kind, listed.get(name)) for name, kind in ours.items() if listed.get(name) != kind}
    assert not wrong, f"family: (its type, the table's): {wrong}"  # every family, with its type
    strays = {name for name in listed if not name.endswith("*") and name not in exported}
    assert not strays, f"rows for families that do not exist: {strays}"


def test_sample_names_follow_the_family_type() -> None:
    kinds = families(
        "# HELP healthd_x X\n# TYPE healthd_x counter\n# HELP healthd_y Y\n# TYPE healthd_y gauge\n"
    )
    names = sample_names(kinds)
    assert {"healthd_x", "healthd_x_total", "healthd_y"} <= names
    assert not {"healthd_x_sum", "healthd_y_total"} & names
