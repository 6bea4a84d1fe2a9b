"""One forwarded stream after the RTP gate: its frames fed to the writer on a thread of their own; and the ports,
codecs and keyframe requests of the forward ingest.

The RTP gate's thread (relay.py) hands each stream's whole frames (gate.py ``MediaFrame``: bytes, pts, keyframe,
arrival) to the stream's ``FrameFeed``: a queue put, nothing more, so the gate never waits. A thread of the
ingest's ``FeedPool`` (``reel-feed-N``; a participant's streams share one) empties the queue: it places each frame
on the recording clock (clock.py ``StreamAligner``, from the kernel's arrival time of the frame's first packet)
and calls the sink (the participant's writer: muxing, Opus → AAC, the MP4), as the WebRTC ingest's pump does
(pump.py). A feed's state is touched by its worker's thread only (``packets`` and ``error`` are read elsewhere).
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import struct
import threading
from collections.abc import Callable
from fractions import Fraction

import av

from ..clock import RecordingClock, StreamAligner
from .gate import MediaFrame

log = logging.getLogger(__name__)

# Codecs the forward ingest can record, as Janus names them, with their RTP clock rate.
RTP_CODECS = {"h264": ("H264", 90000), "vp8": ("VP8", 90000), "vp9": ("VP9", 90000), "av1": ("AV1", 90000),
              "opus": ("opus", 48000)}


class PortAllocator:
    """Hands out even UDP port pairs (RTP, RTCP) from a range, checking that both can be bound.

    It starts at a random pair of the range and goes round from there: two recorders on one address (pods
    sharing a node's network, tests) rarely try the same pair at the same time (checking and the gate's bind are
    not one step), and a port is not predictable from the outside."""

    def __init__(self, addr: str, first: int = 40000, last: int = 44999):
        self.addr = addr
        self.first, self.last = first + (first % 2), last
        self._next = self.first + 2 * random.randrange(max(1, (self.last - self.first) // 2))
        self._used: set[int] = set()
        self._lock = threading.Lock()

    def allocate(self) -> int:
        with self._lock:
            span = (self.last - self.first) // 2
            for _ in range(span):
                port = self._next
                self._next = self.first if port + 2 > self.last - 1 else port + 2
                if port in self._used or not self._bindable(port) or not self._bindable(port + 1):
                    continue
                self._used.add(port)
                return port
        raise RuntimeError(f"no free UDP port pair in {self.first}-{self.last} on {self.addr}")

    def release(self, port: int) -> None:
        with self._lock:
            self._used.discard(port)

    def _bindable(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((self.addr, port))
            except OSError:
                return False
        return True


def pli_packet(media_ssrc: int = 0, sender_ssrc: int = 1) -> bytes:
    """An RTCP Picture Loss Indication (RFC 4585): asks the sender for a keyframe."""
    return struct.pack("!BBHII", 0x81, 206, 2, sender_ssrc, media_ssrc)


class KeyframeRequester:
    """Sends PLIs to a Janus forwarder's RTCP port; thread-safe, rate-limited."""

    def __init__(self, janus_addr: str, rtcp_port: int, min_interval: float = 0.3,
                 clock: RecordingClock | None = None):
        self.target = (janus_addr, rtcp_port)
        self.min_interval = min_interval
        self.clock = clock or RecordingClock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._last = -1e9
        self._lock = threading.Lock()
        self.sent = 0

    def request(self, force: bool = False) -> bool:
        """Send a PLI unless one went out less than ``min_interval`` ago (``force``: send anyway)."""
        now = self.clock.now()
        with self._lock:
            if not force and now - self._last < self.min_interval:
                return False
            self._last = now
            try:
                self._sock.sendto(pli_packet(), self.target)
            except OSError as err:  # never let a keyframe request break the media path
                log.warning("PLI to %s:%s failed: %s", *self.target, err)
                return False
            self.sent += 1
            return True

    def close(self) -> None:
        self._sock.close()


PacketSink = Callable[[av.Packet, float], None]
"""Receives a frame as an ``av.Packet`` and its time on the recording clock (seconds)."""
STOP_TIMEOUT = 5.0
FEED_WORKERS = 2  # threads that feed the writers (measured: benchmarks/README.md, "Recorder CPU")


class FeedPool:
    """The threads that feed the writers: each participant's streams on one of ``workers`` threads (the one with
    the fewest participants when their first stream opens), in the order the gate put them. Few threads, each
    woken once per gate round for every stream it serves: a thread per stream woke for every frame, and the
    wake-ups cost more than the frames (issue 18)."""

    def __init__(self, workers: int = FEED_WORKERS):
        self._lock = threading.Lock()
        self._queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(workers)]
        self._threads: list[threading.Thread | None] = [None] * workers
        self._keys: dict[object, list[int]] = {}  # participant -> [worker, streams open]

    def assign(self, key: object) -> queue.SimpleQueue:
        """The queue of ``key``'s worker (started if need be); ``release(key)`` when a stream of it ends."""
        with self._lock:
            entry = self._keys.get(key)
            if entry is None:
                load = [0] * len(self._queues)
                for worker, _ in self._keys.values():
                    load[worker] += 1
                entry = self._keys[key] = [load.index(min(load)), 0]
            entry[1] += 1
            worker = entry[0]
            if self._threads[worker] is None:
                thread = threading.Thread(target=_work, args=(self._queues[worker],), name=f"reel-feed-{worker}",
                                          daemon=True)
                self._threads[worker] = thread
                thread.start()
            return self._queues[worker]

    def release(self, key: object) -> None:
        with self._lock:
            entry = self._keys.get(key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._keys[key]

    def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the threads (after what is queued); a later ``assign`` starts them again."""
        with self._lock:
            threads, self._threads = self._threads, [None] * len(self._queues)
            for q, thread in zip(self._queues, threads, strict=True):
                if thread is not None:
                    q.put(None)
        for thread in threads:
            if thread is not None:
                thread.join(timeout)


def _work(q: queue.SimpleQueue) -> None:
    """A feed worker: (feed, frames) handled, (feed, event) ends the feed; None ends the thread."""
    get = q.get
    while (item := get()) is not None:
        feed, what = item
        if isinstance(what, threading.Event):
            feed._finish()
            what.set()
        elif feed.error is None:
            feed._take(what)


class FrameFeed:
    """One stream's frames, from the gate's thread (``put``) to ``sink`` on a thread of ``pool`` (its own pool of
    one thread when none is given). ``key``: the participant (their streams share a thread)."""

    def __init__(self, kind: str, clock_rate: int, sink: PacketSink, *, name: str, pool: FeedPool | None = None,
                 key: object = None):
        self.kind, self.rate, self.sink, self.name = kind, clock_rate, sink, name
        self.time_base = Fraction(1, clock_rate)
        self.aligner = StreamAligner(name)
        self.packets = 0  # frames handed to the sink's aligner (the watchdog's count)
        self.error: BaseException | None = None
        self._last_pts: int | None = None
        self._own_pool = pool is None
        self._pool = pool or FeedPool(1)
        self._key = name if key is None else key
        self._queue: queue.SimpleQueue | None = None

    def start(self) -> None:
        self._queue = self._pool.assign(self._key)

    def put(self, frames: list[MediaFrame]) -> None:
        """Frames that passed the gate, in order (the gate's thread: never waits)."""
        if self.error is None:  # a feed that failed takes nothing more
            self._queue.put((self, frames))

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Deliver what is queued, then end (call once the gate has stopped putting)."""
        done = threading.Event()
        self._queue.put((self, done))
        if not done.wait(timeout):
            log.warning("feed %s did not stop within %.1f s", self.name, timeout)
        self._pool.release(self._key)
        if self._own_pool:
            self._pool.close(timeout)

    # -- the worker's thread -------------------------------------------------------------------------------------
    def _take(self, frames: list[MediaFrame]) -> None:
        try:
            for frame in frames:
                self._handle(frame)
        except BaseException as err:  # reported to the recorder (failures), which decides what it means
            self.error = err
            log.exception("feed %s failed", self.name)

    def _finish(self) -> None:
        if self.error is not None:
            return
        try:
            for item, t in self.aligner.flush():  # what the alignment still held (a stream shorter than it)
                self.sink(item, t)
        except BaseException as err:
            self.error = err
            log.exception("feed %s failed", self.name)

    def _handle(self, frame: MediaFrame) -> None:
        pts = frame.pts
        if self._last_pts is not None and pts <= self._last_pts:
            return  # keep timestamps monotonic
        self._last_pts = pts
        self.packets += 1
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = pts
        packet.time_base = self.time_base
        if frame.key:
            packet.is_keyframe = True
        for item, t in self.aligner.push(packet, pts / self.rate, frame.arrival):
            self.sink(item, t)
