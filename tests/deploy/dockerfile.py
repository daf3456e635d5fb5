"""Read the Dockerfile, and run its install steps on this machine (there is no Docker engine).

`parse` turns the Dockerfile into instructions. `install` replays the stages'
COPY and RUN steps under a scratch directory standing in for the image's root:
container paths in the commands (the venv, WORKDIR, COPY destinations) are
mapped below it, and `python` is a base interpreter of the image's minor
version. Package installs run offline: pip sees no index, and the already
installed dependencies of this checkout are visible on PYTHONPATH, so
`pip install .` must resolve every dependency pyproject.toml declares from
them, and fails if one is missing.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

#: RUN steps that create the image's user: checked by reading them, not run on this host
ACCOUNT_COMMANDS = ("groupadd", "useradd")
#: RUN steps that need root here (setting a file capability needs CAP_SETFCAP): skipped for
#: other users, whose tests of what they make skip with a reason
PRIVILEGED_STEPS = ("grant_net_raw.py",)


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str  # continuation lines joined
    stage: int

    def exec_form(self) -> list[str]:
        """The JSON array form of CMD, ENTRYPOINT, HEALTHCHECK ... CMD."""
        text = self.args.split(" CMD ", 1)[-1] if self.keyword == "HEALTHCHECK" else self.args
        value = json.loads(text)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.args}"
        return [str(item) for item in value]


def parse(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = (pending + line).strip()
        pending = ""
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), args.strip(), stage))
    return instructions


def env_of(instructions: list[Instruction], stage: int) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in instructions:
        if ins.stage == stage and ins.keyword == "ENV":
            for item in shlex.split(ins.args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def copy_sources(ins: Instruction) -> tuple[list[str], str]:
    words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
    return words[:-1], words[-1]


class NoPython(Exception):
    """No interpreter of the image's Python version on this machine."""


@dataclass
class Install:
    """The replayed image: `root` stands for `/`."""

    root: Path
    venv: Path
    python: str
    skipped: tuple[str, ...] = ()  # privileged RUN steps left out (not root)

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    @property
    def site_packages(self) -> Path:
        (found,) = (self.venv / "lib").glob("python3.*/site-packages")
        return found


def base_python(minor: str) -> str:
    """An interpreter of the image's Python version; the system one if it matches (others can read it)."""
    for candidate in ("/usr/bin/python3", sysconfig.get_config_var("BINDIR") + "/python3"):
        done = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode == 0 and done.stdout.strip() == minor:
            return candidate
    raise NoPython(f"needs a Python {minor} interpreter to stand in for the image's")


def offline_pip_env(deps_path: str) -> dict[str, str]:
    return {
        "PIP_CONFIG_FILE": os.devnull,  # this machine's pip config must not matter
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip's spelling of --no-build-isolation
        "PYTHONPATH": deps_path,
    }


def install(dockerfile: Path, context: Path, root: Path, deps_path: str, minor: str) -> Install:
    """Replay every stage's COPY and RUN steps under `root` (account creation excepted)."""
    instructions = parse(dockerfile.read_text())
    python = base_python(minor)
    bin_dir = root / ".bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(python)
    (bin_dir / "python3").symlink_to(python)
    venv = ""
    skipped: list[str] = []
    for stage in range(max(i.stage for i in instructions) + 1):
        env = env_of(instructions, stage)
        venv = env.get("HEALTHD_VENV", venv)
        mapped = {p for p in (venv,) if p}
        workdir = "/"
        for ins in (i for i in instructions if i.stage == stage):
            if ins.keyword == "WORKDIR":
                workdir = ins.args
                mapped.add(workdir)
                (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
            elif ins.keyword == "COPY" and "--from=" not in ins.args:
                sources, dest = copy_sources(ins)
                into = dest.endswith("/") or len(sources) > 1  # a directory to copy into
                dest = posixpath.normpath(posixpath.join(workdir, dest))
                for source in sources:
                    _copy(context / source, root / dest.lstrip("/"), into)
                    is_file = (context / source).is_file()
                    mapped.add(posixpath.join(dest, Path(source).name) if into and is_file else dest)
            elif ins.keyword == "RUN":
                if ins.args.split()[0] in ACCOUNT_COMMANDS:
                    continue
                if os.geteuid() != 0 and any(step in ins.args for step in PRIVILEGED_STEPS):
                    skipped.append(ins.args)
                    continue
                command = _remap(ins.args, mapped, root)
                run_env = {
                    "PATH": f"{bin_dir}:/usr/bin:/bin",
                    "HOME": str(root),
                    **{k: _remap(v, mapped, root) for k, v in env.items() if k != "PATH"},
                    **offline_pip_env(deps_path),
                }
                done = subprocess.run(
                    ["sh", "-ec", command], cwd=root / workdir.lstrip("/"), env=run_env,
                    capture_output=True, text=True, timeout=300, check=False,
                )  # fmt: skip
                assert done.returncode == 0, f"RUN {ins.args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return Install(root, root / venv.lstrip("/"), python, tuple(skipped))


def _copy(source: Path, dest: Path, into: bool) -> None:
    target = dest / source.name if into and source.is_file() else dest
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _remap(text: str, paths: set[str], root: Path) -> str:
    """Container paths in `text` -> the same paths below `root` (longest first)."""
    for path in sorted(paths, key=len, reverse=True):
        text = re.sub(rf"(?<![\w/.]){re.escape(path)}(?=[/\s\"']|$)", f"{root}{path}", text)
    return text
