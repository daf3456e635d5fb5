"""Logging setup: one line per event on stderr, as text or JSON, journald-aware.

When stderr is the journal (systemd sets `JOURNAL_STREAM=DEV:INODE` to the
stream it connected; a child whose stderr was redirected inherits the variable
but not the stream, so the pair is compared with `fstat(stderr)`), each line
starts with its syslog priority (`<6>`, `<4>`, ...) so `journalctl -p warning`
filters, and carries no timestamp because the journal stamps lines itself.

Log calls may pass structured fields with `extra={"service": ..., ...}`; JSON
lines carry them as keys of their own (see `FIELDS`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from healthd.lograte import RepeatFilter

#: Structured fields a log call may attach via `extra=`; JSON lines carry each one given.
FIELDS = (
    "event",
    "service",
    "check",
    "type",
    "target",
    "state",
    "previous",
    "error_kind",
    "streak",
    "added",
    "removed",
    "changed",
    "listen",
    "event_loop",
    "checks",  # with "up" and "down": the first verdicts' line
    "up",
    "down",
)

#: syslog priorities (RFC 5424) by logging level, for journald's `<N>` line prefix
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level; custom levels take the next standard one up."""
    for level in sorted(_PRIORITY):
        if levelno <= level:
            return _PRIORITY[level]
    return _PRIORITY[logging.CRITICAL]


def stderr_is_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """Whether `stream` is the journal stream systemd announced in JOURNAL_STREAM."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(stream.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (ValueError, OSError):  # unset or malformed variable; a stream without a descriptor
        return False


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Formatter(logging.Formatter):
    """Adds the journal's priority prefix, or a timestamp when not writing to the journal."""

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        line = self.body(record)
        if self.journal:
            return f"<{syslog_priority(record.levelno)}>{line}"
        return line

    def body(self, record: logging.LogRecord) -> str:
        raise NotImplementedError


class TextFormatter(_Formatter):
    def body(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line if self.journal else f"{iso_time(record.created)} {line}"


class JsonFormatter(_Formatter):
    def body(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(
    level: str,
    fmt: str,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Route every logger to one stderr handler at `level` (`debug` ... `error`)."""
    out = sys.stderr if stream is None else stream
    journal = stderr_is_journal(os.environ if environ is None else environ, out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(journal) if fmt == "json" else TextFormatter(journal))
    handler.addFilter(RepeatFilter())  # a storm of one line (e.g. out of descriptors) stays bounded
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
