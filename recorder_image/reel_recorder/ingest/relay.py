"""The RTP gate's thread: owns the UDP ports Janus forwards to, and hands the whole frames that pass on.

One thread (``reel-rtp-gate``) serves every forwarded stream of the recorder: a ``selectors`` loop over the public
sockets (each stream's RTP port and, beside it, its RTCP port, read and dropped: Janus's forwarders send no sender
reports, and an RTCP BYE from anywhere must end nothing). Each datagram goes through its stream's ``StreamGate``
(``gate.py``: source, SSRC, timestamps, whole frames, depacketized) and the frames that pass are handed, at once
and in order, to the stream's ``deliver`` (the stream's ``FrameFeed``, rtp.py: a queue its own thread empties
into the writer). The gate never waits and never muxes: handing over is a queue put, once per stream and round.

Rounds: the thread wakes at most every ``ROUND`` (20 ms) and reads everything that came meanwhile from every
socket, rather than waking for each datagram: on a busy machine the wake-ups (and handing the GIL back and forth)
cost more than the packets themselves (issue 18). A frame goes on at most a round after its last packet came; when
each packet came is the kernel's receive time (``SO_TIMESTAMPNS``), not when this thread got to it, so the clock
alignment does not see the rounds.

Threads: ``open`` and ``close`` are called from any thread (the event loop's workers); they hand the change to the
gate's thread through a queue and a wake-up socket, and ``close`` waits until it is done, so a stream's gate is
only ever touched by the gate's thread. The counts (``StreamGate.snapshot``) are ints, read from other threads
without a lock.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .gate import MediaFrame, StreamGate

log = logging.getLogger(__name__)

RECV_SIZE = 4096  # Janus's forwarders send packets under the path MTU
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python does not name it
_STAMP = struct.Struct("qq")  # struct timespec
_ANCILLARY = socket.CMSG_SPACE(_STAMP.size)
BURST = 256  # datagrams read from one socket in one round before the loop looks at the others
ROUND = 0.02  # seconds between the gate's rounds: what came meanwhile is read at once, in one wake-up


@dataclass(eq=False)
class GatedStream:
    """A stream behind the gate: Janus sends to ``port`` (RTCP: ``port`` + 1) on the recorder's address; the frames
    that pass go to ``deliver`` (on the gate's thread: it must not wait)."""

    port: int
    gate: StreamGate
    deliver: Callable[[list[MediaFrame]], None]
    _socks: list[socket.socket] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)


class RtpGate:
    def __init__(self, local_addr: str, janus_addr: str | None, *, now: Callable[[], float] = time.monotonic):
        """``janus_addr``: the only address media is taken from (None: any, for tests of the gate alone)."""
        self.local_addr, self.janus_addr, self.now = local_addr, janus_addr, now
        self._lock = threading.Lock()
        self._ops: collections.deque = collections.deque()
        self._streams: set[int] = set()  # ids of the open streams (under the lock)
        self._thread: threading.Thread | None = None
        self._wake_w: socket.socket | None = None

    def open(self, port: int, gate: StreamGate, deliver: Callable[[list[MediaFrame]], None]) -> GatedStream:
        """Bind ``port`` and ``port`` + 1 on the recorder's address (OSError when taken) and gate them."""
        stream = GatedStream(port, gate, deliver)
        try:
            for p in (port, port + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                stream._socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # the kernel's arrival time with each packet
                s.bind((self.local_addr, p))
                s.setblocking(False)
        except OSError:
            for s in stream._socks:
                s.close()
            raise
        with self._lock:
            if self._thread is None:
                self._start_locked()
            self._streams.add(id(stream))
            self._ops.append(("open", stream))
        self._wake()
        return stream

    def close(self, stream: GatedStream, timeout: float = 5.0) -> None:
        """Stop gating ``stream``: a frame still incomplete is dropped (never passed on), the ports are freed.
        The thread ends with the last stream (a later ``open`` starts another)."""
        with self._lock:
            if id(stream) not in self._streams:
                return
            self._streams.discard(id(stream))
            self._ops.append(("close", stream))
            thread = self._thread
            if not self._streams:
                self._ops.append(("exit", None))
                self._thread = None
        self._wake()
        if not stream._done.wait(timeout):
            log.warning("the RTP gate did not release port %d within %.1f s", stream.port, timeout)
        if not self._streams and thread is not None:
            thread.join(timeout)

    # -- the gate's thread --------------------------------------------------------------------------------------
    def _start_locked(self) -> None:
        # each thread has its own queue and sockets: one that is ending never takes the next one's work
        self._ops = collections.deque()
        sel = selectors.DefaultSelector()
        wake_r, self._wake_w = socket.socketpair()
        wake_r.setblocking(False)
        sel.register(wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, args=(self._ops, sel, wake_r, self._wake_w),
                                        name="reel-rtp-gate", daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        with self._lock:
            w = self._wake_w
        if w is not None:
            with contextlib.suppress(OSError):  # the thread has just ended: nothing to wake
                w.send(b"\0")

    def _run(self, ops: collections.deque, sel: selectors.BaseSelector, wake_r: socket.socket,
             wake_w: socket.socket) -> None:
        open_streams: list[GatedStream] = []
        clock = time.monotonic
        next_round = 0.0
        try:
            while True:
                wait = next_round - clock()
                if wait > 0:
                    time.sleep(wait)  # the packets wait in the kernel, stamped with their arrival
                events = sel.select(1.0)
                next_round = clock() + ROUND
                for key, _ in events:
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            wake_r.recv(4096)
                        if not self._apply_ops(ops, sel, open_streams):
                            return
                        continue
                    stream, rtcp = key.data
                    self._pump(stream, key.fileobj, rtcp, BURST)
        except BaseException:
            log.exception("the RTP gate failed")
            for s in open_streams:
                s._done.set()
        finally:
            for s in open_streams:
                for sock in s._socks:
                    sock.close()
            sel.close()
            for s in (wake_r, wake_w):
                s.close()

    def _pump(self, stream: GatedStream, sock: socket.socket, rtcp: bool, limit: int) -> None:
        """Read up to ``limit`` datagrams queued on ``sock`` through the stream's gate; hand on what passes."""
        janus, now = self.janus_addr, self.now
        skew = time.time() - now()  # the kernel's stamps (wall clock) onto the gate's clock
        push = stream.gate.push
        frames: list[MediaFrame] = []
        for _ in range(limit):
            try:
                data, ancillary, _flags, (addr, _port) = sock.recvmsg(RECV_SIZE, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ICMP port unreachable reported on the socket
                break
            if rtcp:
                continue
            passed = push(data, janus is None or addr == janus, _arrival(ancillary, skew) or now())
            if passed:
                frames += passed
        if frames:
            stream.deliver(frames)

    def _apply_ops(self, ops: collections.deque, sel: selectors.BaseSelector,
                   open_streams: list[GatedStream]) -> bool:
        """Opens and closes asked for; False when the thread is to end."""
        while True:
            with self._lock:
                if not ops:
                    return True
                op, stream = ops.popleft()
            if op == "exit":
                return False
            if op == "open":
                sel.register(stream._socks[0], selectors.EVENT_READ, (stream, False))
                sel.register(stream._socks[1], selectors.EVENT_READ, (stream, True))
                open_streams.append(stream)
            else:
                # what Janus sent before its forwarder stopped, still queued, goes through first; then a frame
                # still incomplete is dropped
                self._pump(stream, stream._socks[0], False, 1 << 16)
                stream.gate.finish()
                for sock in stream._socks:
                    sel.unregister(sock)
                    sock.close()
                stream._socks.clear()
                if stream in open_streams:
                    open_streams.remove(stream)
                counts = stream.gate.snapshot()
                if counts.rejected or counts.dropped_frames or counts.lost:
                    log.info("gate of port %d: %s, rejected by reason %s", stream.port, counts,
                             stream.gate.rejections)
                stream._done.set()


def _arrival(ancillary: list, skew: float) -> float | None:
    """When the kernel received the packet, on the gate's clock (``skew``: wall clock minus the gate's): the gate's
    thread may read it much later on a busy machine, and the clock alignment needs when it came."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _STAMP.size:
            sec, nsec = _STAMP.unpack_from(data)
            return sec + nsec * 1e-9 - skew
    return None
