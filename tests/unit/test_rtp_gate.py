"""The RTP gate (ingest/gate.py, ingest/relay.py): only Janus's forwarder feeds a stream, and only whole frames
are recorded; a frame with a packet missing is dropped whole, then everything until a keyframe."""

from __future__ import annotations

import socket
import struct
import time
from itertools import pairwise

from reel_recorder.ingest.depacketize import h264
from reel_recorder.ingest.gate import AHEAD_SLACK, MediaCounts, MediaFrame, StreamGate
from reel_recorder.ingest.relay import RtpGate
from reel_recorder.ingest.rtppacket import h264_marks, parse_rtp

SSRC = 0x1234ABCD
PT = 96


def rtp(seq: int, ts: int, payload: bytes, *, marker: bool = False, ssrc: int = SSRC, pt: int = PT) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def single(nal_type: int, size: int = 20) -> bytes:
    return bytes([0x60 | nal_type]) + b"\xaa" * size


def stap_a(*types: int) -> bytes:
    body = b""
    for t in types:
        nal = bytes([0x60 | t]) + b"\xbb" * 6
        body += struct.pack("!H", len(nal)) + nal
    return b"\x78" + body  # NRI 3, type 24


def fu_a(nal_type: int, *, start: bool = False, end: bool = False) -> bytes:
    return bytes([0x7C, (0x80 if start else 0) | (0x40 if end else 0) | nal_type]) + b"\xcc" * 30


def idr(seq: int, ts: int, fragments: int = 4) -> list[bytes]:
    """SPS+PPS in a STAP-A, then an IDR slice in ``fragments`` FU-A packets: one access unit."""
    out = [rtp(seq, ts, stap_a(7, 8))]
    for i in range(fragments):
        out.append(rtp(seq + 1 + i, ts, fu_a(5, start=i == 0, end=i == fragments - 1), marker=i == fragments - 1))
    return out


def p_frame(seq: int, ts: int) -> list[bytes]:
    return [rtp(seq, ts, single(1), marker=True)]


class Feed:
    """A video gate, with the time advancing one frame per frame's packets and keyframe requests counted."""

    def __init__(self, ssrc: int | None = SSRC):
        self.asked = self.new = 0
        self.gate = StreamGate("h264", 90000, payload_type=PT, ssrc=ssrc, request_keyframe=self._ask)
        self.now = 100.0
        self.out: list[MediaFrame] = []

    def _ask(self, new: bool) -> None:
        self.asked += 1
        self.new += new

    def send(self, packets: list[bytes], *, from_janus: bool = True, dt: float = 1 / 30) -> list[MediaFrame]:
        self.now += dt
        got = []
        for p in packets:
            got += self.gate.push(p, from_janus, self.now)
        self.out += got
        return got


def started(feed: Feed, seq: int = 1000, ts: int = 90000) -> tuple[int, int]:
    """A stream under way: a P frame (its start cannot be known: dropped), then a keyframe passed on."""
    feed.send(p_frame(seq, ts))
    got = feed.send(idr(seq + 1, ts + 3000))
    assert len(got) == 1 and got[0].key, got
    return seq + 6, ts + 6000


def payloads(packets: list[bytes]) -> list[bytes]:
    return [p[12:] for p in packets]


def in_order(frames: list[MediaFrame]) -> bool:
    return all(b.pts > a.pts for a, b in pairwise(frames))


def test_a_stream_starts_at_a_whole_keyframe_asks_for_one_and_counts_pts_from_it():
    feed = Feed()
    assert feed.send(p_frame(500, 1000)) == []  # the first frame: its start unknown
    assert feed.asked == 1
    assert feed.send(p_frame(501, 4000)) == []  # whole, but not a keyframe
    arrived = feed.now + 1 / 30
    (key,) = feed.send(idr(502, 7000))
    assert (key.pts, key.key, key.arrival) == (0, True, arrived)
    sps_pps = [b"\x00\x00\x00\x01" + bytes([0x60 | t]) + b"\xbb" * 6 for t in (7, 8)]
    assert key.data == b"".join(sps_pps) + b"\x00\x00\x00\x01\x65" + b"\xcc" * 30 * 4  # Annex-B, the IDR rebuilt
    (p,) = feed.send(p_frame(507, 10000))
    assert (p.pts, p.key, p.data) == (3000, False, b"\x00\x00\x00\x01" + single(1))
    c = feed.gate.snapshot()
    assert (c.dropped_frames, c.rejected, c.lost, c.frames) == (0, 0, 0, 2)  # the wait at the start is not a drop


def test_a_keyframe_that_opens_with_its_sps_needs_no_predecessor():
    """Janus forwards from a publisher's first packet: their first keyframe is recorded; after a lost marker,
    a keyframe is recognised by its start, not only by the packet before it."""
    feed = Feed()
    assert [f.pts for f in feed.send(idr(20, 0))] == [0]
    feed.send([rtp(25, 3000, single(1))])  # its marker packet (26) is lost
    assert feed.send(idr(27, 6000)) == []  # held while 26 could still come
    assert [f.pts for f in feed.send(p_frame(32, 9000))] == [6000, 9000]  # a second whole frame: 26 is lost
    c = feed.gate.snapshot()
    assert (c.frames, c.incomplete_frames, c.skipped_frames, c.lost) == (3, 1, 0, 1), c
    # a lone IDR fragment run without its SPS is no such start
    feed2 = Feed()
    assert feed2.send(idr(20, 0)[1:]) == []


def test_a_packet_lost_in_the_middle_of_a_keyframe_drops_it_whole_and_waits_for_the_next_keyframe():
    feed = Feed()
    seq, ts = started(feed)
    packets = idr(seq, ts)
    del packets[2]  # a fragment in the middle
    assert feed.send(packets) == []
    asked = feed.asked
    assert feed.send(p_frame(seq + 5, ts + 3000)) == []  # decides the keyframe (incomplete): dropped
    assert feed.send(p_frame(seq + 6, ts + 6000)) == []  # refers to the lost one: skipped
    assert feed.asked > asked and feed.new == 1  # this loss: asked at once (the start: its caller knows)
    assert len(feed.send(idr(seq + 7, ts + 9000))) == 1
    feed.send(p_frame(seq + 12, ts + 12000))
    c = feed.gate.snapshot()
    assert (c.incomplete_frames, c.dropped_frames, c.lost) == (1, 3, 1), c
    assert in_order(feed.out) and [f.pts for f in feed.out][-2:] == [12000, 15000]  # the stream's own spacing


def test_a_missing_fu_a_end_is_an_incomplete_frame_even_when_the_numbers_run_on():
    feed = Feed()
    seq, ts = started(feed)
    # an IDR fragmented from start to a middle piece, then a whole slice with the marker: the end never came
    packets = [rtp(seq, ts, fu_a(5, start=True)), rtp(seq + 1, ts, fu_a(5)), rtp(seq + 2, ts, single(5), marker=True)]
    assert feed.send(packets) == []
    feed.send(p_frame(seq + 3, ts + 3000))
    assert feed.gate.snapshot().incomplete_frames == 0  # a late packet could still make it whole: not decided
    feed.send(p_frame(seq + 4, ts + 6000))
    c = feed.gate.snapshot()
    assert (c.incomplete_frames, c.skipped_frames, c.frames) == (1, 2, 1), c  # nothing passed after the keyframe


def test_a_lost_marker_drops_that_frame_and_the_next_one_whose_start_is_unknown():
    feed = Feed()
    seq, ts = started(feed)
    a = [rtp(seq, ts, single(1)), rtp(seq + 1, ts, single(1))]  # its marker packet (seq + 2) is lost
    assert feed.send(a) == []
    assert feed.send(p_frame(seq + 3, ts + 3000)) == []  # whole, but where it starts cannot be known
    for i in range(3):
        assert feed.send(p_frame(seq + 4 + i, ts + 6000 + 3000 * i)) == []
    c = feed.gate.snapshot()
    assert c.incomplete_frames == 2 and c.dropped_frames == 5 and c.lost == 1, c
    assert feed.gate.waiting


def test_reordering_within_a_frame_and_across_one_boundary_is_put_right():
    feed = Feed()
    seq, ts = started(feed)
    key = idr(seq, ts)
    nxt = p_frame(seq + 5, ts + 3000)
    order = [key[0], key[2], key[1], nxt[0], key[4], key[3]]  # the next frame's packet before this one's end
    got = feed.send(order)
    assert [f.data for f in got] == [h264(payloads(key)), h264(payloads(nxt))]
    assert [f.pts for f in got] == [3000, 6000]
    assert feed.gate.snapshot().dropped_frames == 0


def test_a_late_or_doubled_packet_is_not_passed_twice():
    feed = Feed()
    seq, ts = started(feed)
    frame = p_frame(seq, ts)
    assert len(feed.send(frame)) == 1
    assert feed.send(frame) == []
    assert feed.send(p_frame(seq - 3, ts - 3000)) == []  # from a frame already decided
    assert feed.gate.snapshot().rejected == 2


def test_only_the_forwarders_ssrc_payload_type_and_address_get_in():
    feed = Feed()
    seq, ts = started(feed)
    assert feed.send(p_frame(seq, ts), from_janus=False) == []  # right SSRC, wrong address
    assert feed.send([rtp(seq, ts, single(5), marker=True, ssrc=0xBAD)]) == []  # Janus's address, foreign SSRC
    assert feed.send([rtp(seq, ts, single(5), marker=True, pt=111)]) == []
    assert feed.send([struct.pack("!BBHI", 0x81, 203, 1, SSRC)]) == []  # RTCP BYE on the RTP port
    assert feed.send([b"\x00garbage"]) == []
    assert len(feed.send(p_frame(seq, ts))) == 1  # the stream goes on as if nothing happened
    assert feed.gate.snapshot().rejected == 5
    assert feed.gate.rejections == {"source": 1, "ssrc": 1, "payloadType": 1, "notRtp": 2}


def test_without_a_known_ssrc_the_first_packet_from_janus_sets_it():
    feed = Feed(ssrc=None)
    feed.send(p_frame(1, 0), from_janus=False)  # a stranger first: no lock on theirs
    feed.send(p_frame(7, 0))
    assert feed.gate.guard.ssrc == SSRC
    assert feed.send([rtp(8, 3000, single(1), marker=True, ssrc=77)]) == []


def test_a_far_future_timestamp_is_rejected_but_a_pause_of_the_sender_is_not():
    feed = Feed()
    seq, ts = started(feed)
    assert feed.send(p_frame(seq, ts + 90000 * 3600)) == []  # an hour ahead, a frame's time later
    assert feed.gate.rejections == {"timestamp": 1}
    assert feed.send(p_frame(seq, ts - 90000 * 60)) == []  # a minute in the past
    assert len(feed.send(p_frame(seq, ts))) == 1
    # the sender was quiet for 30 s (a camera switched off): its timestamps moved on as much as the clock did
    assert feed.send(idr(seq + 1, ts + 90000 * 30), dt=30.0)
    assert feed.send(p_frame(seq + 6, ts + int(90000 * (30 + AHEAD_SLACK + 1)))) == []


def test_sequence_numbers_and_timestamps_wrap_around():
    feed = Feed()
    seq, ts = started(feed, seq=65528, ts=0xFFFFFFFF - 12000)
    got = []
    for i in range(4):
        got += feed.send(p_frame(seq + i, ts + 3000 * i))
    got += feed.send(idr(seq + 4, ts + 12000))
    assert len(got) == 5 and feed.gate.snapshot().dropped_frames == 0
    assert [f.pts for f in got] == [3000 + 3000 * i for i in range(5)]  # on past the timestamps' wrap


def test_audio_pts_run_on_past_the_timestamps_wrap():
    gate = StreamGate("opus", 48000, payload_type=111, ssrc=SSRC)
    start = 0xFFFFFFFF - 960 * 3
    pts = [f.pts for i in range(8) for f in gate.push(rtp(i, start + i * 960, b"\xf8", pt=111), True, i * 0.02)]
    assert pts == [960 * i for i in range(8)]


def test_leaving_in_the_middle_of_a_keyframe_passes_none_of_it():
    feed = Feed()
    seq, ts = started(feed)
    assert len(feed.send(p_frame(seq, ts))) == 1
    assert feed.send(idr(seq + 1, ts + 3000, fragments=8)[:3]) == []  # the participant leaves here
    feed.gate.finish()
    c = feed.gate.snapshot()
    assert c.incomplete_frames == 1 and c.frames == 2


def test_audio_passes_packet_by_packet_in_order_with_its_timestamps_moved_away_from_zero():
    gate = StreamGate("opus", 48000, payload_type=111, ssrc=SSRC)
    out = []
    for seq, ts in [(10, 0), (11, 960), (13, 2880), (12, 1920), (13, 2880), (14, 3840)]:
        out += gate.push(rtp(seq, ts, b"\xf8\xff\xfe", pt=111), True, 5.0 + ts / 48000)
    # the late 12 and the second 13 are not passed; each packet's payload is the frame, at its own arrival
    assert [f.pts for f in out] == [0, 960, 2880, 3840]
    assert [f.data for f in out] == [b"\xf8\xff\xfe"] * 4 and all(f.key for f in out)
    assert [f.arrival for f in out] == [5.0 + ts / 48000 for ts in (0, 960, 2880, 3840)]
    c = gate.snapshot()
    assert (c.frames, c.rejected, c.lost, c.dropped_frames) == (4, 2, 1, 0)  # 12 came too late to be used


def test_h264_marks():
    assert h264_marks(parse_rtp(rtp(1, 0, single(5)))) == (True, True, True)
    assert h264_marks(parse_rtp(rtp(1, 0, stap_a(7, 8, 5)))) == (True, True, True)
    assert h264_marks(parse_rtp(rtp(1, 0, fu_a(1, start=True)))) == (True, False, False)
    assert h264_marks(parse_rtp(rtp(1, 0, fu_a(5, end=True)))) == (False, True, True)


def test_a_participants_counts_add_up_over_streams_and_an_earlier_recorder():
    counts = MediaCounts({"droppedFrames": 2, "packetsRejected": 1})
    feed = Feed()
    counts.add(feed.gate)
    seq, ts = started(feed)
    feed.send(p_frame(seq + 1, ts))  # seq lost: the frame's start is unknown
    feed.send(p_frame(seq + 2, ts + 3000), from_janus=False)
    feed.gate.finish()
    assert counts.totals() == {"droppedFrames": 3, "incompleteFrames": 1, "packetsRejected": 2, "packetsLost": 1}


def test_the_gate_thread_hands_janus_frames_on_and_drops_a_strangers():
    """Real sockets: 127.0.0.2 plays Janus, 127.0.0.3 a stranger; the gate owns the public port pair."""
    import queue

    from reel_recorder.ingest.rtp import PortAllocator

    port = PortAllocator("127.0.0.1").allocate()
    relay = RtpGate("127.0.0.1", "127.0.0.2")
    gate = StreamGate("opus", 48000, payload_type=111, ssrc=SSRC)
    delivered: queue.SimpleQueue = queue.SimpleQueue()
    stream = relay.open(port, gate, delivered.put)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as janus, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            janus.bind(("127.0.0.2", 0))
            stranger.bind(("127.0.0.3", 0))
            for i in range(20):
                stranger.sendto(rtp(i, 0x7FFF0000, b"\x00", pt=111, ssrc=SSRC), ("127.0.0.1", port))
                stranger.sendto(struct.pack("!BBHI", 0x81, 203, 1, SSRC), ("127.0.0.1", port + 1))
                janus.sendto(rtp(i, i * 960, b"\xf8", pt=111), ("127.0.0.1", port))
                time.sleep(0.002)
            got: list[MediaFrame] = []
            while len(got) < 20:
                got += delivered.get(timeout=2)
    finally:
        relay.close(stream)
    assert [f.pts for f in got] == [i * 960 for i in range(20)] and {f.data for f in got} == {b"\xf8"}
    assert all(b.arrival > a.arrival for a, b in pairwise(got))  # the kernel's receive times
    assert gate.snapshot().rejected == 20 and gate.rejections == {"source": 20}
    # the ports are free again, and the thread is gone
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))


class _Documents:
    """The uploader's side of the catalog: nothing is stored here."""

    def segment_closed(self, *a, **k): ...
    def playlist_updated(self, *a, **k): ...
    def manifest_updated(self, *a, **k): ...


def test_a_participants_counts_reach_status_and_manifest_and_survive_a_resume():
    import asyncio
    import json

    from reel_recorder.manifest import ManifestData, manifest_from_json
    from reel_recorder.output.catalog import Catalog
    from reel_recorder.participants import Participants
    from reel_recorder.room.presence import Publisher

    manifest = ManifestData(session={}, tag=None, room={}, recording_id="r", prefix="p/", started_at="t")
    catalog = Catalog(manifest, _Documents(), segment_seconds=2)
    parts = Participants(catalog, lambda *a: None)
    part = parts.start_run(Publisher(7, "alice"), [])
    feed = Feed()
    part.media.add(feed.gate)
    seq, ts = started(feed)
    feed.send(p_frame(seq + 1, ts))  # the packet before it is lost: dropped
    feed.send(p_frame(seq + 2, ts + 3000), from_janus=False)
    feed.send(p_frame(seq + 3, ts + 6000))
    feed.send(p_frame(seq + 4, ts + 9000))
    (status,) = parts.status()
    assert {k: status.get(k) for k in ("droppedFrames", "packetsRejected", "packetsLost")} == {
        "droppedFrames": 3, "packetsRejected": 1, "packetsLost": 2}, status
    asyncio.run(parts.end_run(7))
    (doc,) = json.loads(manifest.render())["participants"]
    assert {k: doc[k] for k in MediaCounts.KEYS} == {"droppedFrames": 3, "incompleteFrames": 2,
                                                     "packetsRejected": 1, "packetsLost": 2}
    # a recorder that resumes the recording counts on from there
    (record,) = manifest_from_json(manifest.render()).participants
    assert MediaCounts(record.counts).totals() == {k: doc[k] for k in MediaCounts.KEYS}
