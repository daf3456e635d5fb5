"""Config sources: a directory of files merged in name order, and `${VAR}` expansion."""

from __future__ import annotations

from pathlib import Path

import pytest
from healthd.config import load
from healthd.errors import ConfigError

WEB = """\
services:
  - name: web
    checks:
      - type: tcp
        target: 127.0.0.1:80
"""


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def errors_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path, environ or {})
    return [error.replace(f"{path}/", "") for error in info.value.errors]


def test_a_directory_merges_its_yaml_files_in_name_order(tmp_path: Path) -> None:
    config_dir = write(
        tmp_path / "conf.d",
        {
            "20-db.yml": "services:\n  - name: db\n    checks:\n      - {type: tcp, target: '127.0.0.1:5432'}\n",
            "10-web.yaml": WEB,
            "00-server.yaml": "server:\n  listen: 127.0.0.1:0\ndefaults:\n  interval: 5s\n",
            "notes.txt": "not: yaml: at all:",
            ".hidden.yaml": "broken: [",
        },
    )
    loaded = load(config_dir, {})
    assert [s.name for s in loaded.config.services] == ["web", "db"]
    assert loaded.config.server.listen == "127.0.0.1:0"
    assert all(
        c.interval == 5.0 for s in loaded.config.services for c in s.checks
    )  # defaults from another file
    assert loaded.watched == (config_dir,)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"a.yaml": WEB, "b.yaml": "# web again\n" + WEB},
            ["b.yaml:3: services[0].name: duplicate service name 'web', first defined at a.yaml:2"],
        ),
        (
            {
                "a.yaml": "server: {listen: '127.0.0.1:0'}\n" + WEB,
                "b.yaml": "\nserver:\n  listen: 127.0.0.1:1\n",
            },
            ["b.yaml:2: server: already set at a.yaml:1"],
        ),
        (
            # a mistake in the second file is reported at its own line, with its own service index
            {
                "a.yaml": WEB,
                "b.yaml": "services:\n  - name: db\n    checks:\n      - {type: tcp, target: nowhere}\n",
            },
            ["b.yaml:4: services[0].checks[0].target: 'nowhere' is not HOST:PORT"],
        ),
        (
            {"a.yaml": WEB, "b.yaml": "defaults:\n  bogus: 1\n"},
            ["b.yaml:2: defaults.bogus: unknown option"],
        ),
        (
            {"a.yaml": WEB, "b.yaml": "services: [\n"},
            ["b.yaml:2: YAML syntax error: expected the node content, but found '<stream end>'"],
        ),
        (
            {"a.yaml": WEB, "b.yaml": "services: {web: 1}\n"},
            ["b.yaml:1: services: must be a list of services"],
        ),
        ({"a.txt": "x"}, ["{d}: no *.yaml files in the directory"]),
    ],
)
def test_directory_errors_name_the_file_and_line(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    config_dir = write(tmp_path / "conf.d", files)
    assert errors_of(config_dir) == [line.replace("{d}", str(config_dir)) for line in expected]


def test_environment_variables_are_expanded(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("""\
server: {listen: "127.0.0.1:${API_PORT}"}
services:
  - name: web
    checks:
      - type: http
        url: https://${HOST}/healthz?price=$${literal}
        headers: {X-Api-Key: "${API_KEY}"}
        timeout: ${TIMEOUT}
""")
    env = {"API_PORT": "0", "HOST": "127.0.0.1", "API_KEY": "s3cret", "TIMEOUT": "750ms"}
    check = load(path, env).config.services[0].checks[0]
    assert check.url == "https://127.0.0.1/healthz?price=${literal}"  # type: ignore[union-attr]
    assert check.headers["X-Api-Key"].get_secret_value() == "s3cret"  # type: ignore[union-attr]
    assert check.timeout == 0.75


def test_an_unset_or_malformed_variable_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("""\
services:
  - name: web
    checks:
      - type: tcp
        target: "${HOST}:80"
      - type: tcp
        name: b
        target: "127.0.0.1:${1PORT}"
""")
    assert errors_of(path) == [
        f"{path}:5: services[0].checks[0].target: environment variable HOST is not set (write $${{ for a literal ${{)",
        f"{path}:8: services[0].checks[1].target: ${{1PORT}} is not a valid environment variable reference",
    ]
