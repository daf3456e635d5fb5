"""The installed import package is `healthd`: it installs and runs beside python-daemon,
whose import name, `daemon`, was healthd's own until the rename."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import healthd
import pytest

ROOT = Path(__file__).resolve().parents[1]
# what pip prints when it cannot reach the package registry
_OFFLINE = ("Could not find a version", "No matching distribution", "NewConnectionError", "ConnectTimeout")


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_healthd_installs_and_runs_beside_python_daemon(tmp_path: Path) -> None:
    # a copy of the sources: building in the checkout would leave build/ and egg-info there
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "daemon", source / "daemon", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    python = venv / "bin" / "python"
    # non-editable, from the registry: as a user would install the two side by side
    install = run(python, "-m", "pip", "install", "-q", "python-daemon", source, timeout=600)
    if install.returncode != 0 and any(sign in install.stderr for sign in _OFFLINE):
        pytest.skip(f"the package registry is unreachable: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stderr

    both = run(
        python,
        "-c",
        "import daemon, daemon.pidfile, healthd; print(daemon.__file__); print(healthd.__file__)",
    )
    assert both.returncode == 0, both.stderr
    daemon_file, healthd_file = both.stdout.split()
    assert Path(daemon_file).parent.name == "daemon" and Path(healthd_file).parent.name == "healthd"
    assert str(venv) in daemon_file and str(venv) in healthd_file  # the installed copies, not the checkout

    for command in ((venv / "bin" / "healthd", "--version"), (python, "-m", "healthd", "--version")):
        version = run(*command)
        assert version.returncode == 0, version.stderr
        assert healthd.__version__ in version.stdout
    assert run(python, "-m", "pip", "check").returncode == 0
