"""Reading the small files a config names: regular files only, size-capped, never blocking.

A config may name the config itself, certificates, keys and secrets. Each is
opened with O_NONBLOCK (a FIFO would otherwise block the open until a writer
comes), checked to be a regular file (`/dev/zero` would be read until memory
runs out) and read up to a cap. `SecretFile` keeps a secret that probes use on
every run: it is re-read, off the event loop, only when the file changed.
"""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB

#: the config file itself
MAX_CONFIG_BYTES = 8 * MIB
#: certificates, keys and CA bundles (a full system CA bundle is ~220 KiB)
MAX_PEM_BYTES = 4 * MIB
#: tokens and passwords
MAX_SECRET_BYTES = 64 * KIB


class FileOptionError(ValueError):
    """A file that cannot be used: `cannot read PATH: REASON`."""

    def __init__(self, path: str | Path, reason: str, errno: int | None = None) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.path = path
        self.reason = reason
        self.errno = errno  # the OS's, when it said no (EMFILE is this host's problem, not the file's)


def read_file(path: str | Path, limit: int) -> bytes:
    """The whole content of the regular file `path`, at most `limit` bytes.

    Raises FileOptionError with a one-line reason for anything else.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise FileOptionError(path, _reason(exc), exc.errno) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileOptionError(path, f"is {_file_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise FileOptionError(path, f"{info.st_size} bytes is more than the limit of {_size(limit)}")
        data = _read_up_to(fd, limit + 1)
    except OSError as exc:
        raise FileOptionError(path, _reason(exc), exc.errno) from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew after fstat
        raise FileOptionError(path, f"more than the limit of {_size(limit)}")
    return data


def check_file(path: str | Path, limit: int) -> None:
    """Raise FileOptionError unless `path` is a readable regular file within `limit`."""
    read_file(path, limit)


def read_secret(path: str | Path) -> str:
    """A token or password file: UTF-8, surrounding whitespace stripped, not empty."""
    data = read_file(path, MAX_SECRET_BYTES)
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise FileOptionError(path, "not UTF-8 text") from None
    if not text:
        raise FileOptionError(path, "is empty")
    if any(char in text for char in "\r\n\0"):
        raise FileOptionError(path, "holds more than one line")
    return text


@dataclass
class SecretFile:
    """A secret file read once per change (by mtime, size and inode), off the event loop.

    A rotated token (written in place or renamed over) is picked up by the next
    probe. One instance belongs to one check.
    """

    path: Path
    _stamp: tuple[int, int, int, int] | None = None
    _value: str = ""

    async def read(self) -> str:
        try:
            info = os.stat(self.path)  # a stat is cheap; the read may not be
        except OSError as exc:
            raise FileOptionError(self.path, _reason(exc), exc.errno) from None
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino, info.st_dev)
        if stamp != self._stamp:
            self._value = await asyncio.to_thread(read_secret, self.path)
            self._stamp = stamp
        return self._value


def _read_up_to(fd: int, count: int) -> bytes:
    chunks: list[bytes] = []
    left = count
    while left > 0:
        chunk = os.read(fd, min(left, MIB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _size(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit >= MIB else f"{limit // KIB} KiB"
