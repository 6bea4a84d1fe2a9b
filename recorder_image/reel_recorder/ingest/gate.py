"""The RTP gate's decisions (pure): which forwarded packets are recorded, whole frames only, and the frames.

Janus forwards each recorded stream as plain RTP to a UDP port of ours. The gate (``ingest/relay.py`` does the
sockets) checks each packet, and this module decides:

- **Who may feed a stream** (``StreamGuard``): only packets from Janus's address (the caller says so), with the
  payload type we asked Janus for and the SSRC of the forwarder: the one we asked Janus to use
  (``rtp_forward``'s per-stream ``ssrc``), or else the first one Janus's address sent. A timestamp further ahead
  than the time since the last accepted packet allows (plus ``AHEAD_SLACK``), or far behind, is rejected: a
  forged far-future timestamp cannot stretch a segment to hours. RTCP on the RTP port is rejected too.
- **Whole frames only** (``FrameAssembler``, video): packets are grouped into frames (H.264 access units, VP8,
  VP9 pictures, AV1 temporal units) by RTP timestamp. A frame is complete when its first packet follows the
  previous frame's last one (the packet one sequence number before it was received, with another timestamp; or
  its first packet begins with what only a frame's start holds: an H.264 SPS, VP8's partition start), every
  sequence number up to the packet with the marker bit is there, and the codec's own marks agree (H.264 FU-A
  start/end bits; VP8's partition start; VP9's B/E bits; AV1's Z/Y bits). Reordering within a frame (and
  across one frame boundary) is put right. A frame with a packet missing (or whose payload does not read:
  depacketize.py) is dropped whole, and then every frame until the next keyframe (a frame that refers to a lost
  one would not decode), asking Janus for one. A frame still incomplete at the end (a participant leaving in the
  middle of a keyframe, a stop, a pause) is dropped: never handed over.
- **Audio** (Opus): one packet is one frame, passed on as it comes (late and duplicate packets dropped).

What passes leaves as ``MediaFrame``s (``StreamGate.push``): the frame's bytes as the writer takes them
(depacketize.py: H.264 Annex-B, VP8/VP9 frames, AV1 OBUs with their sizes, Opus packets), its pts (the RTP
timestamp counted from the stream's first frame passed on, unwrapped: the stream's clock, exact), whether it is
a keyframe, and when its first packet came from the network (the kernel's time: the clock alignment's).

Counted (``GateCounts``): packets rejected, packets lost (sequence numbers never seen), frames dropped as
incomplete and frames skipped while waiting for a keyframe after a loss (the wait at a stream's start is not
counted: nothing was recorded of that stream yet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .depacketize import DEPACKETIZE
from .rtppacket import MARKS, OPENS, WHOLE, RtpPacket, parse_rtp

AHEAD_SLACK = 2.0  # seconds a timestamp may run ahead of the arrival time since the last accepted packet
BEHIND_LIMIT = 1.0  # seconds a (reordered) timestamp may lag behind the newest one
LATE_SEQ = 1000  # sequence numbers further back than this are from the past, not reordered
MAX_OPEN = 3  # frames collected at once; the oldest incomplete one is dropped beyond that, or once two later
# frames are complete (one, when the packet before it never came): a packet reordered further is taken as lost

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

@dataclass(slots=True)
class _Frame:
    ts: int
    arrival: float  # when its first packet came
    first: int  # the lowest extended sequence number of its packets
    packets: dict[int, RtpPacket] = field(default_factory=dict)  # extended seq -> packet
    ended: bool = False  # its packet with the marker bit came


def _first(frame: _Frame) -> int:
    return frame.first


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
            frame = self._open[pkt.ts] = _Frame(pkt.ts, now, ext)
        elif ext < frame.first:
            frame.first = ext
        frame.packets[ext] = pkt
        frame.ended |= pkt.marker
        return self._decide(), True

    def finish(self) -> list[FrameVerdict]:
        """The end of the stream: every frame still open is incomplete."""
        out = [self._verdict(f, False) for f in sorted(self._open.values(), key=_first)]
        self._open.clear()
        return out

    def _decide(self) -> list[FrameVerdict]:
        out: list[FrameVerdict] = []
        while self._open:
            if len(self._open) == 1:  # the usual case (packets in order): it is complete, or nothing to decide
                (only,) = self._open.values()
                if not self._complete(only):
                    break
                out.append(self._verdict(only, True))
                continue
            frames = sorted(self._open.values(), key=_first)
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
        first = frame.first
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
    incomplete_frames: int = 0  # frames dropped because a packet of theirs was missing (or did not read)
    skipped_frames: int = 0  # whole frames dropped while waiting for a keyframe after a loss
    frames: int = 0  # frames passed on

    @property
    def dropped_frames(self) -> int:
        return self.incomplete_frames + self.skipped_frames


@dataclass(slots=True)
class MediaFrame:
    """A whole frame that passed the gate."""

    data: bytes  # as the writer takes it (depacketize.py)
    pts: int  # RTP timestamp units since the stream's first frame passed on (unwrapped)
    key: bool
    arrival: float  # when its (first) packet came from the network, on the gate's clock


class StreamGate:
    """One forwarded stream: datagrams from the network in, whole frames out (``MediaFrame``).

    ``codec`` "opus" passes packets one by one; "h264"/"vp8"/"vp9"/"av1" pass whole frames (``FrameAssembler``)
    and, after a drop, nothing until a keyframe (``request_keyframe(new)`` is called at each frame dropped
    meanwhile, ``new`` at the first one after a keyframe came; the caller rate-limits it)."""

    def __init__(self, codec: str, clock_rate: int, *, payload_type: int | None = None, ssrc: int | None = None,
                 request_keyframe: Callable[[bool], object] | None = None):
        self.guard = StreamGuard(clock_rate, payload_type, ssrc)
        self.frames = FrameAssembler(codec) if codec in MARKS else None
        self.depacketize = DEPACKETIZE[codec]
        self.request_keyframe = request_keyframe
        self.counts = GateCounts()
        self.started = False  # a frame has been passed on
        self.waiting = self.frames is not None  # for a keyframe (video starts with one)
        self._first_ext: int | None = None
        self._last_ext = -1
        self._accepted = 0
        self._last_ts: int | None = None  # the RTP timestamp of the last frame passed on
        self._pts = 0  # ... and its pts
        self.rejections: dict[str, int] = {}

    def push(self, data: bytes, from_janus: bool, now: float) -> list[MediaFrame]:
        """The frames ``data`` (a datagram that came at ``now``) completes, in order."""
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
            if pkt.end <= pkt.payload:
                return []  # nothing to record (an empty packet)
            self.counts.frames += 1
            self.started = True
            return [MediaFrame(pkt.data[pkt.payload:pkt.end], self._stamp(pkt.ts), True, now)]
        verdicts, taken = self.frames.push(pkt, ext, now)
        if not taken:
            return self._reject("late")
        if self._accepted == 0:  # the first packet: ask for the keyframe the stream starts with
            self._wait()
        self._accepted += 1
        return self._apply(verdicts) if verdicts else []

    def finish(self) -> None:
        """The stream ends: a frame still incomplete is dropped, never passed on."""
        if self.frames is not None:
            self._apply(self.frames.finish())

    def snapshot(self) -> GateCounts:
        """The counts so far (``lost`` brought up to date)."""
        if self._first_ext is not None:
            self.counts.lost = max(0, self.guard.ext_seq - self._first_ext + 1 - self._accepted)
        return GateCounts(**vars(self.counts))

    def _apply(self, verdicts: list[FrameVerdict]) -> list[MediaFrame]:
        out: list[MediaFrame] = []
        for v in verdicts:
            data = None
            if v.complete and not (self.waiting and not v.key):
                try:
                    data = self.depacketize([memoryview(p.data)[p.payload:p.end] for p in v.packets])
                except (ValueError, IndexError):
                    data = None
            if data is None:
                if self.started:
                    if v.complete and self.waiting and not v.key:
                        self.counts.skipped_frames += 1
                    else:
                        self.counts.incomplete_frames += 1
                self._wait()
                continue
            self.waiting, self.started = False, True
            self.counts.frames += 1
            out.append(MediaFrame(data, self._stamp(v.ts), v.key, v.arrival))
        return out

    def _stamp(self, ts: int) -> int:
        """The pts of a frame passed on with RTP timestamp ``ts``: counted from the first, past wrap-around."""
        if self._last_ts is not None:
            self._pts += signed(ts - self._last_ts, 32)
        self._last_ts = ts
        return self._pts

    def _wait(self) -> None:
        new = not self.waiting  # a loss after a keyframe came: the caller may ask past its rate limit
        self.waiting = True
        if self.request_keyframe is not None:
            self.request_keyframe(new)

    def _reject(self, why: str | None) -> list[MediaFrame]:
        self.counts.rejected += 1
        self.rejections[why] = self.rejections.get(why, 0) + 1
        return []


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
