"""Benchmark targets on loopback: thousands of TCP and HTTP listeners in one process.

Run as its own process (`python -m bench.targets --tcp N --http M`) so the
benchmark can report its CPU apart from the prober's. One epoll loop serves
every listening socket:

- TCP targets accept and close at once (the client's full connect completes in
  the kernel; accept only frees the queue slot). SYN-only probes never reach
  accept: the kernel drops the half-open entry on the prober's RST.
- HTTP targets read one request and answer `200 OK` with `Connection: close`.

ICMP targets need no process: Linux routes all of 127.0.0.0/8 to `lo` and
answers echo requests to every address in it, so no address is added either.
Prints `ready` once every socket listens; on SIGTERM prints a JSON line of
counts (accepted TCP connections, HTTP answers) and exits.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import select
import signal
import socket
import sys
from types import FrameType

BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
TCP_PORT_BASE = 20000
HTTP_PORT_BASE = 40000
ADDRS_PER_PORT = 50  # listeners spread over 50 addresses per port
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
)
MAX_REQUEST = 8192
# third octet of the TCP and HTTP target addresses: two benches on one machine choose different ones
SUBNET = int(os.environ.get("HEALTHD_BENCH_SUBNET", "0"))


def tcp_targets(count: int) -> list[tuple[str, int]]:
    """(address, port) of TCP target i: 127.70.SUBNET.(1 + i % 50), port 20000 + i // 50."""
    port = TCP_PORT_BASE
    return [(f"127.70.{SUBNET}.{1 + i % ADDRS_PER_PORT}", port + i // ADDRS_PER_PORT) for i in range(count)]


def http_targets(count: int) -> list[tuple[str, int]]:
    return [
        (f"127.72.{SUBNET}.{1 + i % ADDRS_PER_PORT}", HTTP_PORT_BASE + i // ADDRS_PER_PORT)
        for i in range(count)
    ]


def icmp_targets(count: int) -> list[str]:
    """127.71.x.y addresses; the kernel answers for all of 127.0.0.0/8."""
    return [f"127.71.{i // 250}.{1 + i % 250}" for i in range(count)]


class Targets:
    def __init__(self, tcp: list[tuple[str, int]], http: list[tuple[str, int]]) -> None:
        self.epoll = select.epoll()
        self.tcp: dict[int, socket.socket] = {}
        self.http: dict[int, socket.socket] = {}
        self.pending: dict[int, tuple[socket.socket, bytearray]] = {}  # HTTP requests being read
        self.accepted = 0
        self.answered = 0
        for address in tcp:
            self._listen(address, self.tcp)
        for address in http:
            self._listen(address, self.http)

    def _listen(self, address: tuple[str, int], table: dict[int, socket.socket]) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind(address)
        sock.listen(BACKLOG)
        table[sock.fileno()] = sock
        self.epoll.register(sock.fileno(), select.EPOLLIN)

    def serve(self, running: list[bool]) -> None:
        while running[0]:
            try:
                events = self.epoll.poll(0.5)
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd in self.tcp:
                    self._drain(self.tcp[fd])
                elif fd in self.http:
                    self._accept_http(self.http[fd])
                else:
                    self._read_request(fd)

    def _drain(self, listener: socket.socket) -> None:
        # accept everything queued in one wake-up: fewer epoll rounds under load
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. ECONNABORTED: the client gave up first
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    raise
                continue
            conn.close()
            self.accepted += 1

    def _accept_http(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    raise
                continue
            conn.setblocking(False)
            self.pending[conn.fileno()] = (conn, bytearray())
            self.epoll.register(conn.fileno(), select.EPOLLIN)

    def _read_request(self, fd: int) -> None:
        conn, buffer = self.pending[fd]
        try:
            chunk = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        buffer += chunk
        if chunk and b"\r\n\r\n" not in buffer and len(buffer) < MAX_REQUEST:
            return  # the rest of the request is still on its way
        if chunk:
            try:
                conn.send(RESPONSE)  # 90 bytes always fit an empty send buffer
                self.answered += 1
            except OSError:
                pass
        self.epoll.unregister(fd)
        del self.pending[fd]
        conn.close()

    def close(self) -> None:
        for conn, _ in self.pending.values():
            conn.close()
        for sock in (*self.tcp.values(), *self.http.values()):
            sock.close()
        self.epoll.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tcp", type=int, default=1000, help="TCP listeners (accept and close)")
    parser.add_argument("--http", type=int, default=0, help="HTTP listeners (answer 200)")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.tcp + args.http + 1000 > hard:
        print(f"targets: {args.tcp + args.http} listeners need more than ulimit -n {hard}", file=sys.stderr)
        return 2
    running = [True]

    def stop(signum: int, frame: FrameType | None) -> None:
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    targets = Targets(tcp_targets(args.tcp), http_targets(args.http))
    print("ready", flush=True)
    try:
        targets.serve(running)
    finally:
        targets.close()
    print(json.dumps({"accepted": targets.accepted, "http_answered": targets.answered}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
