"""The config fuzzer: every generated or mutated file is a valid config or `ConfigError` lines.

In-process through `load_config`, and as a process through `healthd check-config`
(exit 0 or 2, no traceback). Each case is bounded in time, and in memory (peak
RSS in-process; address space as a process). Three runs of one generator
(`tests/fuzz/configs.py`): hypothesis draws (a failure shrinks to a small case),
seeded cases (cheap, for volume), and seeded cases through the CLI.

Sizes: HEALTHD_FUZZ_CASES (seeded, default 2,500), HEALTHD_FUZZ_HYPOTHESIS_CASES
(default 300), HEALTHD_FUZZ_PROCESS_CASES (default 8). The default run sees the
same cases every time; `make fuzz` runs 100,000 seeded cases from a random start
(HEALTHD_FUZZ_RANDOM=1), printed so a failure can be replayed with
HEALTHD_FUZZ_START.
"""

from __future__ import annotations

import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from healthd.config import load_config
from healthd.errors import ConfigError
from hypothesis import HealthCheck, given, settings

from tests.fuzz.configs import config_files, random_config_file

pytestmark = pytest.mark.fuzz

RANDOM = os.environ.get("HEALTHD_FUZZ_RANDOM") == "1"
CASES = int(os.environ.get("HEALTHD_FUZZ_CASES", "2500"))
HYPOTHESIS_CASES = int(os.environ.get("HEALTHD_FUZZ_HYPOTHESIS_CASES", "300"))
PROCESS_CASES = int(os.environ.get("HEALTHD_FUZZ_PROCESS_CASES", "8"))
START = int(os.environ.get("HEALTHD_FUZZ_START", random.randrange(10**9) if RANDOM else 0))
# a hang guard, not a performance claim: a case normally takes milliseconds
SECONDS_PER_CASE = 10.0
RSS_GROWTH_MIB = 300
PROCESS_MEMORY = 1 << 30

_LINE = re.compile(r"^(\d+): \S")


def assert_config_error_lines(path: str, errors: list[str], line_count: int) -> None:
    assert errors, "a ConfigError without lines"
    for error in errors:
        assert error.startswith(f"{path}:"), error
        assert "\n" not in error and "\r" not in error and len(error) <= 400 + len(path), error
        rest = error[len(path) + 1 :]
        numbered = _LINE.match(rest)
        if numbered:
            assert 1 <= int(numbered.group(1)) <= line_count + 1, error
        else:
            assert rest.startswith(" "), error


def load_one(path: Path, raw: bytes) -> bool:
    """One case in-process: valid (True), or ConfigError lines (False); nothing else, in bounded time."""
    path.write_bytes(raw)
    started = time.monotonic()
    try:
        load_config(path)
        valid = True
    except ConfigError as exc:
        assert_config_error_lines(str(path), exc.errors, raw.count(b"\n") + 1)
        valid = False
    assert time.monotonic() - started < SECONDS_PER_CASE, raw[:200]
    return valid


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_loader_with_hypothesis_cases(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    before = peak_rss_mib()

    @settings(
        max_examples=HYPOTHESIS_CASES,
        deadline=None,  # SECONDS_PER_CASE is the bound, generous on a loaded machine
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(config_files())
    def case(raw: bytes) -> None:
        load_one(path, raw)

    case()
    assert peak_rss_mib() - before < RSS_GROWTH_MIB


def test_loader_with_seeded_cases(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    before, started, valid = peak_rss_mib(), time.monotonic(), 0
    for seed in range(START, START + CASES):
        raw = random_config_file(seed)
        try:
            valid += load_one(path, raw)
        except AssertionError as exc:
            raise AssertionError(
                f"seed {seed} (HEALTHD_FUZZ_START={seed} HEALTHD_FUZZ_CASES=1): {raw!r}"
            ) from exc
    grown = peak_rss_mib() - before
    print(
        f"\nconfig fuzz: {CASES} seeded cases from {START}, {valid} valid, {CASES - valid} ConfigError, "
        f"0 failures, {time.monotonic() - started:.1f} s, peak RSS +{grown:.0f} MiB"
    )
    assert grown < RSS_GROWTH_MIB


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (PROCESS_MEMORY, PROCESS_MEMORY))


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healthd", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        preexec_fn=limit_memory,
    )


def test_check_config_as_a_process() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="healthd-fuzz-"))
    seeds = range(START, START + PROCESS_CASES)
    paths = [workdir / f"seed{seed}.yaml" for seed in seeds]
    files = [random_config_file(seed) for seed in seeds]
    for path, raw in zip(paths, files, strict=True):
        path.write_bytes(raw)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(check_config, paths))
    for path, raw, result in zip(paths, files, results, strict=True):
        assert "Traceback" not in result.stderr, (path.name, result.stderr)
        assert result.returncode in (0, 2), (path.name, raw, result)
        if result.returncode == 0:
            assert result.stdout.startswith("OK: "), result.stdout
        else:
            assert_config_error_lines(str(path), result.stderr.splitlines(), raw.count(b"\n") + 1)
