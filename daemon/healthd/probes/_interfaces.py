"""What this host's network interfaces can carry: does one exist, is it up, has it an address of a family.

Asked in the caller's network namespace (ioctl on a socket, `/proc/thread-self/net`),
never through /sys, which shows the namespace it was mounted in. Used before a probe
binds to an interface and by `check-config`, so that a binding that cannot work says
why (and what to do) instead of timing out or leaving with another uplink's address.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCGIFADDR = 0x8915
IFF_UP = 0x1
IF_INET6 = "/proc/thread-self/net/if_inet6"  # address, index, prefix length, scope, flags, name
_SCOPE_LINK = 0x20


def interface_problem(name: str, family: socket.AddressFamily | None = None) -> str | None:
    """Why a probe bound to interface `name` cannot work here, or None.

    Missing, administratively down, or (with `family`) without an address of that
    family: the kernel would then pick a source address of another interface, and the
    probe would leave with it. A link without carrier is not a problem of this host's
    config: that is the uplink being down, which the probe reports.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", name.encode()[:15], 0)
        try:
            flags: int = struct.unpack_from("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return f"no interface named {name!r} on this host (`ip link` lists them)"
            return None  # cannot tell: let the probe try
        if not flags & IFF_UP:
            return f"interface {name} is down (`ip link set {name} up`)"
        if family is None or has_address(sock, name, family):
            return None
    version = 6 if family == socket.AF_INET6 else 4
    return f"interface {name} has no IPv{version} address: the probe would leave with another interface's"


def has_address(sock: socket.socket, name: str, family: socket.AddressFamily) -> bool:
    """Whether `name` has an address of `family` (IPv6: one beyond link-local). `sock`: any AF_INET socket."""
    if family == socket.AF_INET:
        try:
            fcntl.ioctl(sock, SIOCGIFADDR, struct.pack("16sH14x", name.encode()[:15], socket.AF_INET))
        except OSError as exc:
            return exc.errno != errno.EADDRNOTAVAIL
        return True
    try:
        with open(IF_INET6) as table:
            rows = [line.split() for line in table]
    except OSError:
        return True  # no IPv6 here at all, or no /proc: cannot tell
    return any(len(row) == 6 and row[5] == name and not int(row[3], 16) & _SCOPE_LINK for row in rows)
