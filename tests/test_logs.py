"""Logs: journald detection by the stream's identity, priority prefixes, JSON fields, the wording of
state changes and reloads, and the bound port of `--listen HOST:0`. The daemon runs as a real process."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from healthd.event_fields import ServiceStatuses
from healthd.eventlog import FirstVerdicts, log_check_transition, log_reload, log_service_transition
from healthd.logs import JsonFormatter, TextFormatter, setup_logging, stderr_is_journal, syslog_priority
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, ServiceInfo, Status, Store

from tests.conftest import TcpServer

HEALTHD = [sys.executable, "-m", "healthd"]
WEB = CheckInfo("web", "tcp", "tcp", "127.0.0.1:80", rise=2, fall=2, history=10)
API = CheckInfo("web", "http", "http", "http://127.0.0.1/", rise=1, fall=1, history=10)


def journal_stream(path: Path) -> str:
    stat = os.stat(path)
    return f"{stat.st_dev}:{stat.st_ino}"


def test_journal_is_detected_by_device_and_inode(tmp_path: Path) -> None:
    log, other = tmp_path / "journal", tmp_path / "other"
    log.touch()
    other.touch()
    with log.open("w") as stream:
        assert stderr_is_journal({"JOURNAL_STREAM": journal_stream(log)}, stream)
        # inherited by a child whose stderr points elsewhere: not the journal
        assert not stderr_is_journal({"JOURNAL_STREAM": journal_stream(other)}, stream)
        assert not stderr_is_journal({}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "junk"}, stream)
    assert not stderr_is_journal({"JOURNAL_STREAM": "1:2"}, io.StringIO())  # no descriptor at all


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.DEBUG, 7),
        (logging.INFO, 6),
        (logging.WARNING, 4),
        (logging.ERROR, 3),
        (logging.CRITICAL, 2),
        (25, 4),
    ],
)
def test_syslog_priorities(level: int, priority: int) -> None:
    assert syslog_priority(level) == priority


def record(level: int, message: str, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("healthd.test", level, __file__, 1, message, (), None)
    entry.__dict__.update(extra)
    return entry


def test_formatters() -> None:
    warning = record(logging.WARNING, "check x is down", service="web", state="down", error_kind="refused")
    assert TextFormatter(journal=True).format(warning) == "<4>WARNING healthd.test: check x is down"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT[\d:.]+Z WARNING healthd.test: check x is down",
        TextFormatter(False).format(warning),
    )
    line = JsonFormatter(journal=True).format(warning)
    assert line.startswith("<4>{")
    entry = json.loads(line[3:])
    assert entry["service"] == "web" and entry["state"] == "down" and entry["error_kind"] == "refused"
    assert "check" not in entry  # fields not given are left out, not null


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, dict[str, object]]]:
    fields = ("event", "service", "check", "state", "previous", "error_kind", "added", "checks", "up", "down")
    return [
        (r.levelno, r.getMessage(), {f: r.__dict__[f] for f in fields if f in r.__dict__})
        for r in caplog.records
    ]


def ok(t: float) -> ProbeResult:
    return ProbeResult(time=t, ok=True, duration=0.001, latency=0.001)


def refused(t: float) -> ProbeResult:
    return ProbeResult(
        t, False, 0.001, None, ErrorKind.REFUSED, "connect to 127.0.0.1:80: Connection refused"
    )


def test_check_and_service_transitions_read_naturally(caplog: pytest.LogCaptureFixture) -> None:
    store = Store(probe_histograms=False)
    store.apply([ServiceInfo("web", {}, (WEB, API))])
    services = ServiceStatuses()  # what the daemon uses to see a service change (app.Daemon)

    def record_result(info: CheckInfo, result: ProbeResult) -> None:
        transition = store.record(info.key, result)
        if transition is not None:
            log_check_transition(transition)
            statuses = {s.name: store.status_of(s) for s in store.services}
            for fields in services.update(statuses):
                log_service_transition(
                    store, fields["service"], Status(fields["status"]), Status(fields["previous"])
                )

    caplog.set_level(logging.DEBUG)
    record_result(WEB, refused(0))  # first verdict: down
    record_result(API, ok(0))  # the other check up: the service stays degraded
    record_result(WEB, ok(1))
    record_result(WEB, ok(2))  # rise 2: up after two successes; the service is up
    got = messages(caplog)
    assert got[0][:2] == (
        logging.WARNING,
        "check web/tcp (tcp 127.0.0.1:80) is down, was unknown: refused (connect to 127.0.0.1:80: Connection refused)",
    )
    assert got[0][2] == {
        "event": "check_transition",
        "service": "web",
        "check": "tcp",
        "state": "down",
        "previous": "unknown",
        "error_kind": "refused",
    }
    # one check down and one unknown already make the service degraded (see docs/operations.md)
    assert got[1][:2] == (logging.WARNING, "service web is degraded, was unknown (1 of 2 checks down)")
    assert got[1][2] == {
        "event": "service_transition",
        "service": "web",
        "state": "degraded",
        "previous": "unknown",
    }
    # a first verdict of up is DEBUG: FirstVerdicts sums them up in one line
    assert got[2][:2] == (logging.DEBUG, "check web/http (http http://127.0.0.1/) is up, was unknown")
    assert got[3][:2] == (
        logging.INFO,
        "check web/tcp (tcp 127.0.0.1:80) is up after 2 consecutive successes, was down",
    )
    assert got[4][:2] == (logging.INFO, "service web is up, was degraded (0 of 2 checks down)")
    assert len(got) == 5
    assert store.status_of(store.services[0]) is Status.UP


def test_first_verdicts_are_one_line_once_all_are_in(caplog: pytest.LogCaptureFixture) -> None:
    store = Store(probe_histograms=False)
    third = CheckInfo("db", "tcp", "tcp", "127.0.0.1:5432", rise=1, fall=1, history=10)
    store.apply([ServiceInfo("web", {}, (WEB, API)), ServiceInfo("db", {}, (third,))])
    first = FirstVerdicts(state.info.key for state in store.all_states())
    caplog.set_level(logging.INFO, logger="healthd.state")

    def record(info: CheckInfo, result: ProbeResult) -> None:
        transition = store.record(info.key, result)
        if transition is not None:
            first.seen(transition)

    record(WEB, refused(0))
    record(WEB, ok(1))  # not a first verdict: counted once, as down
    record(API, ok(0))
    assert messages(caplog) == []  # the db check has no verdict yet
    first.keep_only([WEB.key, API.key])  # a reload removed it: no longer waited for
    ((level, message, fields),) = messages(caplog)
    assert (level, message) == (logging.INFO, "first verdicts of 3 checks are in: 1 up, 1 down")
    assert fields == {"event": "first_verdicts", "checks": 3, "up": 1, "down": 1}
    record(WEB, refused(2))
    record(WEB, refused(3))
    first.keep_only([])
    assert len(messages(caplog)) == 1  # once


def test_reload_line_names_the_checks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    log_reload(["web/http"], [f"old/c{i:02}" for i in range(12)], [], 3)
    ((level, message, fields),) = messages(caplog)
    assert level == logging.INFO
    assert message == (
        "config reloaded: 1 added (web/http), 12 removed (old/c00, old/c01, old/c02, old/c03, old/c04, "
        "old/c05, old/c06, old/c07, old/c08, old/c09 and 2 more), 0 changed; 3 checks"
    )
    assert fields["added"] == ["web/http"]


def test_setup_logging_uses_the_journal_prefix_only_on_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "err"
    path.touch()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        with path.open("w") as stream:
            setup_logging("info", "text", stream, {"JOURNAL_STREAM": journal_stream(path)})
            logging.getLogger("healthd.x").warning("one")
            setup_logging("info", "text", stream, {})
            logging.getLogger("healthd.x").warning("two")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    first, second = path.read_text().splitlines()
    assert first == "<4>WARNING healthd.x: one"
    assert second.endswith("Z WARNING healthd.x: two") and not second.startswith("<")


def config(path: Path, target: str) -> Path:
    path.write_text(f"""\
server: {{listen: "127.0.0.1:9"}}
defaults: {{interval: 1s, timeout: 500ms, rise: 1, fall: 1}}
services:
  - name: web
    checks:
      - {{type: tcp, target: "{target}"}}
""")
    return path


def run_daemon(tmp_path: Path, target: str, *args: str, journal: bool = False) -> list[str]:
    """The daemon on --listen 127.0.0.1:0 until its check has a verdict; its stderr lines."""
    err = tmp_path / "stderr"
    err.touch()
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal:
        env["JOURNAL_STREAM"] = journal_stream(err)
    cmd = [*HEALTHD, "run", "-c", str(config(tmp_path / "c.yaml", target)), "--listen", "127.0.0.1:0", *args]
    with err.open("w") as stream:
        proc = subprocess.Popen(cmd, stderr=stream, env=env)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "first verdicts of" not in err.read_text():
            time.sleep(0.05)
        text = err.read_text()
        port = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
        assert port, text
        assert int(port.group(1)) not in (0, 9)
        with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/healthz", timeout=5) as answer:
            assert answer.status == 200  # the logged port is the one that serves
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    return err.read_text().splitlines()


def test_daemon_on_the_journal_prefixes_priorities(tmp_path: Path, closed_port: int) -> None:
    lines = run_daemon(tmp_path, f"127.0.0.1:{closed_port}", journal=True)
    assert all(re.match(r"<[2-7]>[A-Z]+ ", line) for line in lines), lines
    assert any(line.startswith("<4>WARNING healthd.state: check web/tcp") for line in lines), lines
    assert any(line.startswith("<6>INFO healthd: healthd ") for line in lines), lines


def test_daemon_json_lines_carry_fields(tmp_path: Path, tcp_server: TcpServer) -> None:
    # a first verdict of up is DEBUG
    lines = run_daemon(tmp_path, tcp_server.target, "--log-format", "json", "--log-level", "debug")
    entries = [json.loads(line) for line in lines]
    (start,) = [e for e in entries if e.get("event") == "start"]
    assert start["listen"].startswith("127.0.0.1:") and start["listen"] != "127.0.0.1:0"
    (check,) = [e for e in entries if e.get("event") == "check_transition"]
    assert check["service"] == "web" and check["check"] == "tcp" and check["type"] == "tcp"
    assert check["target"] == tcp_server.target and check["state"] == "up" and check["previous"] == "unknown"
    assert "error_kind" not in check
    (service,) = [e for e in entries if e.get("event") == "service_transition"]
    assert service["service"] == "web" and service["state"] == "up"
    (first,) = [e for e in entries if e.get("event") == "first_verdicts"]
    assert (first["level"], first["checks"], first["up"], first["down"]) == ("info", 1, 1, 0)
