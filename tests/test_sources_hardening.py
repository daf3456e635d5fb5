"""A config directory's files and the file_sd files are read as a single config file is: bounded.

Each file is size-capped and parsed by the bounded YAML reader (alias bombs, nesting, duplicate
keys), and its errors name the file and its own line, in the loader's wording.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from healthd.config import load
from healthd.config.schema import config_schema
from healthd.errors import ConfigError

from tests.test_config_hardening import bomb, make_huge

WEB = "services:\n  - name: web\n    checks:\n      - {type: tcp, target: '127.0.0.1:80'}\n"
FLEET = """\
services:
  - name: fleet
    targets_from: {file: fleet.FORMAT}
    checks:
      - type: tcp
        interval: 1s
"""


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path, {})
    assert all("\n" not in error for error in info.value.errors)
    return info.value.errors


def config_dir(tmp_path: Path, second: str) -> tuple[Path, Path]:
    directory = tmp_path / "conf.d"
    directory.mkdir()
    (directory / "10-web.yaml").write_text(WEB)
    (directory / "20-more.yaml").write_text(second)
    return directory, directory / "20-more.yaml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (bomb(8), ":7: the document expands to more than 1,000,000 values"),
        ("x: " + "[" * 600 + "]" * 600 + "\n", ":1: nested more than 64 levels deep"),
        (
            WEB.replace("web", "db").replace("    checks:", "    name: b\n    checks:"),
            ":3: key 'name' is given twice, first on line 2",
        ),
    ],
    ids=["alias bomb", "nesting", "duplicate key"],
)
def test_a_directory_file_is_parsed_within_bounds(tmp_path: Path, text: str, expected: str) -> None:
    directory, second = config_dir(tmp_path, text)
    errors = errors_of(directory)
    assert len(errors) == 1 and errors[0].startswith(f"{second}{expected}"), errors


def test_a_huge_directory_file_is_refused_unread(tmp_path: Path) -> None:
    directory, second = config_dir(tmp_path, "")
    make_huge(second)
    assert errors_of(directory) == [f"{second}: 9437184 bytes is more than the limit of 8 MiB"]


def test_a_directory_file_gets_the_loaders_wording(tmp_path: Path) -> None:
    text = "defaults:\n  rise: 0\n  intervl: 5s\n"  # defaults reach both files' checks
    directory, second = config_dir(tmp_path, text)
    assert errors_of(directory) == [
        f"{second}:2: defaults.rise: must be at least 1, not 0",
        f"{second}:3: defaults.intervl: unknown option (did you mean 'interval'?)",
    ]


def write_fleet(tmp_path: Path, suffix: str, text: str) -> tuple[Path, Path]:
    config = tmp_path / "config.yaml"
    config.write_text(FLEET.replace("FORMAT", suffix))
    (tmp_path / f"fleet.{suffix}").write_text(text)
    return config, tmp_path / f"fleet.{suffix}"


@pytest.mark.parametrize(
    ("suffix", "text", "expected"),
    [
        ("yaml", bomb(8), ":7: the document expands to more than 1,000,000 values"),
        ("yaml", "- targets: [a:1]\n  targets: [b:1]\n", ":2: key 'targets' is given twice, first on line 1"),
        ("json", '[{"targets": ["a:1"], "targets": ["b:1"]}]', ": key 'targets' is given twice"),
        ("json", "[" * 100_000 + "]" * 100_000, ": nested too deeply"),
    ],
    ids=["yaml alias bomb", "yaml duplicate key", "json duplicate key", "json nesting"],
)
def test_a_discovery_file_is_parsed_within_bounds(
    tmp_path: Path, suffix: str, text: str, expected: str
) -> None:
    config, fleet = write_fleet(tmp_path, suffix, text)
    errors = errors_of(config)
    assert len(errors) == 1 and errors[0].startswith(f"{fleet}{expected}"), errors


def test_a_huge_discovery_file_is_refused_unread(tmp_path: Path) -> None:
    config, fleet = write_fleet(tmp_path, "json", "")
    make_huge(fleet)
    assert errors_of(config) == [f"{fleet}: 9437184 bytes is more than the limit of 8 MiB"]


# ---- the schema knows the scale-out keys ---------------------------------------------------

VALIDATOR = jsonschema.Draft202012Validator(config_schema())
SCALED = """\
watch: true
cluster: {shard_count: 4, shard_index: 1, replicas: 2}
services:
  - name: web
    checks:
      - {type: tcp, target: '127.0.0.1:80', labels: {zone: a}}
  - name: fleet
    targets_from: {file: targets/fleet.json}
    checks:
      - {type: http, url: "http://{{target}}/healthz", interval: 1s}
      - {type: tcp}
"""


def schema_errors(text: str) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(yaml.safe_load(text))]


def test_the_schema_accepts_cluster_watch_labels_and_templates() -> None:
    assert schema_errors(SCALED) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("shard_count: 4", "shard_count: 0"),
        ("replicas: 2", "replica: 2"),
        ("watch: true", "watch: often"),
        ("zone: a", "le: a"),  # healthd's own label on per-check series
        ("{file: targets/fleet.json}", "{file: targets/fleet.json, every: 1m}"),
        ("{type: tcp}", "{type: tcp, colour: red}"),  # a template's option names are checked
        ("{type: tcp}", "{type: ftp}"),
        ("{type: tcp, target: '127.0.0.1:80', labels", "{type: tcp, labels"),  # not a template: target
    ],
)
def test_the_schema_rejects_bad_scale_out_keys(old: str, new: str) -> None:
    assert old in SCALED
    assert schema_errors(SCALED.replace(old, new)) != []


def test_a_template_validates_once_filled_in(tmp_path: Path) -> None:
    """What the schema lets through in a template, check-config judges on the generated checks."""
    config = tmp_path / "config.yaml"
    config.write_text(SCALED.replace("interval: 1s", "interval: 1s, timeout: 2s"))
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets/fleet.json").write_text(json.dumps([{"targets": ["127.0.0.1:1"]}]))
    assert schema_errors(config.read_text()) == []
    assert any("timeout" in error for error in errors_of(config))
