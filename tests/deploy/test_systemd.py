"""deploy/healthd.service and its sysusers/tmpfiles files, checked by systemd's own tools,
and the daemon run under the unit's user, capabilities and sandbox (no systemd as PID 1 here).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from healthd.probes import PROBES

from tests.deploy import sandbox
from tests.deploy.conftest import need
from tests.deploy.dockerfile import Install
from tests.deploy.live import REPO, check_for, free_port, http_get, loopback_servers, stop, wait_for
from tests.netlab import Namespace, skip_unless_root

UNIT = REPO / "deploy/healthd.service"
SYSUSERS = REPO / "deploy/sysusers.d/healthd.conf"
TMPFILES = REPO / "deploy/tmpfiles.d/healthd.conf"
SYSCTL = REPO / "deploy/sysctl.d/60-healthd-ping.conf"
INSTALLED = "/opt/healthd/bin/healthd"  # where docs/install.md installs the daemon
#: `systemd-analyze security` exposure, 0 (locked down) to 10; raw ICMP and the open
#: network a prober needs are what keeps it above 1 (see the ✗ lines it prints)
EXPOSURE_BUDGET = 1.4
CAP_NET_RAW = 1 << 13
FAMILIES = {"AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6, "AF_UNIX": socket.AF_UNIX}


def directives() -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; systemd allows a key more than once."""
    found, section = [], ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def service(key: str) -> list[str]:
    return [value for section, k, value in directives() if section == "Service" and k == key]


def one(key: str) -> str:
    (value,) = service(key)
    return value


def unit_with_real_binary(tmp_path: Path, text: str | None = None) -> Path:
    """The unit as a file systemd-analyze can check here: ExecStart= must name an executable."""
    healthd = Path(sys.executable).parent / "healthd"
    path = tmp_path / "healthd.service"
    path.write_text((text or UNIT.read_text()).replace(INSTALLED, str(healthd)))
    return path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    return subprocess.run(
        [need("systemd-analyze"), *args], capture_output=True, text=True, timeout=60, env=env
    )


# ---- systemd's tools -------------------------------------------------------------------


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    done = analyze("verify", "--man=no", str(unit_with_real_binary(tmp_path)))
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_systemd_analyze_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtectHomes=yes")
    broken = broken.replace("AF_UNIX\n", "AF_UNIX AF_BOGUS\n")
    done = analyze("verify", "--man=no", str(unit_with_real_binary(tmp_path, broken)))
    assert "Unknown key name 'ProtectHomes'" in done.stderr or "Unknown key 'ProtectHomes'" in done.stderr
    assert "AF_BOGUS" in done.stderr


def test_systemd_analyze_security_exposure_is_within_budget(tmp_path: Path) -> None:
    done = analyze("security", "--offline=true", "--no-pager", str(unit_with_real_binary(tmp_path)))
    assert done.returncode == 0, done.stderr
    match = re.search(r"Overall exposure level for healthd\.service: (\d+\.\d+) (\w+)", done.stdout)
    assert match, done.stdout[-2000:]
    exposed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("✗")]
    print(f"\nsystemd-analyze security: {match.group(1)} {match.group(2)}; not locked: {', '.join(exposed)}")
    assert float(match.group(1)) <= EXPOSURE_BUDGET, done.stdout


def test_sysusers_and_tmpfiles_make_the_user_and_a_config_only_it_can_read(root: Path) -> None:
    uid, gid = account(root)
    passwd = (root / "etc/passwd").read_text()
    assert re.search(rf"^healthd:x:{uid}:{gid}:[^:]*:/:/usr/sbin/nologin$", passwd, re.M), passwd
    assert 0 < uid < 1000, "a system user"
    config_dir = root / "etc/healthd"
    assert (config_dir.stat().st_mode & 0o777, config_dir.stat().st_uid, config_dir.stat().st_gid) == (
        0o750,
        0,
        gid,
    )
    for name in ("config.yaml", "token"):
        st = (config_dir / name).stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 0, gid), name


# ---- the unit's promises, read from the file -------------------------------------------


def test_unit_declares_what_the_issue_asks_for() -> None:
    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    assert one("ExecStart") == f"{INSTALLED} run -c /etc/healthd/config.yaml"
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Restart") == "on-failure" and one("RestartPreventExitStatus") == "2"
    assert one("WatchdogSec") == "30s"
    assert one("User") == "healthd" and not service("DynamicUser")
    assert one("AmbientCapabilities") == "CAP_NET_RAW" and one("CapabilityBoundingSet") == "CAP_NET_RAW"
    assert one("RestrictAddressFamilies").split() == list(FAMILIES)
    assert service("SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("MemoryDenyWriteExecute", "yes")]:  # fmt: skip
        assert one(key) == value, key


def test_a_bad_config_exits_with_the_status_that_prevents_restarts(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("services:\n  - name: web\n    checks:\n      - type: tcp\n        target: nowhere\n")
    healthd = Path(sys.executable).parent / "healthd"
    done = subprocess.run([str(healthd), "run", "-c", str(bad)], capture_output=True, text=True, timeout=30)
    assert done.returncode == int(one("RestartPreventExitStatus")), done.stderr
    assert f"{bad}:5:" in done.stderr and "Traceback" not in done.stderr


# ---- the daemon inside the unit's limits -----------------------------------------------


@pytest.fixture
def root() -> Iterator[Path]:
    """sysusers.d and tmpfiles.d applied to a scratch root (every user can reach it), config and token in place."""
    skip_unless_root("systemd-sysusers", "systemd-tmpfiles")
    scratch = Path(tempfile.mkdtemp(prefix="healthd-unit-"))
    scratch.chmod(0o755)
    try:
        yield make_root(scratch)
    finally:
        shutil.rmtree(scratch)


def make_root(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    subprocess.run(
        [need("systemd-sysusers"), f"--root={root}", str(SYSUSERS)], check=True, capture_output=True
    )
    tmpfiles = [need("systemd-tmpfiles"), f"--root={root}", "--create", str(TMPFILES)]
    subprocess.run(tmpfiles, check=True, capture_output=True)
    (root / "etc/healthd/config.yaml").write_text("services: []\n")
    (root / "etc/healthd/token").write_text("s3cret-token\n")
    for name in ("config.yaml", "token"):
        (root / "etc/healthd" / name).chmod(0o666)  # as careless as an operator can be
    subprocess.run(tmpfiles, check=True, capture_output=True)  # z lines put the modes right
    return root


def account(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        name, _, uid, gid, *_ = line.split(":")
        if name == "healthd":
            return int(uid), int(gid)
    raise AssertionError("sysusers.d made no healthd user")


def unit_setpriv(uid: int, gid: int) -> list[str]:
    """User=, Group=, AmbientCapabilities=, CapabilityBoundingSet=, NoNewPrivileges= as setpriv flags."""
    caps, bounding = (_setpriv_caps(one(key)) for key in ("AmbientCapabilities", "CapabilityBoundingSet"))
    return [need("setpriv"), f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
            f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={bounding}", "--no-new-privs"]  # fmt: skip


def _setpriv_caps(unit_value: str) -> str:
    """CAP_NET_RAW CAP_X -> -all,+net_raw,+x"""
    return ",".join(["-all", *("+" + cap.removeprefix("CAP_").lower() for cap in unit_value.split())])


@dataclass
class Notifications:
    sock: socket.socket
    log: Path | None = None  # the daemon's output, quoted when a notification is missing

    def wait(self, field: str, timeout: float = 10.0) -> list[str]:
        """Datagrams until one carries `field` (e.g. READY=1); bounded in time."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                lines = self.sock.recv(4096).decode().split("\n")
            except TimeoutError:
                break
            if field in lines:
                return lines
        tail = self.log.read_text(errors="replace")[-3000:] if self.log and self.log.exists() else ""
        raise AssertionError(f"no {field} from the daemon within {timeout:.0f}s\n{tail}")


@pytest.fixture
def notify_socket(root: Path) -> Iterator[tuple[str, Notifications]]:
    path = str(root / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        os.chmod(path, 0o777)  # the daemon runs as the unit's user
        yield path, Notifications(sock)


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _status_line(pid: int, key: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def test_sandbox_helper_really_restricts_socket_families_and_wx_memory() -> None:
    if not sandbox.supported():
        pytest.skip("the seccomp helper knows x86_64 and aarch64 only")
    code = """
import ctypes, socket
for family in (socket.AF_INET, socket.AF_NETLINK):
    try:
        socket.socket(family, socket.SOCK_DGRAM).close()
        print("ok")
    except OSError as exc:
        print(exc.errno)
print(ctypes.CDLL(None).prctl(66, 0, 0, 0, 0))  # PR_GET_MDWE
"""
    preexec = sandbox.preexec([socket.AF_INET])
    done = subprocess.run([sys.executable, "-c", code], preexec_fn=preexec, capture_output=True, text=True)
    inet, netlink, mdwe = done.stdout.split()
    assert (inet, netlink) == ("ok", str(errno.EAFNOSUPPORT)), done.stdout + done.stderr
    kernel = tuple(int(part) for part in re.findall(r"\d+", platform.release())[:2])
    if kernel >= (6, 3):
        assert mdwe == "1", "MemoryDenyWriteExecute= stand-in not applied"


def test_daemon_runs_as_the_units_user_with_its_capabilities_and_sandbox(
    tmp_path: Path, root: Path, image: Install, notify_socket: tuple[str, Notifications]
) -> None:
    skip_unless_root("setpriv")
    if not sandbox.supported():
        pytest.skip("the seccomp helper knows x86_64 and aarch64 only")
    uid, gid = account(root)
    notify_path, notifications = notify_socket
    port = free_port()
    with loopback_servers(tmp_path) as targets:
        # every probe type; ICMP with nothing but the ambient CAP_NET_RAW
        checks = [check_for(kind, targets) for kind in sorted(PROBES)]
        checks += [
            {
                "type": "tcp",
                "name": "by-name",
                "target": f"localhost:{targets.tcp_port}",
            },  # resolver, no netlink
            {"type": "tcp", "name": "on-lo", "target": f"127.0.0.1:{targets.tcp_port}", "interface": "lo"},
        ]
        if "icmp" in PROBES and has_ipv6_loopback():  # AF_INET6 is in RestrictAddressFamilies= for this
            checks.append({"type": "icmp", "name": "icmp6", "target": "::1"})
        config = {
            "server": {"token_file": str(root / "etc/healthd/token")},
            "defaults": {"interval": "1s", "timeout": "500ms", "rise": 1, "fall": 1},
            "services": [{"name": "sandboxed", "checks": checks}],
        }
        config_path = root / "etc/healthd/config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "1000000"}
        cmd = [*unit_setpriv(uid, gid), str(image.venv / "bin/healthd"), "run", "-c", str(config_path),
               "--listen", f"127.0.0.1:{port}"]  # fmt: skip
        families = [FAMILIES[name] for name in one("RestrictAddressFamilies").split()]
        hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # systemd could raise it; we may not
        log = notifications.log = tmp_path / "healthd.log"
        with log.open("wb") as out:
            # what systemd sets when stderr is the journal: that stream's device and inode
            stat = os.fstat(out.fileno())
            env["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
            process = subprocess.Popen(
                cmd, cwd="/", env=env, stdout=out, stderr=out,
                preexec_fn=sandbox.preexec(families, nofile=min(int(one("LimitNOFILE")), hard_nofile), umask=0o077),
            )  # fmt: skip
        try:
            ready = notifications.wait("READY=1", timeout=30)  # start-up includes the workers'
            assert any(line.startswith("STATUS=probing") for line in ready), ready
            status = _status_line(process.pid, "CapEff"), _status_line(process.pid, "CapBnd")
            assert tuple(int(v, 16) for v in status) == (CAP_NET_RAW, CAP_NET_RAW), status
            assert (
                _status_line(process.pid, "NoNewPrivs") == "1" and _status_line(process.pid, "Seccomp") == "2"
            )
            assert os.stat(f"/proc/{process.pid}").st_uid == uid

            def all_up() -> bool:
                status, body = http_get(f"http://127.0.0.1:{port}/api/v1/services/sandboxed")
                checks = json.loads(body)["checks"] if status == 200 else []
                return bool(checks) and all(c["status"] == "up" for c in checks)

            wait_for("every check up inside the sandbox", all_up, 15, log)
            notifications.wait("WATCHDOG=1", timeout=3)

            process.send_signal(signal.SIGHUP)  # ExecReload=
            reloading = notifications.wait("RELOADING=1")
            assert any(line.startswith("MONOTONIC_USEC=") for line in reloading), reloading
            notifications.wait("READY=1")
            process.send_signal(signal.SIGTERM)
            notifications.wait("STOPPING=1")
            assert process.wait(timeout=10) == 0  # TimeoutStopSec=10s
        finally:
            stop(process)
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text
    assert not re.match(r"^\d{4}-", text), "under journald (JOURNAL_STREAM) lines carry no timestamp"
    assert all(re.match(r"<[2-7]>", line) for line in text.splitlines() if line), "nor lack a priority"


def test_token_is_unreadable_to_other_users(root: Path) -> None:
    skip_unless_root("setpriv")
    token = str(root / "etc/healthd/token")
    uid, gid = account(root)
    as_service = subprocess.run([need("setpriv"), f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "cat", token],
                                capture_output=True, text=True)  # fmt: skip
    assert as_service.stdout == "s3cret-token\n", as_service.stderr
    as_nobody = subprocess.run([need("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", "cat", token],
                               capture_output=True, text=True)  # fmt: skip
    assert as_nobody.returncode != 0 and "Permission denied" in as_nobody.stderr


def test_sysctl_drop_in_lets_icmp_work_without_any_capability(netns: Namespace, image: Install) -> None:
    """In a namespace of the test's own (the sysctl is per network namespace): no drop-in, no ping."""
    skip_unless_root("setpriv", "sysctl")
    if "icmp" not in PROBES:
        pytest.skip("the icmp probe is not built yet")
    no_caps = [need("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
               "--bounding-set=-all", "--no-new-privs"]  # fmt: skip
    probe = ["ip", "netns", "exec", netns.name, *no_caps, str(image.venv / "bin/healthd"), "probe", "icmp",
             netns.ns_ip, "--timeout", "1s"]  # fmt: skip
    before = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert before.returncode == 1 and "permission" in before.stdout, before.stdout + before.stderr
    netns.exec("sysctl", "-q", "-p", str(SYSCTL))
    after = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert after.returncode == 0, after.stdout + after.stderr
