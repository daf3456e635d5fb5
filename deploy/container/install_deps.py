"""Image build step: install the dependencies pyproject.toml declares, before the source is copied.

Usage: python install_deps.py PYPROJECT VENV

Docker caches a layer until the files it copied change. This step sees only
pyproject.toml, so editing the source or the README reuses the installed
dependencies; the package itself is installed afterwards with `--no-deps`.
The list comes from pyproject.toml alone: there is no second requirements file.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib


def main(pyproject: str, venv: str) -> int:
    with open(pyproject, "rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    return subprocess.run([f"{venv}/bin/pip", "install", *dependencies], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
