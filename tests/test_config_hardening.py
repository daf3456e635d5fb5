"""Hostile configs (issue 11 items 1-3, 9, 10): each ends as `FILE:LINE: reason` lines, never a crash.

One table of reproductions, run through the loader in-process and through
`healthd check-config` as a process (exit 2, no traceback, bounded memory).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from healthd.config import load_config
from healthd.errors import ConfigError

TCP = "services:\n  - name: a\n    checks:\n      - type: tcp\n        target: 127.0.0.1:1\n"
HTTP = "services:\n  - name: a\n    checks:\n      - type: http\n        url: http://127.0.0.1:1/\n"


def with_option(base: str, option: str) -> str:
    """`base` (TCP or HTTP) with one more option on the check, which is on line 6."""
    return base + f"        {option}\n"


def bomb(levels: int, width: int = 9) -> str:
    """The 'billion laughs' shape: each level an anchored list of `width` aliases to the one before."""
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


NESTED_REGEX = "(" * 2000 + "a" + ")" * 2000

# (id, config text, line of the first error or None, fragment of the error)
CASES: list[tuple[str, str, int | None, str]] = [
    ("alias bomb, 7 levels of 10", bomb(7, width=10), 6, "expands to more than 1,000,000 values"),
    ("alias bomb, 8 levels of 9", bomb(8), 7, "expands to more than 1,000,000 values"),
    ("recursive alias", "x: &x [*x]\n", 1, "alias *x refers to itself"),
    ("recursive alias in a mapping", "a: &m {b: *m}\n", 1, "alias *m refers to itself"),
    ("nesting 600 lists", "x: " + "[" * 600 + "]" * 600 + "\n", 1, "nested more than 64 levels deep"),
    ("nesting 600 mappings", "x: " + "{a: " * 600 + "1" + "}" * 600 + "\n", 1, "nested more than 64"),
    ("!!bool shop", with_option(TCP, "fall: !!bool shop"), 6, "cannot read 'shop' as !!bool"),
    ("!!timestamp foo", with_option(TCP, "interval: !!timestamp foo"), 6, "as !!timestamp"),
    ("impossible date", with_option(TCP, "interval: 2001-13-45"), 6, "as !!timestamp: month must be"),
    ("!!int 1.2.3.4", with_option(TCP, "rise: !!int 1.2.3.4"), 6, "cannot read '1.2.3.4' as !!int"),
    ("5,000-digit integer", with_option(TCP, "rise: " + "7" * 5000), 6, "as !!int"),
    ("!!binary garbage", with_option(TCP, "name: !!binary 'a'"), 6, "failed to decode base64"),
    (
        "python tag",
        with_option(TCP, "name: !!python/object:os.system x"),
        6,
        "could not determine a constructor",
    ),
    ("unhashable key", "? [a, b]\n: 1\n", 1, "found unhashable key"),
    ("control character", TCP.replace("name: a", "name: a\x07"), 2, "control character U+0007"),
    (
        "U+2028 is not a new line",
        'x: "a\u2028\u2028b"\n' + TCP + "        colour: red\n",
        1,
        ":7: services[0].checks[0].colour: unknown",
    ),
    ("NUL byte", TCP + "# \x00\n", 6, "control character U+0000"),
    (
        "duplicate key",
        TCP.replace("    checks:", "    name: b\n    checks:"),
        3,
        "key 'name' is given twice, first on line 2",
    ),
    ("interval .inf", with_option(TCP, "interval: .inf"), 6, "is not a finite number"),
    ("interval nan", with_option(TCP, "interval: .nan"), 6, "is not a finite number"),
    ("interval 400 zeros", with_option(TCP, "interval: " + "0" * 400), 6, "must be from 1ms to 7d, not 0"),
    (
        "interval 400 digits",
        with_option(TCP, "interval: 1" + "0" * 399),
        6,
        "a duration of 400 digits is out of range",
    ),
    ("interval negative", with_option(TCP, "interval: -5s"), 6, "invalid duration '-5s'"),
    ("interval -1", with_option(TCP, "interval: -1"), 6, "must be from 1ms to 7d, not -1"),
    ("interval 8d", with_option(TCP, "interval: 8d"), 6, "must be from 1ms to 7d, not 8d"),
    ("timeout 0", with_option(TCP, "timeout: 0s"), 6, "must be from 1ms to 7d, not 0"),
    ("timeout 1e400", with_option(TCP, "timeout: 1.0e+400"), 6, "is not a finite number"),
    (
        "body_regex 2,000 nested groups",
        with_option(HTTP, f"body_regex: '{NESTED_REGEX}'"),
        6,
        "nested too deeply",
    ),
    (
        "regex warning",
        with_option(HTTP, "body_regex: 'a[[b]'"),
        6,
        "ambiguous regex 'a[[b]': Possible nested set",
    ),
    (
        "regex huge repeat",
        with_option(HTTP, "body_regex: 'a{99999999999999999999}'"),
        6,
        "repeat count is too large",
    ),
    (
        "json_path deeply nested",
        with_option(HTTP, "json_path: ['$.a == " + "[" * 3000 + "]" * 3000 + "']"),
        6,
        "characters, more than 1000",
    ),
    (
        "cert_file /dev/zero",
        with_option(HTTP, "cert_file: /dev/zero"),
        6,
        "is a character device, not a regular file",
    ),
    ("ca_file /dev/zero", with_option(HTTP, "ca_file: /dev/zero"), 6, "is a character device"),
    (
        "unknown key with a hint",
        with_option(TCP, "intervall: 5s"),
        6,
        "unknown option (did you mean 'interval'?)",
    ),
    (
        "server.token_file missing",
        "server: {token_file: /nonexistent/token}\n" + TCP,
        1,
        "cannot read /nonexistent/token",
    ),
    ("server.token_file empty", "server: {token_file: /dev/null}\n" + TCP, 1, "is a character device"),
]


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.errors


def assert_reported(path: Path, errors: list[str], line: int | None, fragment: str) -> None:
    assert errors and all(error.startswith(f"{path}:") for error in errors), errors
    assert all("\n" not in error for error in errors), errors
    if line is not None:
        assert errors[0].startswith(f"{path}:{line}: "), errors
    assert any(fragment in error for error in errors), errors


@pytest.mark.parametrize(
    ("text", "line", "fragment"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_config_in_process(tmp_path: Path, text: str, line: int | None, fragment: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert_reported(path, errors_of(path), line, fragment)


# one of each family as a process (a process costs ~0.8 s; the in-process test runs them all)
PROCESS_CASES = [
    "alias bomb, 7 levels of 10",
    "recursive alias",
    "nesting 600 lists",
    "!!bool shop",
    "5,000-digit integer",
    "control character",
    "duplicate key",
    "interval .inf",
    "interval 400 digits",
    "body_regex 2,000 nested groups",
    "regex huge repeat",
    "cert_file /dev/zero",
    "server.token_file missing",
]


def test_cases_through_check_config(tmp_path: Path) -> None:
    """Exit 2, the same lines on stderr, no traceback, within 1 GiB of address space."""
    cases = [case for case in CASES if case[0] in PROCESS_CASES]
    assert len(cases) == len(PROCESS_CASES)
    paths = []
    for index, (_, text, _, _) in enumerate(cases):
        paths.append(tmp_path / f"case{index}.yaml")
        paths[-1].write_text(text)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(check_config, paths))
    for (name, _, line, fragment), path, result in zip(cases, paths, results, strict=True):
        assert result.returncode == 2, (name, result)
        assert "Traceback" not in result.stderr, (name, result.stderr)
        assert_reported(path, result.stderr.splitlines(), line, fragment)


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healthd", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit_memory,
    )


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_symlink_loop(path: Path) -> None:
    os.symlink(path.name, path)


def make_huge(path: Path) -> None:
    with path.open("wb") as handle:
        handle.truncate(9 * 1024 * 1024)


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (make_fifo, "is a FIFO, not a regular file"),
        (make_symlink_loop, "too many levels of symbolic links"),
        (make_huge, "more than the limit of 8 MiB"),
        (lambda p: p.write_bytes(b"\xff\xfeservices"), "not UTF-8 text"),
        (lambda p: p.write_text("services: [\n", encoding="utf-16"), "not UTF-8 text"),
    ],
    ids=["fifo", "symlink loop", "9 MiB", "bad utf-8", "utf-16"],
)
def test_unusable_config_files(tmp_path: Path, setup: Callable[[Path], None], fragment: str) -> None:
    path = tmp_path / "config.yaml"
    setup(path)
    errors = errors_of(path)
    assert errors == [errors[0]] and errors[0].startswith(f"{path}: ") and fragment in errors[0], errors
    result = check_config(path)
    assert (result.returncode, result.stderr.strip()) == (2, errors[0])


def test_eio_is_a_config_error() -> None:
    # /proc/self/mem stats as a regular file and reading offset 0 fails with EIO
    errors = errors_of(Path("/proc/self/mem"))
    assert errors == ["/proc/self/mem: input/output error"]


def test_out_of_descriptors_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(TCP)
    script = (
        "import resource, sys\n"
        "from healthd.config import load_config\n"
        "from healthd.errors import ConfigError\n"
        "held = []\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
        "try:\n"
        "    while True: held.append(open('/dev/null'))\n"
        "except OSError: pass\n"
        "try:\n"
        f"    load_config({str(path)!r})\n"
        "except ConfigError as exc:\n"
        "    print(exc.errors)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == repr([f"{path}: too many open files"]), result


@pytest.mark.parametrize("option", ["cert_file", "ca_file", "key_file", "bearer_token_file"])
def test_fifo_file_options_are_refused_without_blocking(tmp_path: Path, option: str) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    path = tmp_path / "config.yaml"
    path.write_text(with_option(HTTP, f"{option}: {fifo}"))
    errors = errors_of(path)
    assert any(f"6: services[0].checks[0].{option}: cannot read {fifo}: is a FIFO" in e for e in errors), (
        errors
    )


def test_oversized_pem_and_secret_files(tmp_path: Path) -> None:
    big, token = tmp_path / "big.pem", tmp_path / "token"
    make_huge(big)
    token.write_text("x" * (65 * 1024))
    path = tmp_path / "config.yaml"
    path.write_text(with_option(HTTP, f"ca_file: {big}") + f"        bearer_token_file: {token}\n")
    errors = errors_of(path)
    assert any(f"6: services[0].checks[0].ca_file: cannot read {big}: " in e and "4 MiB" in e for e in errors)
    assert any(f"7: services[0].checks[0].bearer_token_file: cannot read {token}: " in e for e in errors)


def test_empty_token_file_fails_check_config_with_its_line(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"server:\n  token_file: {token}\n" + TCP)
    result = check_config(path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"{path}:2: server.token_file: cannot read {token}: is empty"


def test_many_problems_are_capped(tmp_path: Path) -> None:
    checks = "".join(f"      - {{type: tcp, name: c{i}, target: 127.0.0.1:1, rise: 0}}\n" for i in range(300))
    path = tmp_path / "config.yaml"
    path.write_text("services:\n  - name: a\n    checks:\n" + checks)
    errors = errors_of(path)
    assert len(errors) == 101 and errors[-1] == f"{path}: ... and 200 more problems"


def test_error_in_defaults_is_reported_once_at_defaults(tmp_path: Path) -> None:
    checks = "".join(f"      - {{type: tcp, name: c{i}, target: 127.0.0.1:1}}\n" for i in range(5))
    path = tmp_path / "config.yaml"
    path.write_text("defaults:\n  rise: 0\n  interval: soon\nservices:\n  - name: a\n    checks:\n" + checks)
    assert [e.removeprefix(f"{path}:") for e in errors_of(path)] == [
        "2: defaults.rise: must be at least 1, not 0",
        "3: defaults.interval: invalid duration 'soon': use e.g. 250ms, 10s, 1m30s, 2h, 14d or a number of seconds",
    ]


def test_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "x-common: &common {type: tcp, interval: 1m30s, timeout: 2s}\n"
        "services:\n  - name: a\n    checks:\n"
        "      - {<<: *common, name: one, target: 127.0.0.1:1}\n"
        "      - {<<: *common, name: two, target: 127.0.0.1:2, timeout: 1s}\n"
    )
    errors = errors_of(path)  # an unknown top-level key, at its own line, with the rest valid
    assert errors == [f"{path}:1: x-common: unknown option"]
    path.write_text(
        path.read_text().replace("x-common: &common", "defaults: &common {}\nx: &common").split("x: ")[0]
        + "services:\n  - name: a\n    checks:\n      - &one {type: tcp, name: one, target: 127.0.0.1:1}\n"
        "      - {<<: *one, name: two, timeout: 1s}\n"
    )
    config = load_config(path)
    one, two = config.services[0].checks
    assert (one.name, two.name, two.target, two.timeout) == ("one", "two", "127.0.0.1:1", 1.0)


@pytest.mark.parametrize(
    ("key", "hint"), [("chcks", "checks"), ("servics", "services"), ("lables", "labels")]
)
def test_did_you_mean(tmp_path: Path, key: str, hint: str) -> None:
    path = tmp_path / "config.yaml"
    text = (
        TCP.replace("    checks:", f"    {key}: []\n    checks:")
        if key != "servics"
        else "servics: []\n" + TCP
    )
    path.write_text(text)
    assert any(f"unknown option (did you mean {hint!r}?)" in e for e in errors_of(path))
