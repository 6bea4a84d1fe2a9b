"""A small fault-injecting HTTP/1.1 proxy for tests, on 127.0.0.1 in front of a server (MinIO).

It understands just enough HTTP (request/response heads, Content-Length and chunked bodies, keep-alive) to
apply the current mode to every *request*, including requests on connections that were opened earlier:

- ``pass_through()``: forward as is;
- ``delay(seconds)``: wait before forwarding each request (a slow server);
- ``http_error(status)``: answer 500/503/... with an S3-style XML error, without forwarding;
- ``reset()``: accept, then reset each connection (RST) when a request arrives;
- ``refuse()``: stop listening: new connections are refused (ECONNREFUSED), open ones reset on their next
  request.

The mode can be switched at any time from the test; ``stats`` counts requests by outcome.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import Counter

_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout", 429: "Too Many Requests"}
_CODES = {500: "InternalError", 503: "SlowDown", 502: "BadGateway", 504: "GatewayTimeout", 429: "SlowDown"}


class _Closed(Exception):
    pass


class _Conn:
    """A socket with a read buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise _Closed()
        self.buf += data

    def read_until(self, sep: bytes, limit: int = 1 << 20) -> bytes:
        while sep not in self.buf:
            if len(self.buf) > limit:
                raise _Closed()
            self._fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n: int):
        """Yield exactly n bytes in chunks."""
        while n > 0:
            if not self.buf:
                self._fill()
            chunk, self.buf = self.buf[:n], self.buf[n:]
            n -= len(chunk)
            yield chunk

    def read_to_eof(self):
        if self.buf:
            chunk, self.buf = self.buf, b""
            yield chunk
        while data := self.sock.recv(65536):
            yield data


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


def _relay_body(src: _Conn, dst: socket.socket | None, headers: dict[str, str], *,
                to_eof: bool = False) -> None:
    """Copy one message body from src to dst (None: discard)."""
    def send(b: bytes) -> None:
        if dst is not None:
            dst.sendall(b)

    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = src.read_until(b"\r\n")
            send(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then an empty line
                    line = src.read_until(b"\r\n")
                    send(line)
                    if line == b"\r\n":
                        return
            for chunk in src.read_exact(size + 2):
                send(chunk)
    elif "content-length" in headers:
        for chunk in src.read_exact(int(headers["content-length"])):
            send(chunk)
    elif to_eof:
        for chunk in src.read_to_eof():
            send(chunk)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.delay_seconds = 0.0
        self.status = 503
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._stopped = False
        self.port = port
        self._accept_thread: threading.Thread | None = None
        self._listen()

    # -- control --------------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pass_through(self) -> None:
        self._set("pass")

    def delay(self, seconds: float) -> None:
        self.delay_seconds = seconds
        self._set("delay")

    def http_error(self, status: int = 503) -> None:
        self.status = status
        self._set("error")

    def reset(self) -> None:
        self._set("reset")

    def refuse(self) -> None:
        self._set("refuse")

    def _set(self, mode: str) -> None:
        with self._lock:
            old, self.mode = self.mode, mode
        if mode == "refuse" and old != "refuse":
            self._close_listener()
            self._kill_connections()
        elif mode != "refuse" and old == "refuse":
            self._listen()

    def close(self) -> None:
        self._stopped = True
        self._close_listener()
        self._kill_connections()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------------------

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self.port = s.getsockname()[1]
        self._listener = s
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(s,), daemon=True,
                                               name="faultproxy-accept")
        self._accept_thread.start()

    def _close_listener(self) -> None:
        s, self._listener = self._listener, None
        if s is not None:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None

    def _kill_connections(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            _reset(c)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True, name="faultproxy-conn").start()

    def _serve(self, client_sock: socket.socket) -> None:
        client = _Conn(client_sock)
        upstream: _Conn | None = None
        try:
            while not self._stopped:
                head = client.read_until(b"\r\n\r\n")
                request_line, headers = _parse_head(head)
                method = request_line.split(" ", 1)[0]
                mode = self.mode
                self.stats["requests"] += 1
                if mode in ("reset", "refuse"):
                    self.stats["reset"] += 1
                    _reset(client_sock)
                    return
                if mode == "error":
                    self.stats[f"http_{self.status}"] += 1
                    if "100-continue" not in headers.get("expect", "").lower():
                        _relay_body(client, None, headers)
                    code = _CODES.get(self.status, "InternalError")
                    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                            "<Message>injected by faultproxy</Message></Error>").encode()
                    reason = _REASONS.get(self.status, "Error")
                    client_sock.sendall(
                        f"HTTP/1.1 {self.status} {reason}\r\nContent-Type: application/xml\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                    return
                if mode == "delay":
                    self.stats["delayed"] += 1
                    end = time.monotonic() + self.delay_seconds
                    while time.monotonic() < end and self.mode == "delay" and not self._stopped:
                        time.sleep(min(0.05, max(0.0, end - time.monotonic())))
                else:
                    self.stats["passed"] += 1
                if upstream is None:
                    try:
                        us = socket.create_connection(self.upstream, timeout=5)
                    except OSError:
                        self.stats["upstream_down"] += 1
                        _reset(client_sock)
                        return
                    us.settimeout(None)
                    upstream = _Conn(us)
                # We answer "Expect: 100-continue" ourselves and strip it, so the upstream never sends 100.
                expect = "100-continue" in headers.get("expect", "").lower()
                if expect:
                    head = b"\r\n".join(ln for ln in head.split(b"\r\n")
                                        if not ln.lower().startswith(b"expect:"))
                    client_sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                upstream.sock.sendall(head)
                _relay_body(client, upstream.sock, headers)
                # the response
                rhead = upstream.read_until(b"\r\n\r\n")
                status_line, rheaders = _parse_head(rhead)
                status = int(status_line.split(" ")[1])
                client_sock.sendall(rhead)
                no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                if not no_body:
                    to_eof = "content-length" not in rheaders and "chunked" not in rheaders.get(
                        "transfer-encoding", "").lower()
                    _relay_body(upstream, client_sock, rheaders, to_eof=to_eof)
                    if to_eof:
                        return
                if rheaders.get("connection", "").lower() == "close" or \
                        headers.get("connection", "").lower() == "close":
                    return
        except (_Closed, OSError, ValueError, IndexError):
            pass
        finally:
            with self._lock:
                self._conns.discard(client_sock)
            with contextlib.suppress(OSError):
                client_sock.close()
            if upstream is not None:
                with contextlib.suppress(OSError):
                    upstream.sock.close()
