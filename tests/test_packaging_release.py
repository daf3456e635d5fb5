"""The release artefacts: `python -m build` makes an sdist and a wheel that `twine check` passes, the sdist
can test and deploy healthd, and the installed wheel carries its unit and example config."""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from healthd import __version__

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """sdist and wheel built from a copy of the checkout (offline: no build isolation)."""
    out = tmp_path_factory.mktemp("dist")
    src = tmp_path_factory.mktemp("src") / "healthd"
    ignore = shutil.ignore_patterns(".venv", ".git", "*.egg-info", "__pycache__", ".*_cache", "build", "dist")
    shutil.copytree(REPO, src, symlinks=True, ignore=ignore)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield out


def only(dist: Path, pattern: str) -> Path:
    (found,) = dist.glob(pattern)
    return found


def test_twine_check_passes(dist: Path) -> None:
    files = sorted(str(p) for p in dist.iterdir())
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_license_file_matches_the_declared_license() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    text = (REPO / "LICENSE").read_text()
    assert declared == "Apache-2.0"
    assert "Apache License" in text.splitlines()[1] and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a stub


def test_wheel_metadata(dist: Path) -> None:
    with zipfile.ZipFile(only(dist, "*.whl")) as wheel:
        names = set(wheel.namelist())
        meta = email.parser.Parser().parsestr(
            wheel.read(f"healthd-{__version__}.dist-info/METADATA").decode()
        )
        unit = wheel.read("healthd/data/healthd.service")
        example = wheel.read("healthd/data/config.example.yaml")
    assert "healthd/py.typed" in names
    assert any(name.endswith("/licenses/LICENSE") for name in names)
    assert unit == (REPO / "deploy/healthd.service").read_bytes()
    assert example == (REPO / "config.example.yaml").read_bytes()
    assert meta["License-Expression"] == "Apache-2.0"
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers and "Topic :: System :: Monitoring" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Documentation", "Changelog", "Issues"} <= set(urls)
    assert "prometheus" in (meta["Keywords"] or "")


def test_sdist_can_test_and_deploy(dist: Path) -> None:
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        linked = [m.name for m in sdist.getmembers() if m.issym() or m.islnk()]
    needed = {
        "LICENSE",
        "README.md",
        "Makefile",
        "config.example.yaml",
        "Dockerfile",
        "tests/conftest.py",
        "tests/netlab.py",
        "tests/probes/test_tcp.py",
        "tests/deploy/conftest.py",
        "tests/deploy/live.py",
        "deploy/healthd.service",
        "deploy/prometheus/alerts.yml",
        "deploy/container/entrypoint.sh",
        "deploy/shell/generate.sh",
        "docs/README.md",
        "daemon/healthd/data/healthd.service",
        "daemon/healthd/py.typed",
    }
    assert needed - names == set()
    assert linked == []  # links in the checkout become files: the sdist unpacks anywhere


def test_installed_wheel_prints_its_unit_and_config(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # the wheel alone (no index here): its dependencies come from this checkout's venv
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    with zipfile.ZipFile(only(dist, "*.whl")) as wheel:
        wheel.extractall(site)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run = [str(venv / "bin/python"), "-c", "from healthd.cli import main; main()"]
    env = {"PATH": os.environ["PATH"], "HEALTHD_CONFIG": str(tmp_path / "none.yaml")}
    unit = subprocess.run([*run, "print-unit"], capture_output=True, timeout=60, env=env, cwd=tmp_path)
    assert unit.returncode == 0 and unit.stdout == (REPO / "deploy/healthd.service").read_bytes()
    config = subprocess.run([*run, "print-config"], capture_output=True, timeout=60, env=env, cwd=tmp_path)
    assert config.returncode == 0 and config.stdout == (REPO / "config.example.yaml").read_bytes()
    (tmp_path / "c.yaml").write_bytes(config.stdout)
    checked = subprocess.run(
        [*run, "check-config", "-c", str(tmp_path / "c.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert checked.returncode == 0, checked.stderr
    assert unit.stdout.count(b"[Service]") == 1
