"""One received WebRTC stream, from aiortc's receiver to the sink (ingest/webrtc.py).

``FramePump`` watches the receiver's RTP as it comes in (on the event loop: the arrival of each timestamp's first
packet, the sequence numbers for the loss count, the SSRC for keyframe requests), takes the frames aiortc hands
over (ingest/passthrough.py ``EncodedFrame``, put by the event loop) on its own thread, places each on the
recording clock (clock.py ``StreamAligner``, from the arrivals) and calls the sink there: muxing and Opus → AAC
never run on the event loop. ``request_keyframe`` (any thread, rate-limited) sends an RTCP PLI on the receiver.

Private names of aiortc used here: ``RTCRtpReceiver._handle_rtp_packet`` (wrapped on the instance) and
``_send_rtcp_pli`` (ingest/passthrough.py says how this is guarded).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import av

from ..clock import RecordingClock, StreamAligner
from .frames import FrameTracker, h264_starts
from .passthrough import PASSED

log = logging.getLogger(__name__)

ARRIVALS_KEPT = 512  # RTP timestamps whose arrival is remembered (several seconds of frames or packets)
STOP_TIMEOUT = 5.0


@dataclass
class Snapshot:
    """The counts MediaCounts (gate.py) reads of a stream."""

    dropped_frames: int = 0
    incomplete_frames: int = 0
    rejected: int = 0
    lost: int = 0


class StreamCounts:
    """Sequence numbers of the media SSRC: expected vs. received, retransmissions (RTX) counted as received; and,
    for H.264, the frames not recorded (``tracker``: frames.py). Updated on the event loop and the pump's thread,
    read anywhere (ints, no lock)."""

    def __init__(self, tracker: FrameTracker | None = None):
        self.tracker = tracker
        self.ssrc: int | None = None
        self._base: int | None = None  # extended sequence number of the first packet
        self._max: int | None = None
        self.received = 0
        self.retransmitted = 0

    def add(self, packet) -> None:
        if self.ssrc is None:
            self.ssrc = packet.ssrc
        if packet.ssrc != self.ssrc:  # another SSRC on this receiver: retransmissions (RTX, RFC 4588)
            self.retransmitted += 1
            if self.tracker is not None and len(packet.payload) > 2:  # its original sequence number first
                self.tracker.packet(int.from_bytes(packet.payload[:2], "big"), packet.timestamp, packet.marker,
                                    h264_starts(packet.payload[2:]))
            return
        if self.tracker is not None:
            self.tracker.packet(packet.sequence_number, packet.timestamp, packet.marker, h264_starts(packet.payload))
        seq = packet.sequence_number
        if self._max is None:
            self._base = self._max = seq
        else:
            ext = self._max + ((seq - self._max + 0x8000) % 0x10000 - 0x8000)  # nearest to the highest so far
            self._max = max(self._max, ext)
        self.received += 1

    def snapshot(self) -> Snapshot:
        frames = self.tracker
        dropped, incomplete = (frames.dropped, frames.incomplete) if frames is not None else (0, 0)
        if self._max is None:
            return Snapshot(dropped_frames=dropped, incomplete_frames=incomplete)
        expected = self._max - self._base + 1
        return Snapshot(dropped_frames=dropped, incomplete_frames=incomplete,
                        lost=max(0, expected - self.received - self.retransmitted))


class FramePump:
    def __init__(self, receiver, codec: str, sink: Callable[[av.Packet, float], None], clock: RecordingClock, *,
                 name: str, loop: asyncio.AbstractEventLoop, pli_interval: float = 0.3):
        self.receiver, self.codec, self.sink, self.clock, self.name = receiver, codec, sink, clock, name
        self.kind, self.rate = PASSED[codec]
        self.loop, self.pli_interval = loop, pli_interval
        self.counts = StreamCounts(FrameTracker() if codec == "h264" else None)
        self.aligner = StreamAligner(name)
        self.packets = 0
        self.error: BaseException | None = None
        self._arrivals: dict[int, float] = {}  # RTP timestamp -> arrival of its first packet (recording clock)
        self._first_ts: int | None = None  # the RTP timestamp aiortc counts a stream's frames from
        self._last_ts: int | None = None
        self._timed_here = False
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"webrtc-{name}", daemon=True)
        self._pli_lock = threading.Lock()
        self._last_pli = -1e9
        self.plis = 0
        handle = receiver._handle_rtp_packet

        async def watched(packet, arrival_time_ms):
            self._arrived(packet)
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = watched

    # -- the event loop --------------------------------------------------------------------------------------
    def _arrived(self, packet) -> None:
        self.counts.add(packet)
        if packet.ssrc != self.counts.ssrc:
            return
        if packet.timestamp not in self._arrivals:
            self._arrivals[packet.timestamp] = now = self.clock.now()
            while len(self._arrivals) > ARRIVALS_KEPT:
                self._arrivals.pop(next(iter(self._arrivals)))
            if self._first_ts is None:
                self._first_ts = packet.timestamp
                log.info("pump %s: first packet at %.3f s", self.name, now)
                if self.kind == "video":  # the first packets are rarely a keyframe: ask at once (the writer asks
                    self.request_keyframe(force=True)  # only once the aligner's window has passed)

    def put(self, frame) -> None:
        """A frame from the track (None: the track ended)."""
        self._queue.put(frame)

    def request_keyframe(self, force: bool = False) -> bool:
        """Ask the sender for a keyframe (RTCP PLI through Janus), at most every ``pli_interval``; any thread."""
        now = self.clock.now()
        with self._pli_lock:
            if not force and now - self._last_pli < self.pli_interval:
                return False
            self._last_pli = now
        ssrc = self.counts.ssrc
        if ssrc is None or self.loop.is_closed():
            return False
        self.plis += 1
        self.loop.call_soon_threadsafe(self._send_pli, ssrc)
        return True

    def _send_pli(self, ssrc: int) -> None:
        task = asyncio.ensure_future(self.receiver._send_rtcp_pli(ssrc))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never an unretrieved error

    # -- the pump's thread -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Wait until everything queued is delivered (``put(None)`` first)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("pump %s did not stop within %.1f s", self.name, timeout)

    def _run(self) -> None:
        try:
            while (frame := self._queue.get()) is not None:
                self._handle(frame)
        except BaseException as err:  # reported to the recorder (failures), which decides what it means
            self.error = err
            log.exception("pump %s failed", self.name)
        finally:
            for item, t in self.aligner.flush():
                self._deliver(item, t)

    def _handle(self, frame) -> None:
        ts = frame.timestamp
        if self._last_ts is not None and ts <= self._last_ts:
            return  # keep timestamps monotonic
        self._last_ts = ts
        self.packets += 1
        raw = (self._first_ts + ts) % (1 << 32) if self._first_ts is not None else None
        tracker = self.counts.tracker
        if tracker is not None and raw is not None and not tracker.judge(raw, frame.packet.is_keyframe):
            self.request_keyframe()  # not whole, or after one that was not: nothing until a keyframe (frames.py)
            return
        media_time = ts / self.rate
        arrival = None
        if raw is not None:
            arrival = self._arrivals.get(raw)
        if arrival is None and not self._timed_here and self.packets > 1:
            self._timed_here = True
            log.warning("pump %s: no arrival time for a frame; timing it as aiortc hands it over", self.name)
        if arrival is None:  # later than the arrival: the aligner's minimum prefers the frames that have one
            arrival = frame.decoded_at - self.clock.origin
        for item, t in self.aligner.push(frame.packet, media_time, arrival):
            self._deliver(item, t)

    def _deliver(self, packet: av.Packet, t: float) -> None:
        self.sink(packet, t)
