"""The WebRTC ingest's pieces without a network (issue 17): which ingest a session gets, the aiortc hooks it relies
on, the stand-in decoder's packets, the loss count, and a participant whose connection fails being skipped."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiortc.rtcrtpreceiver as aiortc_receiver
import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from tests.support.fake_room import FakeRoom, make_recorder, publisher, run, until

from reel_api.models import Ingest
from reel_api.vocabulary import SkipReason
from reel_recorder.clock import RecordingClock
from reel_recorder.ingest import choice, passthrough
from reel_recorder.ingest.choice import choose_ingest
from reel_recorder.ingest.forward import ForwardFailed
from reel_recorder.ingest.pump import FramePump, StreamCounts
from reel_recorder.room.credentials import RoomCredentials
from reel_recorder.settings import Settings, SettingsError

IDR = b"\x00\x00\x00\x01\x67\x42\x00\x1f" + b"\x00\x00\x00\x01\x68\xce" + b"\x00\x00\x01\x65\x88\x84"
P_FRAME = b"\x00\x00\x00\x01\x41\x9a\x02"


# -- which ingest (pure) -----------------------------------------------------------------------------------------

def test_the_recorder_knows_every_ingest_the_api_offers():
    assert {choice.FORWARD, choice.WEBRTC, choice.AUTO} == {i.value for i in Ingest}


@pytest.mark.parametrize("requested,creds,chosen", [
    ("auto", RoomCredentials(), "webrtc"),
    ("auto", RoomCredentials(pin="1234", token="t"), "webrtc"),  # joining needs no forwarding credentials
    ("auto", RoomCredentials(secret="s"), "forward"),
    ("auto", RoomCredentials(admin_key="k"), "forward"),
    ("forward", RoomCredentials(), "forward"),  # asked for: tried (Janus may not lock forwarding)
    ("webrtc", RoomCredentials(secret="s", admin_key="k"), "webrtc"),
])
def test_auto_forwards_when_forwarding_credentials_are_given_else_subscribes(requested, creds, chosen):
    assert choose_ingest(requested, creds) == chosen


def test_an_unknown_ingest_is_refused():
    with pytest.raises(ValueError):
        choose_ingest("carrier-pigeon", RoomCredentials())


def test_the_connect_timeout_is_a_setting():
    assert Settings.from_env({}).webrtc_connect_seconds == 10.0
    assert Settings.from_env({"REEL_WEBRTC_CONNECT_SECONDS": "2.5"}).webrtc_connect_seconds == 2.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(SettingsError, match="REEL_WEBRTC_CONNECT_SECONDS"):
            Settings.from_env({"REEL_WEBRTC_CONNECT_SECONDS": bad})


def test_ice_servers_are_the_sessions_with_the_turn_credentials_for_turn_only():
    from reel_recorder.ingest.webrtc import ice_servers

    stun, turn = ice_servers(["stun:stun.example.com:3478", "turns:turn.example.com:443"], "u", "p")
    assert (stun.urls, stun.username, stun.credential) == ("stun:stun.example.com:3478", None, None)
    assert (turn.urls, turn.username, turn.credential) == ("turns:turn.example.com:443", "u", "p")
    assert ice_servers([], "u", "p") == []


# -- aiortc's private names (pinned aiortc) ------------------------------------------------------------------------

def test_aiortc_still_has_the_names_the_passthrough_relies_on():
    """Fails loudly when an aiortc upgrade moves them: the receiver's decoder lookup (module-level, at run time),
    its RTP entry point (wrapped per receiver: arrival times) and its PLI sender (keyframe requests)."""
    import inspect

    source = inspect.getsource(aiortc_receiver.decoder_worker)
    assert "get_decoder(codec)" in source and "decoder.decode(encoded_frame)" in source
    params = list(inspect.signature(aiortc_receiver.RTCRtpReceiver._handle_rtp_packet).parameters)
    assert params == ["self", "packet", "arrival_time_ms"]
    assert list(inspect.signature(aiortc_receiver.RTCRtpReceiver._send_rtcp_pli).parameters) == ["self", "media_ssrc"]
    assert "_handle_rtp_packet(packet, arrival_time_ms=" in inspect.getsource(
        __import__("aiortc.rtcdtlstransport", fromlist=["x"]))


def test_install_puts_the_stand_in_where_aiortc_looks_it_up():
    passthrough.install()
    assert aiortc_receiver.get_decoder is passthrough.get_decoder
    h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=96)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    pcmu = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, payloadType=0)
    assert isinstance(aiortc_receiver.get_decoder(h264), passthrough.PassthroughDecoder)
    assert isinstance(aiortc_receiver.get_decoder(opus), passthrough.PassthroughDecoder)
    assert not isinstance(aiortc_receiver.get_decoder(pcmu), passthrough.PassthroughDecoder)  # aiortc's own


def test_the_stand_in_returns_the_frame_as_a_packet_not_decoded():
    decoder = passthrough.PassthroughDecoder("h264")
    [key] = decoder.decode(SimpleNamespace(data=IDR, timestamp=3000))
    assert bytes(key.packet) == IDR and key.packet.pts == 3000 and key.packet.is_keyframe
    assert key.packet.time_base.denominator == 90000 and key.timestamp == 3000
    [delta] = decoder.decode(SimpleNamespace(data=P_FRAME, timestamp=6000))
    assert not delta.packet.is_keyframe
    assert decoder.decode(SimpleNamespace(data=b"", timestamp=9000)) == []
    [sound] = passthrough.PassthroughDecoder("opus").decode(SimpleNamespace(data=b"\xfc\x01\x02", timestamp=960))
    assert sound.packet.pts == 960 and sound.packet.time_base.denominator == 48000
    assert passthrough.is_keyframe("vp8", b"\x10\x02") and not passthrough.is_keyframe("vp8", b"\x11\x02")


# -- the loss count ------------------------------------------------------------------------------------------------

def _rtp(seq, ssrc=7, ts=0):
    return SimpleNamespace(sequence_number=seq, ssrc=ssrc, timestamp=ts)


def test_packets_lost_are_the_sequence_numbers_never_received_less_the_retransmissions():
    counts = StreamCounts()
    for seq in (65533, 65534, 65535, 0, 3, 4):  # wraps; 1 and 2 missing
        counts.add(_rtp(seq))
    counts.add(_rtp(2))  # late, reordered
    assert counts.snapshot().lost == 1
    counts.add(_rtp(100, ssrc=8))  # a retransmission (RTX, its own SSRC) of the one still missing
    assert counts.snapshot().lost == 0 and counts.ssrc == 7


def test_the_pump_places_frames_by_the_arrival_of_their_first_packet():
    """aiortc hands a frame over late (when the next one begins; audio four packets later): the pump times each
    frame by when its first RTP packet came, as the forward path's gate does."""
    got = []

    class Receiver:
        async def _handle_rtp_packet(self, packet, arrival_time_ms):
            pass

    clock = RecordingClock(origin=0.0)
    pump = FramePump(Receiver(), "opus", lambda p, t: got.append((p.pts, t)), clock, name="t",
                     loop=asyncio.new_event_loop())
    now = iter([10.0 + 0.02 * k for k in range(40)])
    clock.now = lambda: next(now)
    receiver = pump.receiver
    for k in range(40):  # packets arrive on time, 20 ms apart, RTP timestamps from 5000
        asyncio.run(receiver._handle_rtp_packet(_rtp(k, ts=5000 + 960 * k), 0))
    pump.start()
    for k in range(40):  # ... and are handed over (much) later
        pump.put(passthrough.EncodedFrame(_packet(960 * k), 960 * k, decoded_at=99.0))
    pump.put(None)
    pump.stop()
    assert pump.error is None and len(got) == 40
    assert all(abs(t - (10.0 + 0.02 * k)) < 1e-6 for k, (_, t) in enumerate(got)), got[:3]


def _packet(pts):
    import av

    p = av.Packet(b"\xfc\x00")
    p.pts = pts
    return p


# -- a connection that does not come up ------------------------------------------------------------------------------

def test_a_participant_whose_connection_fails_is_skipped_and_the_others_go_on(tmp_path):
    room = FakeRoom([publisher(1, "alice"), publisher(2, "bob")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: recorder.participants.active_count() == 2)
        ingest.fail_later.append((2, ForwardFailed("WebRTC ... did not connect within 10 s", gone=False,
                                                   reason=SkipReason.CONNECT_FAILED)))
        await until(lambda: recorder.participants.active_count() == 1, timeout=5)
        stop.set()

    status = run(recorder, script)
    bob = next(p for p in status["participants"] if p["display"] == "bob")
    assert {s["reason"] for s in bob["skipped"]} == {SkipReason.CONNECT_FAILED}
    assert {s["kind"] for s in bob["skipped"]} == {"audio", "video"} and bob["leftAt"]
    assert ("remove", 2) in ingest.calls and ("remove", 1) not in ingest.calls
    alice = next(p for p in status["participants"] if p["display"] == "alice")
    assert not alice.get("skipped")


# -- whole frames only (frames.py, pure) ---------------------------------------------------------------------------

FU_START, FU_MIDDLE, SINGLE = b"\x7c\x85", b"\x7c\x05", b"\x41\x9a"


def _frame(tracker, seqs, ts, *, starts=True):
    from reel_recorder.ingest.frames import h264_starts

    for i, seq in enumerate(seqs):
        payload = (FU_START if starts else FU_MIDDLE) if i == 0 else FU_MIDDLE
        tracker.packet(seq % 65536, ts, i == len(seqs) - 1, h264_starts(payload))


def test_whole_frames_that_follow_each_other_are_recorded_across_the_sequence_wrap():
    from reel_recorder.ingest.frames import FrameTracker

    t = FrameTracker()
    _frame(t, [65534, 65535, 0], 3000)
    _frame(t, [1, 2], 6000)
    assert t.judge(3000, keyframe=True) and t.judge(6000, keyframe=False)
    assert (t.dropped, t.incomplete) == (0, 0)


def test_a_frame_with_a_hole_or_without_its_start_is_dropped_with_the_frames_after_it_until_a_keyframe():
    from reel_recorder.ingest.frames import FrameTracker, h264_starts

    assert h264_starts(FU_START) and not h264_starts(FU_MIDDLE) and h264_starts(SINGLE) and not h264_starts(b"")
    t = FrameTracker()
    _frame(t, [10, 11], 3000)
    _frame(t, [12, 14], 6000)  # 13 never came (the jitter buffer gave up on it)
    _frame(t, [15], 9000)
    _frame(t, [16, 17], 12000)
    assert t.judge(3000, keyframe=True)
    assert not t.judge(6000, keyframe=False)  # incomplete
    assert not t.judge(9000, keyframe=False)  # whole, but refers to what was dropped
    assert t.judge(12000, keyframe=True)  # a whole keyframe: recording goes on
    assert (t.dropped, t.incomplete) == (2, 1)
    t2 = FrameTracker()
    _frame(t2, [40, 41], 3000, starts=False)  # handed over without its first packet
    assert not t2.judge(3000, keyframe=True) and t2.incomplete == 1


def test_a_retransmission_completes_a_frame_and_a_gap_between_frames_breaks_the_chain():
    from reel_recorder.ingest.frames import FrameTracker

    t = FrameTracker()
    t.packet(20, 3000, False, True)
    t.packet(22, 3000, True, False)
    t.packet(21, 3000, False, False)  # NACKed, came back (RTX: by its original sequence number)
    t.packet(21, 3000, False, False)  # twice: counted once
    assert t.judge(3000, keyframe=True)
    _frame(t, [25, 26], 6000)  # 23-24 (a whole frame) never handed over
    assert not t.judge(6000, keyframe=False) and t.incomplete == 0 and t.dropped == 1
