"""The `tcp` and `syn` checks: both aim at HOST:PORT."""

from __future__ import annotations

from typing import Literal

from healthd.config.checks.base import HostPortCheck


class TcpCheck(HostPortCheck):
    """TCP connect: a full handshake, then close."""

    type: Literal["tcp"]
    # reset: close with RST (SO_LINGER 0) so the prober keeps no TIME_WAIT sockets
    close: Literal["graceful", "reset"] = "graceful"


class SynCheck(HostPortCheck):
    """SYN-only (half-open): SYN, SYN-ACK, RST; the application never sees a connection."""

    type: Literal["syn"]
