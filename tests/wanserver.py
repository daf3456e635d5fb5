"""The targets' HTTP server of the two-uplink lab (tests/wanlab.py), inside its internet namespace."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.netlab import Namespace


def serve_targets(
    ns: Namespace, port: int, redirect_to: Callable[[int], str], requests: list[tuple[str, str, str]]
) -> ThreadingHTTPServer:
    """An HTTP server on [::]:`port` in `ns` (dual stack: every address there, v4 and v6).

    `/` answers 200; `/hop` redirects to `redirect_to(ip version)`, another host. Each
    request is appended to `requests` as (client address, server address, path). The
    caller shuts it down.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            client = self.client_address[0].removeprefix("::ffff:")
            server = self.connection.getsockname()[0].removeprefix("::ffff:")
            requests.append((client, server, self.path))
            if self.path.startswith("/hop"):
                other = redirect_to(6 if ":" in server else 4)
                self.send_response(302)
                self.send_header("Location", f"http://{f'[{other}]' if ':' in other else other}:{port}/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    listener = ns.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("::", port))
    listener.listen(128)
    server = ThreadingHTTPServer(("::", port), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listener
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server
