"""The docs cannot rot: every command and config block in README.md and docs/ is tagged `example`
(```yaml example, ```sh example, ...) and each one is executed or validated here.

- yaml: a healthd config (fragments are wrapped into a service) must load; a Prometheus block must
  match deploy/prometheus/prometheus.yml.
- sh and console: shell syntax (`bash -n`); every `healthd` command line parses with the real parser;
  repository files named exist; `make` targets exist; some blocks are run for real (below).
- ini: each setting is in deploy/healthd.service; json: parses, with only documented log fields.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from healthd.cli import build_parser
from healthd.config import load_config
from healthd.errors import ConfigError
from healthd.logs import FIELDS

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CHECKED = {"yaml", "sh", "console", "ini", "json", "python"}
HEALTHD = re.compile(r"^(?:\S*/)?healthd$")  # healthd, /opt/healthd/bin/healthd, .venv/bin/healthd


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    tags: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            opened = re.match(r"^\s*```(\S*)(.*)$", lines[i])
            if opened:
                end = next(j for j in range(i + 1, len(lines)) if re.match(r"^\s*```\s*$", lines[j]))
                text = textwrap.dedent("\n".join(lines[i + 1 : end]))
                found.append(Block(page, i + 1, opened.group(1), tuple(opened.group(2).split()), text))
                i = end
            i += 1
    return found


EXAMPLES = [b for b in blocks() if "example" in b.tags]


def examples(*langs: str) -> list[Any]:
    return [pytest.param(b, id=b.where) for b in EXAMPLES if b.lang in langs]


def test_every_block_has_a_language_and_every_command_or_config_is_an_example() -> None:
    for block in blocks():
        assert block.lang, f"{block.where}: a fenced block without a language"
        if block.lang in CHECKED:
            assert "example" in block.tags, (
                f"{block.where}: tag it ```{block.lang} example, so a test checks it"
            )
        if block.lang == "text":
            assert not re.search(r"^\$ ", block.text, re.M), (
                f"{block.where}: commands go in ```console example"
            )
    assert len(EXAMPLES) >= 20


# ---- yaml ------------------------------------------------------------------------------


def as_healthd_config(data: dict[str, Any]) -> dict[str, Any]:
    """A fragment made whole: a check list goes into a service; sections alone get a service."""
    if "checks" in data:
        return {"services": [{"name": "example", **data}]}
    if "services" not in data:
        return {
            **data,
            "services": [{"name": "example", "checks": [{"type": "tcp", "target": "127.0.0.1:1"}]}],
        }
    return data


@pytest.mark.parametrize("block", examples("yaml"))
def test_yaml_examples_are_valid(block: Block, tmp_path: Path) -> None:
    data = yaml.safe_load(block.text)
    assert isinstance(data, dict), block.where
    if "alertmanager" in block.tags:  # an Alertmanager config fragment: amtool judges it
        amtool = shutil.which("amtool")
        if amtool is None:
            pytest.skip("needs amtool (Debian prometheus-alertmanager, installed by `make test` as root)")
        receivers = {data["route"]["receiver"], *(r["receiver"] for r in data["route"].get("routes", []))}
        path = tmp_path / "alertmanager.yml"
        path.write_text(yaml.safe_dump({**data, "receivers": [{"name": name} for name in sorted(receivers)]}))
        done = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{block.where}: {done.stdout}{done.stderr}"
        return
    if "scrape_configs" in data:
        real = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
        assert data["rule_files"] == real["rule_files"], block.where
        for job in data["scrape_configs"]:
            (same,) = [j for j in real["scrape_configs"] if j["job_name"] == job["job_name"]]
            assert {k: v for k, v in same.items() if k in job} == job, block.where
        return
    path = tmp_path / "config.yaml"
    config = as_healthd_config(data)
    if config.get("server", {}).get("token_file"):  # the loader reads it: give it one to read
        (tmp_path / "token").write_text("documented\n")
        config["server"]["token_file"] = str(tmp_path / "token")
    path.write_text(yaml.safe_dump(config))
    write_discovery_files(block, data, tmp_path)
    try:
        load_config(path)
    except ConfigError as exc:
        pytest.fail(f"{block.where}: the config does not load:\n" + "\n".join(exc.errors))


def write_discovery_files(block: Block, data: dict[str, Any], directory: Path) -> None:
    """A `targets_from` file is the last file_sd list (a ```json example) shown before the block."""
    for service in data.get("services", []):
        if "targets_from" in service:
            (*_, listing) = [
                b for b in EXAMPLES if b.page == block.page and b.lang == "json" and b.line < block.line
            ]
            target = directory / service["targets_from"]["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(listing.text)


# ---- sh and console ----------------------------------------------------------------------


def commands(block: Block) -> list[str]:
    """Shell command lines of a block: console lines after `$ `, sh lines joined at backslashes."""
    if block.lang == "console":
        return [line[2:] for line in block.text.splitlines() if line.startswith("$ ")]
    return [
        line
        for line in block.text.replace("\\\n", " ").splitlines()
        if line.strip() and not line.startswith("#")
    ]


def words(line: str) -> list[list[str]]:
    """The simple commands of a line, split at `&&`, `|`, `;` and without redirections."""
    out, current = [], []
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token in ("&&", "||", "|", ";"):
            out.append(current)
            current = []
        elif token in (">", ">>", "<", "2>"):
            skip = True
        elif not (token == "2" and tokens[tokens.index(token) + 1 : tokens.index(token) + 2] == [">"]):
            current.append(token)
    return [*out, current]


@pytest.mark.parametrize("block", examples("sh", "console"))
def test_shell_examples_parse_and_name_what_exists(block: Block) -> None:
    if block.lang == "sh":
        syntax = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True, timeout=10)
        assert syntax.returncode == 0, f"{block.where}: {syntax.stderr}"
    parser = build_parser()
    for line in commands(block):
        for argv in words(line):
            argv = [w for w in argv if "=" not in w or w.startswith("-")] if argv and "=" in argv[0] else argv
            if not argv:
                continue
            if HEALTHD.match(argv[0]):
                try:
                    parser.parse_args(argv[1:])
                except SystemExit as exc:
                    pytest.fail(f"{block.where}: `{' '.join(argv)}` does not parse (exit {exc.code})")
            if argv[0] == "make":
                makefile = (REPO / "Makefile").read_text()
                for target in argv[1:]:
                    assert re.search(rf"^{re.escape(target)}:", makefile, re.M), (
                        f"{block.where}: no make {target}"
                    )
            for word in argv[1:]:
                if re.match(r"^(deploy|bench|tests|docs)/|^config\.example\.yaml$|^Dockerfile$", word):
                    assert (REPO / word).exists(), f"{block.where}: {word} does not exist"


@pytest.mark.parametrize(
    "block",
    [
        b
        for b in examples("console")
        if any(
            c.startswith("healthd probe tcp 127.0.0.1:9") and c.endswith(":9") for c in commands(b.values[0])
        )
    ],
)
def test_console_probe_of_the_closed_port_gives_the_documented_line(block: Any) -> None:
    """`$ healthd probe tcp 127.0.0.1:9` is run for real; its line matches the doc's but for the figures."""
    text = block.text
    expected = next(line for line in text.splitlines() if line.startswith("tcp 127.0.0.1:9: "))
    done = subprocess.run(
        [sys.executable, "-m", "healthd", "probe", "tcp", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1, done.stderr
    shape = re.escape(re.sub(r"\d+\.\d+", "N", expected)).replace("N", r"\d+\.\d+")
    assert re.fullmatch(shape, done.stdout.strip()), (expected, done.stdout)


def test_the_container_permission_commands_let_uid_10001_read_the_config(
    request: pytest.FixtureRequest,
) -> None:
    """docs/install.md's `install -g 10001` block, run for real under a scratch root."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as the image's uid 10001 (CI runs as root)")
    (block,) = [b for b in EXAMPLES if b.page.name == "install.md" and "-g 10001" in b.text]
    root = Path(tempfile.mkdtemp(prefix="healthd-docs-"))  # pytest's tmp_path is private to root
    request.addfinalizer(lambda: shutil.rmtree(root))
    root.chmod(0o755)
    script = block.text.replace("/etc/healthd", f"{root}/etc/healthd")
    (root / "etc").mkdir(parents=True)
    done = subprocess.run(["sh", "-ec", script], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    config = root / "etc/healthd/config.yaml"
    as_image = [
        "setpriv",
        "--reuid=10001",
        "--regid=10001",
        "--clear-groups",
        sys.executable,
        "-m",
        "healthd",
    ]
    read = subprocess.run(
        [*as_image, "check-config", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    if "Permission denied" in read.stderr and "python" in read.stderr:
        pytest.skip(f"this interpreter ({sys.executable}) is not readable by uid 10001")
    assert read.returncode == 0 and read.stdout.startswith("OK:"), read.stdout + read.stderr
    config.chmod(0o600)  # and the check is sharp: without the group's read bit it fails
    denied = subprocess.run(
        [*as_image, "check-config", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert denied.returncode == 2 and "permission denied" in denied.stderr


# ---- ini and json ------------------------------------------------------------------------


@pytest.mark.parametrize("block", examples("ini"))
def test_ini_examples_are_in_the_unit(block: Block) -> None:
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]
    parsed.read_string(block.text)
    unit = (REPO / "deploy/healthd.service").read_text()
    for section in parsed.sections():
        for key, value in parsed[section].items():
            assert re.search(rf"^{re.escape(key)}={re.escape(value)}$", unit, re.M), (
                f"{block.where}: {key}={value}"
            )


@pytest.mark.parametrize("block", examples("json"))
def test_json_examples_parse_with_documented_fields(block: Block) -> None:
    try:
        entries = [json.loads(block.text)]
    except json.JSONDecodeError:  # one object per line (log lines)
        entries = [json.loads(line) for line in block.text.splitlines()]
    for entry in entries:
        if "logger" in entry:
            assert set(entry) <= {"time", "level", "logger", "message", "exception", *FIELDS}, block.where


@pytest.mark.parametrize("block", examples("python"))
def test_python_examples_run(block: Block) -> None:
    """Python snippets are executed; the webhook signature check must accept a real signature."""
    namespace: dict[str, Any] = {}
    exec(compile(block.text, block.where, "exec"), namespace)
    if "genuine" in namespace:
        import hashlib
        import hmac

        body = b'{"id": 1}'
        signature = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
        assert namespace["genuine"](b"k", body, signature) and not namespace["genuine"](b"x", body, signature)
