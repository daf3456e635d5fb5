"""Fixtures for the deployment tests: a live healthd, a real Prometheus scraping it."""

from __future__ import annotations

import re
import shutil
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.dockerfile import Install, NoPython, install, parse
from tests.deploy.live import REPO, Daemon, Prometheus, running_daemon, running_prometheus

DOCKERFILE = REPO / "Dockerfile"


def need(tool: str) -> str:
    """The path of `tool`, or skip: `make test` installs it as root (.ci/install-test-tools.sh)."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"needs {tool!r} (installed by `make test` as root via .ci/install-test-tools.sh)")
    return path


# package scope: the live daemon probes listeners inside this test process, so it must be
# gone before other packages count their descriptors
@pytest.fixture(scope="package")
def healthd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("healthd")) as live:
        yield live


@pytest.fixture(scope="package")
def prometheus(healthd: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = need("prometheus")
    with running_prometheus(binary, tmp_path_factory.mktemp("prometheus"), healthd.port) as server:
        yield server


@pytest.fixture(scope="session")
def image() -> Iterator[Install]:
    """The Dockerfile's install steps replayed in a fresh venv, in a directory every user can read."""
    root = Path(tempfile.mkdtemp(prefix="healthd-image-"))
    root.chmod(0o755)  # the non-root tests run the daemon from here
    deps = sysconfig.get_paths()["purelib"]
    try:
        try:
            built = install(DOCKERFILE, REPO, root, deps, image_python_minor())
        except NoPython as exc:
            pytest.skip(str(exc))
        # The image holds the dependencies too; here they stay in this checkout's venv.
        (built.site_packages / "healthd-test-deps.pth").write_text(deps + "\n")
        yield built
    finally:
        shutil.rmtree(root)


def image_python_minor() -> str:
    """3.11 from `ARG PYTHON_IMAGE=python:3.11-slim-...`."""
    (arg,) = [
        i.args for i in parse(DOCKERFILE.read_text()) if i.keyword == "ARG" and "PYTHON_IMAGE=" in i.args
    ]
    match = re.search(r"python:(\d+\.\d+)", arg)
    assert match, arg
    return match.group(1)
