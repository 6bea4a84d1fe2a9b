"""The recorder's liveness endpoint: the kubelet's probe asks whether the event loop still turns.

Contract (one writer, one reader, no lock: the mark is a single float, replaced whole):

- **the event loop's thread writes the mark**: ``Liveness.beat()`` is an asyncio task (started by
  ``cli.record``) that stores ``time.monotonic()`` every ``BEAT`` second for as long as the loop runs its
  tasks. That is true in every phase, also in long ones: Uploading awaits ``Uploader.close`` in a worker thread
  (``asyncio.to_thread``) while the loop keeps turning, so a slow upload is not a failure;
- **the ``reel-liveness`` thread reads it**: ``GET /healthz`` answers 200 while the mark is at most
  ``STALE_AFTER`` seconds old, else 503 naming its age; any other path is 404. Each request is served on
  its own short-lived thread of the HTTP server.

What it detects: a wedged event loop (a blocking call or a deadlock on the loop's thread, a coroutine that
never yields), and a frozen process (SIGSTOP, the GIL never released): then nothing answers and the probe times
out. What it does not: a coroutine that awaits forever while the loop turns; the heartbeat reports to the
session (``heartbeatAt``, the operator's recorderSilenceSeconds) cover a recording that stopped progressing.

In a recorder pod the operator sets ``REEL_LIVENESS_PORT`` and the matching ``livenessProbe``
(operator/reel_operator/podspec.py); run on its own, the recorder serves nothing unless the variable is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

PATH = "/healthz"
BEAT = 1.0  # seconds between two marks of a responsive loop
STALE_AFTER = 10.0  # a mark older than this: the loop is wedged (it normally turns every 0.25 s or sooner)


class Liveness:
    """The mark and its HTTP endpoint. ``serve(port)`` starts the endpoint; ``beat()`` runs on the loop."""

    def __init__(self, *, stale_after: float = STALE_AFTER, clock=time.monotonic):
        self.stale_after = stale_after
        self._clock = clock
        self.last_beat = clock()  # written by the event loop's thread only
        self._server: ThreadingHTTPServer | None = None
        self._task: asyncio.Task | None = None

    # -- the event loop's side -----------------------------------------------------------------------------
    def start_beat(self, every: float = BEAT) -> None:
        """Called on the event loop: mark it alive from now on (``asyncio.run`` cancels the task at the end)."""
        self._task = asyncio.get_running_loop().create_task(self.beat(every), name="liveness")

    async def beat(self, every: float = BEAT) -> None:
        """Mark the loop alive every ``every`` seconds, until cancelled."""
        while True:
            self.last_beat = self._clock()
            await asyncio.sleep(every)

    # -- the reader's side ---------------------------------------------------------------------------------
    def age(self) -> float:
        """Seconds since the loop last marked itself alive."""
        return self._clock() - self.last_beat

    def alive(self) -> bool:
        return self.age() <= self.stale_after

    # -- the endpoint --------------------------------------------------------------------------------------
    def serve(self, port: int, host: str = "") -> Liveness:
        """Serve ``GET /healthz`` on ``port`` (all addresses: IPv6 and IPv4 where the host has both) from the
        ``reel-liveness`` thread. Port 0 picks a free one (``port`` tells which)."""
        self._server = _server(host, port, self)
        threading.Thread(target=self._server.serve_forever, name="reel-liveness", daemon=True).start()
        log.debug("liveness endpoint on port %d", self.port)
        return self

    @property
    def port(self) -> int | None:
        return self._server.server_address[1] if self._server is not None else None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5  # a client that sends nothing does not hold a thread for long

    def do_GET(self) -> None:
        liveness = self.server.liveness
        if self.path.split("?", 1)[0] != PATH:
            self._answer(404, "not found\n")
        elif liveness.alive():
            self._answer(200, "ok\n")
        else:
            self._answer(503, f"the recorder's event loop has not run for {liveness.age():.0f} s\n")

    def _answer(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass  # one request every 10 s from the kubelet: not worth a log line


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, liveness: Liveness, family: socket.AddressFamily):
        self.address_family = family
        self.liveness = liveness
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too
        super().server_bind()


def _server(host: str, port: int, liveness: Liveness) -> _Server:
    if host:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return _Server((host, port), liveness, family)
    try:
        return _Server(("::", port), liveness, socket.AF_INET6)
    except OSError:  # no IPv6 here
        return _Server(("0.0.0.0", port), liveness, socket.AF_INET)
