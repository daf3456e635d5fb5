"""Targets from file_sd files: one check per target, labels carried, and reloads that keep state."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from healthd.app import create_app
from healthd.config import load
from healthd.errors import ConfigError
from prometheus_client.parser import text_string_to_metric_families

TEMPLATES = """\
services:
  - name: fleet
    labels: {team: infra}
    targets_from: {file: targets/fleet.json}
    checks:
      - type: tcp
        interval: 100ms
        timeout: 100ms
      - type: http
        name: "{{host}}-health"
        url: "http://{{target}}/healthz?zone={{labels.zone}}"
        interval: 1s
        timeout: 500ms
"""


def write_targets(path: Path, groups: list[dict[str, Any]]) -> None:
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    tmp.rename(path)  # as discovery tools do: never a half-written file


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(TEMPLATES)
    return path


def test_each_template_yields_one_check_per_target(config_path: Path) -> None:
    targets = config_path.parent / "targets/fleet.json"
    write_targets(
        targets,
        [
            {"targets": ["127.0.0.2:8080", "127.0.0.3:8080"], "labels": {"zone": "a", "__meta_dc": "x"}},
            {"targets": ["127.0.0.4:8080", "127.0.0.2:8080"], "labels": {"zone": "b"}},
        ],
    )
    loaded = load(config_path, {})
    checks = loaded.config.services[0].checks
    assert [(c.name, c.display_target, dict(c.labels)) for c in checks] == [
        ("127.0.0.2_8080", "127.0.0.2:8080", {"zone": "a"}),  # the first group wins a repeated target
        ("127.0.0.2-health", "http://127.0.0.2:8080/healthz", {"zone": "a"}),
        ("127.0.0.3_8080", "127.0.0.3:8080", {"zone": "a"}),
        ("127.0.0.3-health", "http://127.0.0.3:8080/healthz", {"zone": "a"}),
        ("127.0.0.4_8080", "127.0.0.4:8080", {"zone": "b"}),
        ("127.0.0.4-health", "http://127.0.0.4:8080/healthz", {"zone": "b"}),
    ]
    assert checks[1].url.endswith("?zone=a")  # type: ignore[union-attr]
    assert loaded.watched == (config_path, targets)


def test_a_yaml_discovery_file_works_too(config_path: Path) -> None:
    config_path.write_text(TEMPLATES.replace("fleet.json", "fleet.yaml"))
    (config_path.parent / "targets").mkdir()
    (config_path.parent / "targets/fleet.yaml").write_text("- targets: ['127.0.0.9:1']\n")
    assert [c.name for c in load(config_path, {}).config.services[0].checks] == [
        "127.0.0.9_1",
        "127.0.0.9-health",
    ]


@pytest.mark.parametrize(
    ("discovered", "expected"),
    [
        (None, ["{t}: no such file or directory"]),
        (
            '[{"targets": ["a:1"],\n "labels": {"zone": 1}}]',
            ["{t}: [0].labels: must map label names to strings"],
        ),
        ('{"targets": []}', ["{t}: a file_sd file is a list of {targets: [...], labels: {...}}"]),
        ('[{"targets": "a:1"}]', ["{t}: [0].targets: must be a list of non-empty strings"]),
        ('[{"targets": ["a:1"], "extra": 1}]', ["{t}: [0]: expected only 'targets' and 'labels'"]),
        (
            '[\n{"targets": ["a:1"],}\n]',
            ["{t}:2: JSON syntax error: Expecting property name enclosed in double quotes"],
        ),
        (
            '[{"targets": ["a:1"], "labels": {"bad-name": "x"}}]',
            ["{c}:6: services[0].checks[0].labels: label name 'bad-name' must match [a-zA-Z_][a-zA-Z0-9_]*"],
        ),
    ],
)
def test_bad_discovery_files_are_config_errors(
    config_path: Path, discovered: str | None, expected: list[str]
) -> None:
    targets = config_path.parent / "targets/fleet.json"
    config_path.write_text(TEMPLATES.split("      - type: http")[0])
    if discovered is not None:
        targets.parent.mkdir()
        targets.write_text(discovered)
    with pytest.raises(ConfigError) as info:
        load(config_path, {})
    assert info.value.errors == [
        line.replace("{t}", str(targets)).replace("{c}", str(config_path)) for line in expected
    ]


def test_template_errors_point_at_the_template(config_path: Path) -> None:
    config_path.write_text(
        TEMPLATES.replace("{{labels.zone}}", "{{zone}}").replace(
            "targets_from: {file: targets/fleet.json}", "targets_from: {file: targets/fleet.json}"
        )
    )
    write_targets(config_path.parent / "targets/fleet.json", [{"targets": ["127.0.0.2:80", "127.0.0.3:80"]}])
    with pytest.raises(ConfigError) as info:
        load(config_path, {})
    assert info.value.errors == [
        f"{config_path}:11: services[0].checks[1].url: unknown placeholder {{{{zone}}}} (use target, host, port or labels.NAME)"
    ]
    config_path.write_text(
        TEMPLATES.replace("targets_from: {file: targets/fleet.json}", "targets_from: targets/fleet.json")
    )
    with pytest.raises(ConfigError) as info:
        load(config_path, {})
    assert info.value.errors == [
        f"{config_path}:4: services[0].targets_from: must be {{file: PATH}} (a Prometheus file_sd file, JSON or YAML)"
    ]


async def wait_for_probes(client: TestClient, names: list[str], at_least: int) -> dict[str, Any]:
    """Each named check of `fleet` has run `at_least` probes (bounded wait); their details."""
    details: dict[str, Any] = {}
    for _ in range(200):
        details = {n: await (await client.get(f"/api/v1/services/fleet/checks/{n}")).json() for n in names}
        if all(sum(d.get("counters", {}).values()) >= at_least for d in details.values()):
            return details
        await asyncio.sleep(0.05)
    raise AssertionError(f"probes did not run: {details}")


async def test_added_removed_and_relabelled_targets_apply_as_a_reload(config_path: Path) -> None:
    config_path.write_text(TEMPLATES.split("      - type: http")[0])
    targets = config_path.parent / "targets/fleet.json"
    write_targets(
        targets, [{"targets": ["127.0.0.2:9", "127.0.0.3:9", "127.0.0.4:9"], "labels": {"zone": "a"}}]
    )
    app = create_app(load(config_path, {}).config, config_path)
    async with TestClient(TestServer(app)) as client:
        before = await wait_for_probes(client, ["127.0.0.2_9", "127.0.0.3_9"], at_least=3)
        write_targets(
            targets,
            [
                {"targets": ["127.0.0.2:9"], "labels": {"zone": "a"}},  # unchanged
                {"targets": ["127.0.0.3:9"], "labels": {"zone": "b"}},  # relabelled
                {"targets": ["127.0.0.5:9"], "labels": {"zone": "a"}},  # added; 127.0.0.4:9 removed
            ],
        )
        answer = await (await client.post("/api/v1/reload")).json()
        assert answer == {
            "added": ["fleet/127.0.0.5_9"],
            "removed": ["fleet/127.0.0.4_9"],
            "changed": ["fleet/127.0.0.3_9"],
        }
        after = await (await client.get("/api/v1/services/fleet/checks/127.0.0.2_9")).json()
        assert sum(after["counters"].values()) >= sum(before["127.0.0.2_9"]["counters"].values())
        assert after["since"] == before["127.0.0.2_9"]["since"]  # its state machine ran on
        service = await (await client.get("/api/v1/services/fleet")).json()
        labels = {check["name"]: check["labels"] for check in service["checks"]}
        assert labels == {
            "127.0.0.2_9": {"zone": "a"},
            "127.0.0.3_9": {"zone": "b"},
            "127.0.0.5_9": {"zone": "a"},
        }
        await wait_for_probes(client, ["127.0.0.3_9", "127.0.0.5_9"], at_least=1)
        text = await (await client.get("/metrics")).text()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "probe_success"]
    zones = {s.labels["check"]: s.labels.get("zone") for s in family.samples}
    assert zones == {"127.0.0.2_9": "a", "127.0.0.3_9": "b", "127.0.0.5_9": "a"}


def test_a_config_directory_and_discovery_files_together(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "fleet.yaml").write_text(TEMPLATES.split("      - type: http")[0])
    write_targets(conf / "targets/fleet.json", [{"targets": ["127.0.0.2:9"]}])
    (conf / "static.yaml").write_text(
        yaml.safe_dump({"services": [{"name": "web", "checks": [{"type": "tcp", "target": "127.0.0.1:80"}]}]})
    )
    loaded = load(conf, {})
    assert [(s.name, [c.name for c in s.checks]) for s in loaded.config.services] == [
        ("fleet", ["127.0.0.2_9"]),
        ("web", ["tcp"]),
    ]
    assert loaded.watched == (conf, conf / "targets/fleet.json")
