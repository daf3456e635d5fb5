"""`healthd schema` (issue 14 item 5): a JSON Schema that accepts every config we ship or document
and rejects the suite's bad configs, checked with the `jsonschema` package."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from healthd.config.schema import config_schema

from tests.test_config import BAD_CONFIGS, GOOD
from tests.test_config_hardening import CASES

ROOT = Path(__file__).parent.parent
VALIDATOR = jsonschema.Draft202012Validator(config_schema())
MINIMAL_SERVICE = {"name": "svc", "checks": [{"type": "tcp", "target": "127.0.0.1:1"}]}

# bad configs a schema cannot see: each needs the whole config, the file system or code
SCHEMA_CANNOT = {
    "source_ip ::1 is not ipv4": "a rule across two options",
    "must be from 1ms to 7d, not 8d": "the range of a duration written as text",
    "must be from 1ms to 7d, not 0": "the range of a duration written as text (0s)",
    "is not a finite number": "NaN compares false with every bound",
    "nested too deeply": "what a regex compiles to",
    "ambiguous regex": "what a regex compiles to",
    "repeat count is too large": "what a regex compiles to",
    "characters, more than 1000": "the json_path language",
    "is a character device": "the file system",
    "cannot read /nonexistent/token": "the file system",
}


def docs_configs() -> list[tuple[str, Any]]:
    """Every YAML block of the README and docs/, completed to a config when it is a fragment."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = re.findall(r"^```yaml[^\n]*\n(.*?)^```", path.read_text(), flags=re.M | re.S)
        for index, block in enumerate(blocks):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and data.keys() & {
                "services",
                "checks",
                "metrics",
                "server",
                "defaults",
            }:
                found.append((f"{path.name}#{index}", complete(data)))
    return found


def complete(data: dict[str, Any]) -> dict[str, Any]:
    if "checks" in data:  # a service's checks shown alone
        return {"services": [{"name": "svc", "checks": data["checks"]}]}
    return {"services": [MINIMAL_SERVICE], **data}


def errors(data: Any) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(data)]


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(config_schema())


def test_every_option_has_a_description_and_durations_show_units() -> None:
    schema = config_schema()
    for name, definition in schema["$defs"].items():
        for option, prop in definition["properties"].items():
            assert prop.get("description"), f"{name}.{option} has no description"
    interval = schema["$defs"]["TcpCheck"]["properties"]["interval"]
    assert interval["default"] == "10s" and "1m30s" in interval["description"]
    assert {"server", "scheduler", "metrics", "defaults", "services"} <= set(schema["properties"])
    assert all(prop.get("description") for prop in schema["properties"].values())


def test_every_check_type_and_option_is_in_the_schema() -> None:
    from healthd.config import CHECK_MODELS

    schema = config_schema()
    for model in CHECK_MODELS.values():
        assert set(schema["$defs"][model.__name__]["properties"]) == set(model.model_fields)


def test_the_cli_prints_the_schema() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "healthd", "schema"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == config_schema()


def test_accepts_the_example_config() -> None:
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert errors(data) == []


def test_accepts_the_suites_good_config() -> None:
    assert errors(yaml.safe_load(GOOD)) == []


def test_accepts_every_config_in_the_docs() -> None:
    configs = docs_configs()
    assert len(configs) >= 5
    for where, data in configs:
        assert errors(data) == [], where


def assert_rejected_or_known(data: Any, expected: str) -> None:
    """Rejected by the schema, or a mistake listed in SCHEMA_CANNOT."""
    if not errors(data):
        assert any(known in expected for known in SCHEMA_CANNOT), f"the schema accepts it: {expected}"


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS, ids=[e for _, e in BAD_CONFIGS])
def test_rejects_the_bad_config_table(text: str, expected: str) -> None:
    assert_rejected_or_known(yaml.safe_load(text), expected)


def yaml_data(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except Exception:  # PyYAML raises more than YAMLError; the loader's own tests cover these
        pytest.skip("not YAML a schema is applied to (the loader rejects it)")


@pytest.mark.parametrize(("text", "fragment"), [(c[1], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_rejects_the_hostile_configs_it_can_see(text: str, fragment: str) -> None:
    data = yaml_data(text)
    if "is given twice" in fragment:
        pytest.skip("duplicate keys are gone once YAML is parsed")
    assert_rejected_or_known(data, fragment)


@pytest.mark.parametrize(
    "text",
    [
        "services: [{name: a, checks: [{type: tcp, target: 'h:1', interval: 1h30m, timeout: 1m30s}]}]",
        "services: [{name: a, checks: [{type: http, url: 'http://h/', expect_status: 200, json_path: 'a'}]}]",
        "services: [{name: a, checks: [{type: http, url: 'https://h/', min_tls_version: 1.2, cert_expiry_min: 14d}]}]",
        "defaults: {interval: 2w, count: 3}\nservices: [{name: a, checks: [{type: icmp, target: h}]}]",
        "defaults:\nservices: [{name: a, labels: {team: x}, checks: [{type: syn, target: '[::1]:1'}]}]",
    ],
)
def test_accepts_the_forms_the_loader_takes(text: str) -> None:
    assert errors(yaml.safe_load(text)) == []
