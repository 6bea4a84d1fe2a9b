"""The RTP gate's decisions (pure): which forwarded packets may reach FFmpeg's demuxer, whole frames only.

Janus forwards each recorded stream as plain RTP to a UDP port of ours. Before FFmpeg sees a packet, the gate
(``ingest/relay.py`` does the sockets) checks it, and this module decides:

- **Who may feed a stream** (``StreamGuard``): only packets from Janus's address (the caller says so), with the
  payload type we asked Janus for and the SSRC of the forwarder: the one we asked Janus to use
  (``rtp_forward``'s per-stream ``ssrc``), or else the first one Janus's address sent. A timestamp further ahead
  than the time since the last accepted packet allows (plus ``AHEAD_SLACK``), or far behind, is rejected: a
  forged far-future timestamp cannot stretch a segment to hours. RTCP on the RTP port is rejected too.
- **Whole frames only** (``FrameAssembler``, video): packets are grouped into frames (H.264 access units, VP8
  frames) by RTP timestamp. A frame is complete when its first packet follows the previous frame's last one
  (the packet one sequence number before it was received, with another timestamp; or its first packet begins
  with what only a frame's start holds: an H.264 SPS, VP8's partition start), every sequence number up to
  the packet with the marker bit is there, and the codec's own marks agree (H.264 FU-A start/end bits; VP8's
  partition start). Reordering within a frame (and across one frame boundary) is put right. A frame with a
  packet missing is dropped whole, and then every frame until the next keyframe (a frame that refers to a lost
  one would not decode), asking Janus for one. A frame still incomplete at the end (a participant leaving in
  the middle of a keyframe, a stop, a pause) is dropped: never handed over.
- **Audio** (Opus): one packet is one frame, passed on as it comes (late and duplicate packets dropped).

What passes is renumbered (``StreamGate``): consecutive sequence numbers from 1, so FFmpeg's demuxer never waits
in its reorder queue for a packet the gate dropped, and accepts the first packet (its probation takes a first
packet only when it is number 1); the timestamps keep their spacing, moved to start at ``FIRST_TS`` (Janus's
forwarders start at 0, and FFmpeg's RTP demuxer reads 0 as "no base yet" and 0xFFFFFFFF as "no timestamp").
FFmpeg's H.264 demuxer hands its first frame over without a timestamp (measured: pts None, which the reader must
drop), so a stream's first frame (a video's keyframe, an audio packet) is sent twice, the copy one tick earlier:
the copy is the one without a timestamp (when FFmpeg gives it one, as for audio, the reader knows it by
``is_copy`` and drops it). Its timestamp is FFmpeg's base: the reader finds each packet's arrival from its pts.
FFmpeg still does the depacketizing and the timing; the gate keeps when each frame's first packet came
(``arrival_of``), for the clock alignment.

Counted (``GateCounts``): packets rejected, packets lost (sequence numbers never seen), frames dropped as
incomplete and frames skipped while waiting for a keyframe after a loss (the wait at a stream's start is not
counted: nothing was recorded of that stream yet).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from .rtppacket import MARKS, OPENS, WHOLE, RtpPacket, parse_rtp

AHEAD_SLACK = 2.0  # seconds a timestamp may run ahead of the arrival time since the last accepted packet
BEHIND_LIMIT = 1.0  # seconds a (reordered) timestamp may lag behind the newest one
LATE_SEQ = 1000  # sequence numbers further back than this are from the past, not reordered
MAX_OPEN = 3  # frames collected at once; the oldest incomplete one is dropped beyond that, or once two later
# frames are complete (one, when the packet before it never came): a packet reordered further is taken as lost

FIRST_TS = 0x1000  # what passes starts at this RTP timestamp: far from 0 and 0xFFFFFFFF, FFmpeg's "none" values
# the copy of a stream's first frame goes one tick before it: off every frame grid, so that a demuxer that missed
# the copy (its timestamps then count from the frame itself) finds no arrival time for its packets (rtp.py falls
# back to timing them itself) instead of the neighbouring frame's
COPY_BEFORE = 1
ARRIVALS_KEPT = 512  # frames whose arrival the demuxer's reader can still ask for (seconds of media)

_SEQ_TS = struct.Struct("!HI")


# -- who may feed a stream ----------------------------------------------------------------------------------

def signed(delta: int, bits: int) -> int:
    """``delta`` modulo 2**bits as a signed number."""
    half = 1 << (bits - 1)
    return (delta + half) % (1 << bits) - half


@dataclass
class StreamGuard:
    """Source, SSRC, payload type and timestamp checks of one stream. ``ssrc`` None: locked on the first packet
    from Janus."""

    clock_rate: int
    payload_type: int | None = None
    ssrc: int | None = None
    ext_seq: int | None = None  # the newest sequence number, extended past wrap-around
    last_ts: int = 0
    last_arrival: float = 0.0

    def check(self, pkt: RtpPacket, from_janus: bool, now: float) -> tuple[int | None, str | None]:
        """(the packet's extended sequence number, None) when accepted, else (None, why)."""
        if not from_janus:
            return None, "source"
        if self.payload_type is not None and pkt.pt != self.payload_type:
            return None, "payloadType"
        if self.ssrc is None:
            self.ssrc = pkt.ssrc
        elif pkt.ssrc != self.ssrc:
            return None, "ssrc"
        if self.ext_seq is None:
            self.ext_seq, self.last_ts, self.last_arrival = (1 << 16) + pkt.seq, pkt.ts, now
            return self.ext_seq, None
        dts = signed(pkt.ts - self.last_ts, 32)
        if dts > (now - self.last_arrival + AHEAD_SLACK) * self.clock_rate:
            return None, "timestamp"
        if dts < -BEHIND_LIMIT * self.clock_rate:
            return None, "timestamp"
        dseq = signed(pkt.seq - self.ext_seq, 16)
        if dseq < -LATE_SEQ:
            return None, "late"
        ext = self.ext_seq + dseq
        if dseq > 0:
            self.ext_seq, self.last_ts, self.last_arrival = ext, pkt.ts, now
        return ext, None


# -- whole frames --------------------------------------------------------------------------------------------

@dataclass
class _Frame:
    ts: int
    arrival: float  # when its first packet came
    packets: dict[int, RtpPacket] = field(default_factory=dict)  # extended seq -> packet
    ended: bool = False  # its packet with the marker bit came

    def first(self) -> int:
        return min(self.packets)


@dataclass
class FrameVerdict:
    """What the assembler decided about one frame: its packets in order when ``complete``."""

    ts: int
    complete: bool
    key: bool
    packets: list[RtpPacket]
    arrival: float = 0.0  # when its first packet came


class FrameAssembler:
    """Video RTP packets (accepted by the guard, with their extended sequence numbers) → whole frames or drops,
    in order. ``push`` and ``finish`` return the frames decided."""

    def __init__(self, codec: str):
        self.marks, self.whole, self.opens = MARKS[codec], WHOLE[codec], OPENS[codec]
        self._open: dict[int, _Frame] = {}
        self._seen: dict[int, int] = {}  # extended seq -> ts, of recent packets (start of a frame: its predecessor)
        self._decided_seq = -1  # the newest sequence number of a decided frame
        self._decided_ts: list[int] = []  # the last frames' timestamps (late packets of them are dropped)

    def push(self, pkt: RtpPacket, ext: int, now: float = 0.0) -> tuple[list[FrameVerdict], bool]:
        """(frames decided, whether ``pkt`` was taken: False for a late or duplicate packet). ``now``: its
        arrival."""
        if ext <= self._decided_seq or pkt.ts in self._decided_ts or ext in self._seen:
            return [], False
        self._seen[ext] = pkt.ts
        if len(self._seen) > 512:
            for old in [s for s in self._seen if s < ext - 256]:
                del self._seen[old]
        frame = self._open.get(pkt.ts)
        if frame is None:
            frame = self._open[pkt.ts] = _Frame(pkt.ts, now)
        frame.packets[ext] = pkt
        frame.ended |= pkt.marker
        return self._decide(), True

    def finish(self) -> list[FrameVerdict]:
        """The end of the stream: every frame still open is incomplete."""
        out = [self._verdict(f, False) for f in sorted(self._open.values(), key=_Frame.first)]
        self._open.clear()
        return out

    def _decide(self) -> list[FrameVerdict]:
        out: list[FrameVerdict] = []
        while self._open:
            frames = sorted(self._open.values(), key=_Frame.first)
            oldest = frames[0]
            if self._complete(oldest):
                out.append(self._verdict(oldest, True))
            elif len(frames) > MAX_OPEN or self._later_complete(frames) >= (1 if self._headless(oldest) else 2):
                out.append(self._verdict(oldest, False))
            else:
                break
        return out

    def _verdict(self, frame: _Frame, complete: bool) -> FrameVerdict:
        del self._open[frame.ts]
        seqs = sorted(frame.packets)
        self._decided_seq = max(self._decided_seq, seqs[-1])
        self._decided_ts = [*self._decided_ts[-7:], frame.ts]
        packets = [frame.packets[s] for s in seqs]
        key = complete and any(self.marks(p)[2] for p in packets)
        return FrameVerdict(frame.ts, complete, key, packets if complete else [], frame.arrival)

    def _later_complete(self, frames: list[_Frame]) -> int:
        return sum(self._complete(f) for f in frames[1:])

    def _headless(self, frame: _Frame) -> bool:
        """Its start may be lost: the packet before its first never came (a stream's first frame too), and its
        first packet is not one that only a frame's start can be (an SPS: a keyframe)."""
        first = frame.first()
        return self._seen.get(first - 1, frame.ts) == frame.ts and not self.opens(frame.packets[first])

    def _complete(self, frame: _Frame) -> bool:
        if not frame.ended:
            return False
        seqs = sorted(frame.packets)
        first, last = seqs[0], seqs[-1]
        if last - first + 1 != len(seqs) or not frame.packets[last].marker:
            return False
        if self._headless(frame):
            return False
        return self.whole([frame.packets[s] for s in seqs])


# -- the whole gate of one stream ---------------------------------------------------------------------------

@dataclass
class GateCounts:
    rejected: int = 0  # packets not from the forwarder (source, SSRC, payload type), implausible, late or doubled
    lost: int = 0  # sequence numbers missing when needed (never came, or too late to be used)
    incomplete_frames: int = 0  # frames dropped because a packet of theirs was missing
    skipped_frames: int = 0  # whole frames dropped while waiting for a keyframe after a loss
    frames: int = 0  # frames passed on
    # frames passed on that the demuxer's reader did not record: frames after the gate were lost (its socket
    # overran on a busy machine), up to the next keyframe. Written by the reader's thread only (rtp.py).
    overrun_frames: int = 0

    @property
    def dropped_frames(self) -> int:
        return self.incomplete_frames + self.skipped_frames + self.overrun_frames


class StreamGate:
    """One forwarded stream: datagrams from the network in, rewritten datagrams for FFmpeg out.

    ``codec`` "opus" passes packets one by one; "h264"/"vp8" pass whole frames (``FrameAssembler``) and, after a
    drop, nothing until a keyframe (``request_keyframe(new)`` is called at each frame dropped meanwhile, ``new``
    at the first one after a keyframe came; the caller
    rate-limits it)."""

    def __init__(self, codec: str, clock_rate: int, *, payload_type: int | None = None, ssrc: int | None = None,
                 request_keyframe: Callable[[bool], object] | None = None):
        self.guard = StreamGuard(clock_rate, payload_type, ssrc)
        self.frames = FrameAssembler(codec) if codec in MARKS else None
        self.request_keyframe = request_keyframe
        self.counts = GateCounts()
        self.started = False  # a frame has been passed on (read by the demuxer's thread: it opens then)
        self.waiting = self.frames is not None  # for a keyframe (video starts with one)
        self._first_ext: int | None = None
        self._last_ext = -1
        self._accepted = 0
        self._out_seq = 0
        self._ts_shift: int | None = None
        self._base: int | None = None  # the first timestamp passed on: FFmpeg's base, its pts 0
        self._copy: int | None = None  # the timestamp of the first keyframe's copy
        self._arrivals: dict[int, float] = {}  # timestamp passed on -> when its (frame's first) packet came
        self._previous: dict[int, int] = {}  # timestamp passed on -> the one passed before it (frames in order)
        self._last_passed: int | None = None
        self.rejections: dict[str, int] = {}

    def push(self, data: bytes, from_janus: bool, now: float) -> list[bytes]:
        pkt = parse_rtp(data)
        if pkt is None:
            return self._reject("notRtp")
        ext, why = self.guard.check(pkt, from_janus, now)
        if ext is None:
            return self._reject(why)
        if self._first_ext is None:
            self._first_ext = ext
        if self.frames is None:
            if ext <= self._last_ext:  # audio passes in order: a late one is too late
                return self._reject("late")
            self._last_ext = ext
            self._accepted += 1
            self.counts.frames += 1
            copy = [] if self.started else [self._rewrite(pkt, ts_delta=-COPY_BEFORE)]
            if copy:
                self._copy = self._base
            self.started = True
            return [*copy, self._rewrite(pkt, arrival=now)]
        verdicts, taken = self.frames.push(pkt, ext, now)
        if not taken:
            return self._reject("late")
        if self._accepted == 0:  # the first packet: ask for the keyframe the stream starts with
            self._wait()
        self._accepted += 1
        return self._apply(verdicts)

    def finish(self) -> None:
        """The stream ends: a frame still incomplete is dropped, never passed on. (The last whole frame leaves
        FFmpeg's H.264 parser when the demuxer's next read times out: libavformat flushes its parsers then.)"""
        if self.frames is not None:
            self._apply(self.frames.finish())

    def snapshot(self) -> GateCounts:
        """The counts so far (``lost`` brought up to date)."""
        if self._first_ext is not None:
            self.counts.lost = max(0, self.guard.ext_seq - self._first_ext + 1 - self._accepted)
        return GateCounts(**vars(self.counts))

    def _apply(self, verdicts: list[FrameVerdict]) -> list[bytes]:
        out: list[bytes] = []
        for v in verdicts:
            if not v.complete:
                if self.started:
                    self.counts.incomplete_frames += 1
                self._wait()
            elif self.waiting and not v.key:
                if self.started:
                    self.counts.skipped_frames += 1
                self._wait()
            else:
                if not self.started:  # FFmpeg hands its first frame over without a timestamp: a copy for it
                    out.extend(self._rewrite(p, ts_delta=-COPY_BEFORE) for p in v.packets)
                    self._copy = self._base
                self.waiting, self.started = False, True
                self.counts.frames += 1
                out.extend(self._rewrite(p, arrival=v.arrival) for p in v.packets)
        return out

    def _wait(self) -> None:
        new = not self.waiting  # a loss after a keyframe came: the caller may ask past its rate limit
        self.waiting = True
        if self.request_keyframe is not None:
            self.request_keyframe(new)

    def _reject(self, why: str | None) -> list[bytes]:
        self.counts.rejected += 1
        self.rejections[why] = self.rejections.get(why, 0) + 1
        return []

    def arrival_of(self, pts: int) -> float | None:
        """When the packet (a video frame's first) that FFmpeg's demuxer returned with ``pts`` came to the gate,
        on the gate's clock; None when unknown (any thread: a dict read)."""
        if self._base is None:
            return None
        return self._arrivals.get((self._base + pts) & 0xFFFFFFFF)

    def previous_of(self, pts: int) -> int | None:
        """The pts of the frame the gate passed on just before the one FFmpeg returned with ``pts`` (any thread):
        the reader sees from it that frames were lost after the gate (its socket overran on a busy machine)."""
        if self._base is None:
            return None
        prev = self._previous.get((self._base + pts) & 0xFFFFFFFF)
        return None if prev is None else (prev - self._base) & 0xFFFFFFFF

    def is_copy(self, pts: int) -> bool:
        """The packet FFmpeg's demuxer returned with ``pts`` is the copy of the first keyframe (any thread)."""
        return self._copy is not None and (self._base + pts) & 0xFFFFFFFF == self._copy

    def _rewrite(self, pkt: RtpPacket, ts_delta: int = 0, arrival: float | None = None) -> bytes:
        if self._ts_shift is None:  # the stream's timestamps moved to start at FIRST_TS
            self._ts_shift = (FIRST_TS - pkt.ts - ts_delta) & 0xFFFFFFFF
        ts = (pkt.ts + ts_delta + self._ts_shift) & 0xFFFFFFFF
        if self._base is None:
            self._base = ts
        if ts != self._last_passed:  # a new frame
            if self._last_passed is not None:
                self._previous[ts] = self._last_passed
                if len(self._previous) > ARRIVALS_KEPT:
                    del self._previous[next(iter(self._previous))]
            self._last_passed = ts
        if arrival is not None and ts not in self._arrivals:
            self._arrivals[ts] = arrival
            if len(self._arrivals) > ARRIVALS_KEPT:
                del self._arrivals[next(iter(self._arrivals))]
        self._out_seq = (self._out_seq + 1) & 0xFFFF
        out = bytearray(pkt.data)
        _SEQ_TS.pack_into(out, 2, self._out_seq, ts)
        return bytes(out)


class MediaCounts:
    """One participant's counts over all their streams and runs (status and manifest): the gates of their
    streams are added as they open; ``base``: the counts of an earlier recorder of the same recording (resume).

    Read from the event loop while the gate's thread counts: ints, no lock (a total may be a packet behind)."""

    KEYS = ("droppedFrames", "incompleteFrames", "packetsRejected", "packetsLost")

    def __init__(self, base: dict | None = None):
        self.base = {k: int((base or {}).get(k) or 0) for k in self.KEYS}
        self._gates: list[StreamGate] = []

    def add(self, gate: StreamGate) -> None:
        self._gates.append(gate)

    def totals(self) -> dict[str, int]:
        """``droppedFrames`` (incomplete + skipped waiting for a keyframe), ``incompleteFrames``,
        ``packetsRejected``, ``packetsLost``."""
        out = dict(self.base)
        for gate in list(self._gates):
            c = gate.snapshot()
            out["droppedFrames"] += c.dropped_frames
            out["incompleteFrames"] += c.incomplete_frames
            out["packetsRejected"] += c.rejected
            out["packetsLost"] += c.lost
        return out
