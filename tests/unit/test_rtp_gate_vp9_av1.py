"""The RTP gate's frames for VP9 (RFC 9628 payload descriptor: B/E bits, P for inter-predicted, layer indices)
and AV1 (aggregation header: Z/Y continuation bits, N for a new coded video sequence), from crafted packets
(ingest/rtppacket.py, ingest/gate.py): whole frames pass, a frame with a packet missing is dropped whole and
everything after it until a keyframe, asking for one."""

from __future__ import annotations

import struct

import pytest

from reel_recorder.ingest.gate import StreamGate
from reel_recorder.ingest.rtppacket import av1_marks, av1_opens, parse_rtp, vp9_marks, vp9_opens

SSRC, PT = 0x55AA0001, 98


def rtp(seq: int, ts: int, payload: bytes, *, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | PT, seq & 0xFFFF, ts, SSRC) + payload


KEY_HEADER = bytes([0x82, 0x49, 0x83, 0x42])  # frame marker, profile 0, key frame, shown; the sync code
INTER_HEADER = bytes([0x86, 0x00])  # ... an inter frame


def vp9(*, start: bool, end: bool, inter: bool, pid: int | None = 0x1234, sid: int | None = None,
        size: int = 40, header: bytes | None = None) -> bytes:
    """A VP9 payload: descriptor (I with a 15-bit picture ID, L with TID/SID and TL0PICIDX), the frame's header
    in its first packet (key or inter frame, by ``inter``), filler."""
    d = (0x80 if pid is not None else 0) | (0x40 if inter else 0) | (0x20 if sid is not None else 0) | \
        (0x08 if start else 0) | (0x04 if end else 0)
    out = bytes([d])
    if pid is not None:
        out += struct.pack("!H", 0x8000 | pid)
    if sid is not None:
        out += bytes([sid << 1, 7])  # TID 0, SID, TL0PICIDX (non-flexible mode)
    if header is None:
        header = (INTER_HEADER if inter else KEY_HEADER) if start else b""
    return out + header + b"\x99" * size


def vp9_frame(seq: int, ts: int, count: int, *, inter: bool, **kw) -> list[bytes]:
    return [rtp(seq + i, ts, vp9(start=i == 0, end=i == count - 1, inter=inter, **kw), marker=i == count - 1)
            for i in range(count)]


def av1(*, z: bool, y: bool, n: bool = False, size: int = 40) -> bytes:
    """An AV1 payload: aggregation header (Z, Y, W=1, N) + one OBU element without a length field."""
    return bytes([(0x80 if z else 0) | (0x40 if y else 0) | 0x10 | (0x08 if n else 0), 0x32]) + b"\x77" * size


def av1_frame(seq: int, ts: int, count: int, *, key: bool) -> list[bytes]:
    return [rtp(seq + i, ts, av1(z=i > 0, y=i < count - 1, n=key and i == 0), marker=i == count - 1)
            for i in range(count)]


def marks(payload: bytes, fn):
    return fn(parse_rtp(rtp(1, 1, payload)))


def test_vp9_marks_read_the_descriptor():
    assert marks(vp9(start=True, end=False, inter=False), vp9_marks) == (True, False, True)
    assert marks(vp9(start=False, end=True, inter=False), vp9_marks) == (False, True, False)  # not its start
    assert marks(vp9(start=True, end=True, inter=True), vp9_marks) == (True, True, False)  # predicted: no key
    assert marks(vp9(start=True, end=True, inter=False, pid=5), vp9_marks)[2]  # a 7-bit picture ID
    # P=0 yet an inter frame (FFmpeg's RTP packetizer never sets P): the frame's own header decides
    assert not marks(vp9(start=True, end=True, inter=False, header=INTER_HEADER), vp9_marks)[2]
    assert marks(vp9(start=True, end=True, inter=False, pid=None, sid=0), vp9_marks)[2]
    assert not marks(vp9(start=True, end=True, inter=False, sid=1), vp9_marks)[2]  # an upper spatial layer
    assert marks(vp9(start=True, end=False, inter=True, sid=0), vp9_opens)
    assert not marks(vp9(start=True, end=False, inter=True, sid=2), vp9_opens)
    assert not marks(vp9(start=False, end=True, inter=False), vp9_opens)


def test_av1_marks_read_the_aggregation_header():
    assert marks(av1(z=False, y=True, n=True), av1_marks) == (True, False, True)
    assert marks(av1(z=True, y=True), av1_marks) == (False, False, False)
    assert marks(av1(z=True, y=False), av1_marks) == (False, True, False)
    assert marks(av1(z=False, y=False, n=True), av1_opens)
    assert not marks(av1(z=True, y=False, n=True), av1_opens)  # a continuation cannot open a temporal unit
    assert not marks(av1(z=False, y=False), av1_opens)


class Feed:
    def __init__(self, codec: str):
        self.asked = 0
        self.gate = StreamGate(codec, 90000, payload_type=PT, ssrc=SSRC, request_keyframe=self._ask)
        self.now = 50.0

    def _ask(self, new: bool) -> None:
        self.asked += 1

    def send(self, packets: list[bytes]) -> int:
        """Frames passed on for these packets."""
        self.now += 1 / 30
        return sum(len(self.gate.push(p, True, self.now)) for p in packets)


FRAMES = {
    "vp9": lambda seq, ts, n, key: vp9_frame(seq, ts, n, inter=not key),
    "av1": lambda seq, ts, n, key: av1_frame(seq, ts, n, key=key),
}


@pytest.mark.parametrize("codec", sorted(FRAMES))
def test_whole_frames_pass_and_a_loss_drops_until_the_next_keyframe(codec):
    frame, feed = FRAMES[codec], Feed(codec)
    assert feed.send(frame(100, 3000, 2, False)) == 0  # a stream's first frame: its start unknown, not a keyframe
    assert feed.gate.counts.frames == 0
    assert feed.send(frame(102, 6000, 3, True)) == 1  # the keyframe opens the stream
    assert feed.send(frame(105, 9000, 2, False)) == 1
    lost = frame(107, 12000, 3, False)
    asked = feed.asked
    feed.send([lost[0], lost[2]])  # its middle packet never comes
    assert feed.send(frame(110, 15000, 2, False)) == 0  # whole, but refers to the lost one
    assert feed.send(frame(112, 18000, 2, False)) == 0
    assert feed.asked > asked and feed.gate.counts.incomplete_frames == 1  # a keyframe asked for at once
    assert feed.send(frame(114, 21000, 3, True)) == 1  # the next keyframe: recording goes on
    assert feed.send(frame(117, 24000, 1, False)) == 1
    counts = feed.gate.counts
    assert (counts.frames, counts.incomplete_frames, counts.skipped_frames) == (4, 1, 2), counts


def test_a_vp9_picture_with_two_spatial_layers_is_one_frame_and_needs_both_whole():
    feed = Feed("vp9")
    picture = [rtp(10, 3000, vp9(start=True, end=False, inter=False, sid=0)),
               rtp(11, 3000, vp9(start=False, end=True, inter=False, sid=0)),
               rtp(12, 3000, vp9(start=True, end=True, inter=False, sid=1), marker=True)]
    assert feed.send(picture) == 1  # opens with its layer-0 start: a whole keyframe picture
    broken = [rtp(13, 6000, vp9(start=True, end=False, inter=True, sid=0)),
              rtp(14, 6000, vp9(start=True, end=True, inter=True, sid=1), marker=True)]  # layer 0 never ended
    feed.send(broken)
    for seq in (15, 16):  # two later frames complete: the broken one is given up
        assert feed.send([rtp(seq, 3000 * (seq - 12), vp9(start=True, end=True, inter=True), marker=True)]) == 0
    assert feed.gate.counts.incomplete_frames == 1 and feed.gate.counts.frames == 1


def test_an_av1_fragment_that_does_not_continue_the_one_before_is_incomplete():
    feed = Feed("av1")
    assert feed.send(av1_frame(10, 3000, 2, key=True)) == 1
    feed.send([rtp(12, 6000, av1(z=False, y=True)), rtp(13, 6000, av1(z=False, y=False), marker=True)])
    assert feed.send(av1_frame(14, 9000, 1, key=False)) == 0
    assert feed.send(av1_frame(15, 12000, 1, key=False)) == 0  # two later frames complete: the broken one given up
    assert feed.gate.counts.incomplete_frames == 1 and feed.gate.counts.frames == 1
