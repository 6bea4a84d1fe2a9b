"""A TCP relay for tests that can cut its connections: a WebSocket (Janus's) dropped in the middle of the path.

``TcpCut(listen_host, upstream_host, upstream_port)`` listens on ``listen_host`` (an ephemeral port: ``port``)
and relays every connection to the upstream, byte for byte, in both directions (a thread per direction).
``cut()`` resets every relayed connection at once (RST on both sides, as a NAT or a load balancer that lost
the flow would), and keeps listening, so a client can reconnect through it; ``cuts``/``accepted`` count.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpCut:
    def __init__(self, listen_host: str, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.accepted = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener = socket.create_server((listen_host, 0))
        self.host, self.port = listen_host, self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="tcpcut-accept")
        self._thread.start()

    def url(self, scheme: str = "ws") -> str:
        return f"{scheme}://{self.host}:{self.port}"

    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def cut(self) -> int:
        """Reset every relayed connection now; returns how many."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self.cuts += len(pairs)
        for a, b in pairs:
            _reset(a)
            _reset(b)
        return len(pairs)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    def __enter__(self) -> TcpCut:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True, name="tcpcut-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
