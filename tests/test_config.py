"""Config loading: durations, defaults, strictness, and errors with FILE:LINE."""

from __future__ import annotations

from pathlib import Path

import pytest
from healthd.config import Config, diff_configs, format_check_id, format_duration, load_config, parse_duration
from healthd.errors import ConfigError

GOOD = """\
server:
  listen: 127.0.0.1:9180
defaults:
  interval: 5s
  timeout: 500ms
  fall: 2
services:
  - name: web
    labels: {team: core}
    checks:
      - type: tcp
        target: 127.0.0.1:8080
      - name: via-wan2
        type: tcp
        target: "[::1]:8080"
        source_ip: ::1
        timeout: 1s
  - name: db
    checks:
      - type: tcp
        target: db.example:5432
        interval: 1m
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    prefix = f"{path}:"
    assert all(line.startswith(prefix) for line in info.value.errors), info.value.errors
    return [line.removeprefix(prefix) for line in info.value.errors]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (3, 3.0),
        (0.5, 0.5),
        ("250ms", 0.25),
        ("10s", 10.0),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("14d", 14 * 86400.0),
        ("1w2d", 9 * 86400.0),
        ("1500us", 0.0015),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["10", "ten", "5x", "-1s", "", True, None, "30s1m", float("nan"), float("inf")]
)
def test_bad_durations(text: object) -> None:
    if text == "10":  # a bare numeric string is seconds too
        assert parse_duration(text) == 10.0
        return
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (0.25, 1.0, 1.5, 10.0, 90.0, 120.0, 3600.0, 5400.0, 14 * 86400.0):
        assert parse_duration(format_duration(seconds)) == seconds


def test_good_config_merges_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    web, db = config.services
    first, second = web.checks
    assert first.name == "tcp"  # defaults to the type
    assert (first.interval, first.timeout, first.fall, first.rise) == (5.0, 0.5, 2, 2)
    assert second.timeout == 1.0  # a check overrides defaults
    assert str(second.source_ip) == "::1"
    assert db.checks[0].interval == 60.0
    assert web.labels == {"team": "core"}
    assert config.check_count == 3


def test_five_mistakes_reported_at_once_with_lines(tmp_path: Path) -> None:
    text = """\
services:
  - name: web
    checks:
      - type: tcp
        target: 127.0.0.1
      - type: tcp
        target: 127.0.0.1:80
        timeout: 10s
        interval: 2s
      - type: tcp
        target: 127.0.0.1:81
        rise: 0
      - type: carrier-pigeon
        target: 127.0.0.1:82
      - name: b
        type: tcp
        target: 127.0.0.1:83
        colour: blue
"""
    assert errors_of(tmp_path, text) == [
        "5: services[0].checks[0].target: '127.0.0.1' is not HOST:PORT",
        "6: services[0].checks[1].name: duplicate check name 'tcp' in service 'web' (name defaults to the type)",
        "6: services[0].checks[1]: timeout 10s exceeds interval 2s",
        "10: services[0].checks[2].name: duplicate check name 'tcp' in service 'web' (name defaults to the type)",
        "12: services[0].checks[2].rise: must be at least 1, not 0",
        "13: services[0].checks[3].type: unknown check type 'carrier-pigeon' (expected one of "
        + ", ".join(__import__("healthd.config", fromlist=["CHECK_MODELS"]).CHECK_MODELS)
        + ")",
        "18: services[0].checks[4].colour: unknown option",
    ]


BAD_CONFIGS = [
    ("top: 1\n", "1: services: required option missing"),
    ("services: []\n", "1: services: needs at least one service"),
    (
        "services:\n  - name: bad name\n    checks: [{type: tcp, target: 'a:1'}]\n",
        "2: services[0].name: must match [A-Za-z0-9_.-]+, not 'bad name'",
    ),
    (
        "services:\n  - name: a\n    checks: []\n",
        "3: services[0].checks: needs at least one check",
    ),
    (
        "services:\n  - name: a\n    checks:\n      - target: 'a:1'\n",
        "4: services[0].checks[0].type: 'type' is required (one of ",
    ),
    (
        "defaults:\n  target: a:1\nservices:\n  - name: a\n    checks: [{type: tcp, target: 'a:1'}]\n",
        "2: defaults.target: cannot be set in defaults",
    ),
    (
        "defaults:\n  colour: red\nservices:\n  - name: a\n    checks: [{type: tcp, target: 'a:1'}]\n",
        "2: defaults.colour: unknown option",
    ),
    (
        "services:\n  - name: a\n    labels: {service: x}\n    checks: [{type: tcp, target: 'a:1'}]\n",
        "3: services[0].labels: Value error, label name 'service' is reserved",
    ),
    (
        "services:\n  - name: a\n    checks: [{type: tcp, target: 'a:1', ip_family: ipv5}]\n",
        "3: services[0].checks[0].ip_family: must be 'auto', 'ipv4' or 'ipv6'",
    ),
    (
        "services:\n  - name: a\n    checks: [{type: tcp, target: '1.2.3.4:1', source_ip: '::1', ip_family: ipv4}]\n",
        "3: services[0].checks[0]: source_ip ::1 is not ipv4",
    ),
    (
        "services:\n  - name: a\n    checks: [{type: tcp, target: '::1:80'}]\n",
        "3: services[0].checks[0].target: '::1:80': write an IPv6 address in brackets, [addr]:port",
    ),
    (
        "server:\n  listen: nope\nservices:\n  - name: a\n    checks: [{type: tcp, target: 'a:1'}]\n",
        "2: server.listen: Value error, 'nope' is not HOST:PORT",
    ),
    (
        "services:\n  - name: a\n    checks: [{type: tcp, target: 'a:1', interval: soon}]\n",
        "3: services[0].checks[0].interval: Value error, invalid duration 'soon'",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_bad_config_table(tmp_path: Path, text: str, expected: str) -> None:
    errors = errors_of(tmp_path, text)
    assert any(line.startswith(expected.replace("Value error, ", "")) for line in errors), errors


def test_duplicate_service_names(tmp_path: Path) -> None:
    text = "services:\n  - name: a\n    checks: [{type: tcp, target: 'a:1'}]\n  - name: a\n    checks: [{type: tcp, target: 'a:1'}]\n"
    assert errors_of(tmp_path, text) == ["4: services[1].name: duplicate service name 'a'"]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda p: p.write_text(""), ":1: the config is empty"),
        (lambda p: p.write_text("# only a comment\n"), ":1: the config is empty"),
        (lambda p: p.write_text("services: [\n  - a\n"), ": YAML syntax error:"),
        (lambda p: p.write_text("- just\n- a list\n"), ":1: the config must be a mapping"),
        (lambda p: None, ": no such file or directory"),
        (lambda p: p.mkdir(), ": no *.yaml files in the directory"),  # a directory is a config source
    ],
)
def test_unusable_files_get_one_clear_line(tmp_path: Path, setup: object, expected: str) -> None:
    path = tmp_path / "config.yaml"
    setup(path)  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.errors) == 1
    assert info.value.errors[0].startswith(str(path)) and expected in info.value.errors[0]


def test_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "services:\n  - name: a\n    checks: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors[0].startswith(f"{path}:4: YAML syntax error")


def test_example_config_is_valid() -> None:
    config = load_config(Path(__file__).parent.parent / "config.example.yaml")
    assert isinstance(config, Config) and config.check_count >= 2


def test_diff_names_added_removed_changed(tmp_path: Path) -> None:
    old = load_config(write(tmp_path, GOOD, "old.yaml"))
    new_text = GOOD.replace("target: db.example:5432", "target: db.example:5433").replace(
        "      - name: via-wan2",
        "      - name: new\n        type: tcp\n        target: 127.0.0.1:1\n      - name: via-wan3",
    )
    diff = diff_configs(old, load_config(write(tmp_path, new_text, "new.yaml")))
    assert [format_check_id(key) for key in diff.added] == ["web/new", "web/via-wan3"]
    assert [format_check_id(key) for key in diff.removed] == ["web/via-wan2"]
    assert [format_check_id(key) for key in diff.changed] == ["db/tcp"]
    assert list(diff_configs(old, old).changed) == []
