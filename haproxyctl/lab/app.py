"""A tiny HTTP/1.1 app server: the "backend application" behind the lab's HAProxy.

Run it as::

    python -m haproxyctl.lab.app --name s1 --version v1 --port 0 --ready-file PATH \\
        [--health-file PATH] [--unhealthy]

Every answer names the server and the version that produced it (body and ``X-Server`` /
``X-Version`` headers), which is what rollout tests need to tell who served a request.

* ``GET /``, and any other path: 200, body ``"<name> <version>\\n"``.
* ``GET /slow?s=N``: the same after sleeping N seconds (a request that is in flight during a
  drain or a stop).
* ``GET /health``: 200 ``ok`` unless ``--unhealthy`` was given or the health file exists,
  then 503 ``down`` (HAProxy's health checks; the lab flips the file).

Once listening, the bound port is written to ``--ready-file`` (atomically), which tells the
parent both that the app is ready and which port it got.

SIGTERM (or SIGINT) stops gracefully: the listening socket is closed at once, requests in
flight finish (for at most :data:`GRACE_SECONDS`), then the process exits 0. SIGKILL is
abrupt by nature; tests use it to simulate a crashing update.

Only the standard library is used so the app starts fast (the lab starts several per test).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["EXIT_ADDR_IN_USE", "GRACE_SECONDS", "AppServer", "main"]

#: How long a graceful stop waits for requests in flight.
GRACE_SECONDS = 30.0
#: Exit status when the port is taken, so the lab can tell "pick another port" from a crash.
EXIT_ADDR_IN_USE = 3
# Idle keep-alive connections are closed by the app after this long. It is longer than
# HAProxy's idle server-connection lifetime (pool-purge-delay, 5 s by default), so HAProxy
# is normally the side that closes: an app closing a connection just as HAProxy reuses it
# would turn into a failed request that is not the code under test's fault.
_IDLE_TIMEOUT = 60.0
# Upper bound for /slow, so a typo cannot park a thread for hours.
_MAX_SLOW = 300.0


class AppServer(ThreadingHTTPServer):
    """Threaded HTTP server that counts requests in flight for the graceful stop."""

    # One thread per connection: HAProxy keeps many keep-alive connections open, and the
    # threads must not keep the process alive at exit.
    daemon_threads = True
    # The same port is rebound right after a stop (rolling update); without SO_REUSEADDR the
    # bind fails while the old connections sit in TIME_WAIT.
    allow_reuse_address = True
    # Bursts of new connections (user simulation + checks) on a slow 2-core machine must not
    # overflow the accept backlog (the default of 5 would drop SYNs and add 1 s retransmits).
    request_queue_size = 128

    def __init__(
        self,
        port: int,
        *,
        name: str,
        version: str,
        health_file: str | None = None,
        unhealthy: bool = False,
    ) -> None:
        super().__init__(("127.0.0.1", port), AppHandler)
        self.name = name
        self.version = version
        self.health_file = health_file
        self.unhealthy = unhealthy
        #: Set when a graceful stop begins; answers then carry ``Connection: close``.
        self.stopping = threading.Event()
        self._active = 0
        self._active_changed = threading.Condition()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.server_address[1])

    def healthy(self) -> bool:
        """What ``/health`` reports right now."""
        if self.unhealthy:
            return False
        return self.health_file is None or not os.path.exists(self.health_file)

    def request_started(self) -> None:
        with self._active_changed:
            self._active += 1

    def request_finished(self) -> None:
        with self._active_changed:
            self._active -= 1
            self._active_changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if that took longer than ``timeout``."""
        with self._active_changed:
            return self._active_changed.wait_for(lambda: self._active == 0, timeout)


class AppHandler(BaseHTTPRequestHandler):
    """Answers every GET; see the module docstring for the routes."""

    protocol_version = "HTTP/1.1"  # keep-alive, like a real app behind HAProxy
    # Headers and body are two writes; with Nagle on, the body waits for the delayed ACK of
    # the headers (~40 ms per request on loopback).
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT
    server: AppServer

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: thousands of lines per test would only slow the app down."""

    def do_GET(self) -> None:
        self.server.request_started()
        try:
            self._answer()
        finally:
            self.server.request_finished()

    def _answer(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health":
            if self.server.healthy():
                self._send(200, b"ok\n")
            else:
                self._send(503, b"down\n")
            return
        if url.path == "/slow":
            seconds = _slow_seconds(url.query)
            if seconds is None:
                self._send(400, b"bad s\n")
                return
            time.sleep(seconds)
        self._send(200, f"{self.server.name} {self.server.version}\n".encode())

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Server", self.server.name)
        self.send_header("X-Version", self.server.version)
        if self.server.stopping.is_set():
            # Stopping: finish this request but tell HAProxy not to reuse the connection.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


def _slow_seconds(query: str) -> float | None:
    """The ``s`` parameter of ``/slow`` (default 1 s), or None when it is not a number."""
    values = parse_qs(query).get("s", ["1"])
    try:
        seconds = float(values[0])
    except ValueError:
        return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), _MAX_SLOW)


def _write_ready_file(path: str, port: int) -> None:
    """Write the port so that a reader never sees a half-written file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m haproxyctl.lab.app", description=__doc__)
    parser.add_argument("--name", required=True, help="server name, echoed in answers")
    parser.add_argument("--version", required=True, help="app version, echoed in answers")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--ready-file", required=True, help="the bound port is written here")
    parser.add_argument("--health-file", help="/health answers 503 while this file exists")
    parser.add_argument("--unhealthy", action="store_true", help="/health always answers 503")
    return parser.parse_args(argv)


def _install_stop_handlers() -> threading.Event:
    """Route SIGTERM and SIGINT to an event (set when a graceful stop is requested)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _serve_until_stopped(server: AppServer, stop: threading.Event) -> None:
    """Serve until ``stop`` is set, then stop gracefully (bounded by GRACE_SECONDS)."""
    # serve_forever() runs in a thread because shutdown() must be called from another thread
    # than the serving one; the main thread is left free to receive signals.
    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="accept", daemon=True
    )
    serving.start()
    # A timed wait: the main thread then wakes up regularly to run signal handlers.
    while not stop.wait(0.5):
        pass
    server.stopping.set()
    server.shutdown()  # stop accepting...
    server.server_close()  # ...and close the listener: new connections are refused at once
    if not server.wait_idle(GRACE_SECONDS):
        print(f"graceful stop: requests still in flight after {GRACE_SECONDS}s", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parse_args(argv)
    # Before the ready file exists: a stop requested right after readiness must be graceful.
    stop = _install_stop_handlers()
    try:
        server = AppServer(
            args.port,
            name=args.name,
            version=args.version,
            health_file=args.health_file,
            unhealthy=args.unhealthy,
        )
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return EXIT_ADDR_IN_USE if exc.errno == errno.EADDRINUSE else 1
    _write_ready_file(args.ready_file, server.port)
    print(f"{args.name} {args.version} listening on 127.0.0.1:{server.port}", file=sys.stderr)
    _serve_until_stopped(server, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
