"""Some of healthd.service's sandbox, applied to a child process without systemd as PID 1.

- RestrictAddressFamilies= is a seccomp filter on socket(2): a family not listed
  fails with EAFNOSUPPORT. `restrict_address_families` installs the same filter.
- MemoryDenyWriteExecute= forbids writable+executable mappings; the kernel's
  PR_SET_MDWE (Linux 6.3+) refuses the same.
- NoNewPrivileges=, LimitNOFILE= and UMask= are one call each.

User, group and capabilities are set by `setpriv` in the same command line.
Use `preexec(...)` as subprocess's preexec_fn: it runs in the child before exec.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
from collections.abc import Callable, Sequence

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16  # args[0]'s low half: little-endian only
#: machine -> (AUDIT_ARCH_*, __NR_socket)
ARCHES = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def supported() -> bool:
    return platform.machine() in ARCHES


def address_family_program(allowed: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """A classic BPF program: socket(family, ...) with a family not in `allowed` -> EAFNOSUPPORT."""
    arch, nr_socket = ARCHES[platform.machine()]
    n = len(allowed)
    allow_at = 7 + n  # index of the final RET ALLOW; a jump offset counts from the next instruction
    program = [
        (BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        (BPF_JEQ_K, 1, 0, arch),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),  # another ABI: not this filter's business
        (BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        (BPF_JEQ_K, 0, allow_at - 5, nr_socket),
        (BPF_LD_W_ABS, 0, 0, OFFSET_ARG0),
    ]
    for j, family in enumerate(allowed):
        program.append((BPF_JEQ_K, allow_at - (6 + j + 1), 0, int(family)))
    program.append((BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT))
    program.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return program


def _prctl(libc: ctypes.CDLL, *args: object) -> int:
    result = int(libc.prctl(*args))
    if result != 0:
        raise OSError(ctypes.get_errno(), f"prctl{args[:2]}")
    return result


def restrict_address_families(allowed: Sequence[int]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    instructions = address_family_program(allowed)
    array = (_SockFilter * len(instructions))(*[_SockFilter(*i) for i in instructions])
    program = _SockFprog(len(instructions), array)
    _prctl(libc, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # required to install a filter unprivileged
    _prctl(libc, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0)


def deny_write_execute() -> bool:
    """PR_SET_MDWE; False where the kernel lacks it (before Linux 6.3)."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        _prctl(libc, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    return True


def preexec(
    families: Sequence[int], nofile: int | None = None, umask: int | None = None
) -> Callable[[], None]:
    def apply() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        if umask is not None:
            os.umask(umask)
        deny_write_execute()
        restrict_address_families(families)  # last: it also sets no_new_privs

    return apply
