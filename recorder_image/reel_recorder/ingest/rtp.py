"""Reading one forwarded RTP stream with FFmpeg's RTP/SDP demuxer.

Janus forwards each recorded publisher stream as plain RTP to a UDP port of ours, owned by the RTP gate
(gate.py, relay.py), which passes whole frames on to a loopback port. FFmpeg (through PyAV) reads them there and
does the depacketizing and H.264 access-unit assembly in C, on its own thread per stream; the GIL is released
while it waits for packets. Each stream gets its own demuxer so that a stream that starts late (a camera
switched on after the microphone) never holds up the others.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import av

from ..clock import RecordingClock, StreamAligner
from .gate import StreamGate

log = logging.getLogger(__name__)

# Codecs the forward ingest can record, as Janus names them, with their RTP clock rate and channels.
RTP_CODECS = {"h264": ("H264", 90000, None), "vp8": ("VP8", 90000, None), "vp9": ("VP9", 90000, None),
              "av1": ("AV1", 90000, None), "opus": ("opus", 48000, 2)}


@dataclass(frozen=True)
class RtpStream:
    """One media stream forwarded to us."""

    kind: str  # "audio" | "video"
    codec: str  # "h264" | "opus"
    payload_type: int
    port: int  # local RTP port (RTCP is port + 1, FFmpeg binds both)
    local_addr: str  # the address Janus sends to and FFmpeg binds
    fmtp: str | None = None
    # The only address packets are taken from (RTP and RTCP): Janus's. FFmpeg drops anything else before it is
    # parsed (SDP source-filter → the rtp protocol's ``sources``): a stranger on the network cannot put a packet
    # into a recording, nor end a stream with an RTCP BYE. None: from anywhere.
    source: str | None = None

    def sdp(self) -> str:
        name, rate, channels = RTP_CODECS[self.codec]
        rtpmap = f"{name}/{rate}" + (f"/{channels}" if channels else "")
        lines = [
            "v=0",
            f"o=- 0 0 IN IP4 {self.local_addr}",
            "s=reel",
            f"c=IN IP4 {self.local_addr}",
            "t=0 0",
            f"m={self.kind} {self.port} RTP/AVP {self.payload_type}",
            f"a=rtpmap:{self.payload_type} {rtpmap}",
        ]
        if self.fmtp:
            lines.append(f"a=fmtp:{self.payload_type} {self.fmtp}")
        if self.source:
            lines.append(f"a=source-filter: incl IN IP4 {self.local_addr} {self.source}")
        lines.append("a=recvonly")
        return "\r\n".join(lines) + "\r\n"


class PortAllocator:
    """Hands out even UDP port pairs (RTP, RTCP) from a range, checking that both can be bound.

    It starts at a random pair of the range and goes round from there: two recorders on one address (pods
    sharing a node's network, tests) rarely try the same pair at the same time (checking and FFmpeg's bind are
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


OPEN_TIMEOUT = 5.0  # seconds an open may take behind the gate (the packets are there: it takes milliseconds)
GATE_POLL = 0.02  # seconds between looks at whether the gate has passed anything

PacketSink = Callable[[av.Packet, float], None]
"""Receives a demuxed packet and its time on the recording clock (seconds)."""


class RtpStreamReader:
    """A thread that demuxes one RTP stream and hands aligned packets to a sink."""

    def __init__(
        self,
        stream: RtpStream,
        sink: PacketSink,
        clock: RecordingClock,
        *,
        name: str,
        on_first_packet: Callable[[], None] | None = None,
        read_timeout: float = 0.5,
        gate: StreamGate | None = None,
    ):
        """``gate``: the stream's RTP gate, which tells when the packet of a given pts came from the network, on
        ``clock`` (``StreamGate.arrival_of``), and which packet is its copy of the first keyframe for FFmpeg
        (``StreamGate.is_copy``, not recorded); without it, a packet's arrival is when the demuxer returns it."""
        self.stream = stream
        self.sink = sink
        self.clock = clock
        self.name = name
        self.on_first_packet = on_first_packet
        self.read_timeout = read_timeout
        self.gate = gate
        self.arrival_of = gate.arrival_of if gate is not None else None
        self.is_copy = gate.is_copy if gate is not None else None
        self.aligner = StreamAligner()
        self.packets = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtp-{name}", daemon=True)
        self._last_pts: int | None = None
        self._last_frame_pts: int | None = None  # behind the gate: the last video frame the demuxer returned
        self._gap = False  # behind the gate: frames were lost after it; until the next keyframe
        self._held_video: tuple[av.Packet, float, float, bool] | None = None
        self._packets = None  # the demuxer's packet iterator, kept from one read to the next
        self._time_base: tuple[int, int] | None = None  # the stream's, as integers: no Fraction per packet

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to end after its current read (``stop`` waits for it)."""
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading; packets still held for alignment are delivered first."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("reader %s did not stop within %.1f s", self.name, timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _open(self, sdp_path: str):
        options = {
            "protocol_whitelist": "file,udp,rtp",
            "buffer_size": str(1 << 20),
            "analyzeduration": "200000",
            "probesize": "32",
            "fpsprobesize": "0",
        }
        # The read timeout bounds every blocking call so that stop() is noticed promptly. Behind the gate the
        # demuxer opens once the gate has packets for it, held until its port is bound (relay.py): they come at
        # once, and an open that gave up in the middle of them would lose the stream's start (its first
        # keyframe, and the timestamps FFmpeg counts from): it may take longer on a busy machine.
        timeout = (OPEN_TIMEOUT if self.gate is not None else self.read_timeout, self.read_timeout)
        return av.open(sdp_path, format="sdp", options=options, timeout=timeout)

    def _run(self) -> None:
        fd, sdp_path = tempfile.mkstemp(prefix="reel-", suffix=".sdp")
        with os.fdopen(fd, "w") as f:
            f.write(self.stream.sdp())
        container = None
        try:
            while not self._stop.is_set():
                if container is None and self.gate is not None and not self.gate.started:
                    self._stop.wait(GATE_POLL)  # nothing passed the gate yet (e.g. camera still off)
                    continue
                if container is None:
                    try:
                        container = self._open(sdp_path)
                    except (av.error.ExitError, TimeoutError, av.error.InvalidDataError):
                        continue  # no data yet (e.g. camera still off); try again until stopped
                packet = self._read(container)
                if packet is not None:
                    self._handle(packet)
            if container is not None:
                self._drain(container)
        except BaseException as err:  # reported to the recorder, which decides what it means
            self.error = err
            log.exception("reader %s failed", self.name)
        finally:
            ready = self._release_held_video()
            for item, t in ready + self.aligner.flush():
                self._deliver(item, t)
            if self._packets is not None:
                self._packets.close()  # its read buffer freed while the container is still open
            if container is not None:
                container.close()
            os.unlink(sdp_path)

    def _drain(self, container, limit: float = 1.0) -> None:
        """After stop: read what is already on its way (the forwarder is gone) until a read times out.

        A reader that lags behind (a busy machine) would otherwise drop the end of its stream, and one
        participant's audio and video would end at different times."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            packet = self._read(container)
            if packet is None:
                return
            self._handle(packet)

    def _read(self, container) -> av.Packet | None:
        """The next packet, or None when the read timed out (nothing within ``read_timeout``).

        One ``demux()`` iterator serves every read until a read ends it (a timeout): setting one up per packet
        cost more Python work than the packet itself (issue 18)."""
        if self._packets is None:
            self._packets = container.demux(container.streams[0])
        try:
            return next(self._packets)
        except (av.error.ExitError, TimeoutError, StopIteration):
            self._packets = None
            return None

    def _handle(self, packet: av.Packet) -> None:
        if packet.pts is None or packet.size == 0:
            return
        if self.is_copy is not None and self.is_copy(packet.pts):
            return  # the gate's copy of the first keyframe, for FFmpeg (gate.py); FFmpeg gave it a pts this time
        if self.gate is not None and self.stream.kind == "video" and not self._continues(packet):
            return
        if self._last_pts is not None and packet.pts <= self._last_pts:
            return  # late duplicate or reordering beyond FFmpeg's queue: keep timestamps monotonic
        self._last_pts = packet.pts
        if self.packets == 0 and self.on_first_packet:
            self.on_first_packet()
        self.packets += 1
        if self._time_base is None:
            tb = packet.time_base
            self._time_base = (tb.numerator, tb.denominator)
        num, den = self._time_base
        media_time = packet.pts * num / den  # = float(pts * time_base), exactly (int / int rounds once)
        if self.arrival_of is not None and self.packets == 1 and self.arrival_of(packet.pts) is None:
            # the gate's timestamps do not match this demuxer's (it missed the gate's first packets): the
            # demuxer's own times, below
            log.warning("reader %s: no arrival times from the RTP gate; timing the packets here", self.name)
            self.arrival_of = None
        if self.arrival_of is not None:
            # Behind the gate: the time its (first) packet came from Janus, taken by the gate's thread as it
            # read it. Neither FFmpeg's H.264 parser (it returns a frame once the next one starts) nor this
            # thread's wait for the GIL is in it.
            arrival = self.arrival_of(packet.pts)
            ready = self.aligner.push(packet, media_time, self.clock.now() if arrival is None else arrival,
                                      measure=arrival is not None)
            for item, t in ready:
                self._deliver(item, t)
            return
        arrival = self.clock.now()
        # The first packet's media time is not the RTP timestamp's: Janus's forwarders start timestamps at 0, and
        # FFmpeg's RTP demuxer takes a base of 0 for "none yet", so the *second* timestamp becomes the base and
        # the first packet is stamped one packet interval too late (pts 0, as the second one). Measured against
        # its arrival it would look that much early and, arriving undelayed, win the alignment's minimum: the
        # stream placed up to 20 ms (audio) or a frame (video) early, a shift fixed for the whole run (issue 16).
        first = self.packets == 1
        if self.stream.kind == "video" and self.aligner.offset is None:
            # FFmpeg's H.264 parser returns an access unit only when the next one starts, so a video packet
            # leaves the demuxer when the *next* frame arrives: pair each arrival with the next media time.
            held, self._held_video = self._held_video, (packet, media_time, arrival, first)
            if held is None:
                return
            packet, prev_media, prev_arrival, prev_first = held
            ready = self.aligner.push(packet, prev_media, prev_arrival - (media_time - prev_media),
                                      measure=not prev_first)
            if self.aligner.offset is not None:
                ready += self._release_held_video()
        else:
            ready = self.aligner.push(packet, media_time, arrival, measure=not first)
        for item, t in ready:
            self._deliver(item, t)

    def _continues(self, packet: av.Packet) -> bool:
        """Behind the gate: False for a video frame that must not be recorded because frames the gate passed on
        never reached this demuxer (its socket overran while this thread waited for a CPU): from such a gap to
        the next keyframe, frames refer to what is missing (counted: the gate's ``overrun_frames``; a keyframe
        is asked for)."""
        previous = self.gate.previous_of(packet.pts)
        if self._last_frame_pts is not None and previous is not None and previous % (1 << 32) != \
                self._last_frame_pts % (1 << 32):
            self._gap = True
        self._last_frame_pts = packet.pts
        if self._gap and not packet.is_keyframe:
            self.gate.counts.overrun_frames += 1
            if self.gate.request_keyframe is not None:
                self.gate.request_keyframe(False)
            return False
        self._gap = False
        return True

    def _release_held_video(self) -> list[tuple[object, float]]:
        held, self._held_video = self._held_video, None
        if held is None:
            return []
        packet, media_time, arrival, first = held
        return self.aligner.push(packet, media_time, arrival, measure=not first)

    def _deliver(self, packet, t: float) -> None:
        self.sink(packet, t)
