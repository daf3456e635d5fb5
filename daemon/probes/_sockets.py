"""Platform and privilege details of probe sockets, in one place.

Probes call these helpers and never test the platform themselves.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from ipaddress import IPv4Address, IPv6Address

from daemon.errors import ProbeError, ProbePermissionError, from_os_error

# Linux values; the socket module does not export all of them everywhere.
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def open_socket(
    family: socket.AddressFamily,
    kind: socket.SocketKind,
    proto: int = 0,
    *,
    source_ip: IPv4Address | IPv6Address | None = None,
    interface: str | None = None,
) -> socket.socket:
    """A non-blocking socket bound as the check asks; closed again if binding fails."""
    try:
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise from_os_error(exc, "cannot open socket") from exc
    try:
        sock.setblocking(False)
        bind_source(sock, source_ip, interface)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_source(
    sock: socket.socket,
    source_ip: IPv4Address | IPv6Address | None,
    interface: str | None,
) -> None:
    """Pin the probe to an egress interface (SO_BINDTODEVICE) and/or a source address."""
    if interface:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise ProbePermissionError(
                    f"binding to interface {interface} needs CAP_NET_RAW on this kernel"
                ) from exc
            if exc.errno == errno.ENODEV:
                raise ProbeError(f"no interface named {interface!r}") from exc
            raise from_os_error(exc, f"cannot bind to interface {interface}") from exc
    if source_ip is not None:
        if (source_ip.version == 6) != (sock.family == socket.AF_INET6):
            raise ProbeError(
                f"source_ip {source_ip} cannot reach an IPv{4 if source_ip.version == 6 else 6} target"
            )
        try:
            sock.bind((str(source_ip), 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ProbeError(f"source_ip {source_ip} is not an address of this host") from exc
            raise from_os_error(exc, f"cannot bind source_ip {source_ip}") from exc


def set_zero_linger(sock: socket.socket) -> None:
    """Make close() send RST at once instead of FIN (and leave no TIME_WAIT)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def disable_quickack(sock: socket.socket) -> bool:
    """Ask the kernel to hold back the handshake's final ACK; False where unsupported."""
    if TCP_QUICKACK is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 0)
    except OSError:
        return False
    return True


def socket_error(sock: socket.socket) -> OSError | None:
    """The pending error of a non-blocking connect (SO_ERROR), as an OSError."""
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return OSError(code, os.strerror(code)) if code else None
