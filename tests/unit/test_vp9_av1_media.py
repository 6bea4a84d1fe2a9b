"""VP9 and AV1 in fMP4 without a network: their bitstream marks (media/vp9.py, media/av1.py), which recordings take
them (outputs.plan_streams), the writer copying them into CMAF segments (output/writer.py, output/video_track.py)
and the silent audio frames that pad a run's sound (output/silence.py)."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest

from reel_recorder.media import av1, vp9
from reel_recorder.output.formats import FMP4, segment_format
from reel_recorder.output.mp4 import mp4_from_segments
from reel_recorder.output.silence import silent_frame
from reel_recorder.output.writer import ParticipantWriter
from reel_recorder.outputs import plan_streams
from reel_recorder.room.presence import PublishedStream

ENCODERS = {"vp9": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}),
            "av1": ("libsvtav1", {"preset": "12", "svtav1-params": "pred-struct=1:lp=1"})}
DECODERS = {"vp9": "vp9", "av1": "libdav1d"}


def encode(codec: str, sizes: list[tuple[int, int]], frames: int = 20, gop: int = 10) -> list[bytes]:
    """``frames`` pictures per picture size, a keyframe every ``gop``; the packets' bytes."""
    out = []
    for width, height in sizes:
        name, options = ENCODERS[codec]
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base, ctx.gop_size = width, height, "yuv420p", Fraction(1, 30), gop
        ctx.options = options
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), (i * 11) % 255, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = i
            out += [bytes(p) for p in ctx.encode(frame)]
        out += [bytes(p) for p in ctx.encode(None)]
    return out


def test_vp9_key_frames_and_their_picture_size_are_read_from_the_frame_header():
    packets = encode("vp9", [(352, 288)], frames=12, gop=5)
    keys = [i for i, p in enumerate(packets) if vp9.is_keyframe(p)]
    assert keys == [0, 5, 10]
    assert {vp9.picture_size(packets[i]) for i in keys} == {(352, 288)}
    assert vp9.picture_size(packets[1]) is None and not vp9.is_keyframe(b"\x00\x01") and not vp9.is_keyframe(b"")


def test_av1_temporal_units_with_a_sequence_header_are_keyframes():
    packets = encode("av1", [(320, 240)], frames=12, gop=6)
    headers = [av1.sequence_header(p) for p in packets]
    assert [i for i, h in enumerate(headers) if h] == [0, 6]
    assert headers[0] == headers[6] and av1.obus(headers[0])[0][0] == av1.OBU_SEQUENCE_HEADER
    assert av1.sequence_header(b"\x12\x00") is None  # a temporal delimiter only


def _stream(kind: str, codec: str) -> PublishedStream:
    return PublishedStream(kind=kind, mid="0" if kind == "video" else "1", codec=codec)


@pytest.mark.parametrize("codec", ["vp9", "av1"])
def test_vp9_and_av1_are_recorded_in_fmp4_and_skipped_in_ts_with_what_to_do(codec):
    streams = [_stream("video", codec), _stream("audio", "opus")]
    fmp4 = plan_streams(streams, "individual", "fmp4")
    assert fmp4.skipped == [] and fmp4.own == {"video", "audio"}
    ts = plan_streams(streams, "individual", "ts")
    [skip] = ts.skipped
    assert skip["kind"] == "video" and skip["reason"] == "CodecUnsupported" and "segmentFormat: fmp4" in skip["message"]
    assert [s.kind for s in ts.forward] == ["audio"]
    assert [s["kind"] for s in plan_streams(streams, "both", "fmp4").skipped] == ["video"]  # the composite: H.264/VP8


@pytest.mark.parametrize("codec", ["vp9", "av1"])
def test_the_writer_copies_vp9_and_av1_into_cmaf_segments_with_a_new_init_at_a_new_size(tmp_path, codec):
    packets = encode(codec, [(320, 240), (640, 360)], frames=20, gop=10)
    segments = []
    writer = ParticipantWriter("ann_1", tmp_path, segment_seconds=0.3, on_segment=segments.append,
                               segment_format=segment_format(FMP4), video_codec=codec, expect_audio=False, mp4=True)
    for i, data in enumerate(packets):
        writer.video(av.Packet(data), 1.0 + i / 30)
    writer.close()
    folder = tmp_path / "ann_1"
    inits = sorted({s.init.name for s in segments})
    assert len(inits) == 2, [(s.name, s.init.name) for s in segments]  # the new picture size: its own init
    if codec == "vp9":  # the vpcC box states profile, level, bit depth: browsers refuse an empty one
        data = (folder / inits[0]).read_bytes()
        at = data.find(b"vpcC")
        assert int.from_bytes(data[at - 4:at], "big") > 12, data[at - 4:at + 16].hex()
    frames, sizes = 0, set()
    for s in segments:
        with av.open(io.BytesIO((folder / s.init.name).read_bytes() + (folder / s.name).read_bytes())) as c:
            assert c.streams.video[0].codec_context.name == DECODERS[codec]
            for packet in c.demux(c.streams.video[0]):
                for frame in packet.decode():
                    frames += 1
                    sizes.add((frame.width, frame.height))
    assert frames == 40 and sizes == {(320, 240), (640, 360)}
    with av.open(str(folder / "recording.mp4")) as c:  # the MP4 output too
        assert c.streams.video[0].codec_context.name == DECODERS[codec]
    # ... and the MP4 a resumed recording builds from the stored segments (each after its init)
    info, error = mp4_from_segments(tmp_path / "rebuilt.mp4", [
        (folder / s.init.name).read_bytes() + (folder / s.name).read_bytes() for s in segments])
    assert error is None and info is not None
    with av.open(str(tmp_path / "rebuilt.mp4")) as c:
        assert c.streams.video[0].codec_context.name == DECODERS[codec]
        assert sum(len(p.decode()) for p in c.demux(c.streams.video[0])) == 40


@pytest.mark.parametrize("codec,channels,samples", [("libopus", 2, 960), ("opus", 2, 960), ("aac", 1, 1024)])
def test_a_silent_frame_decodes_to_silence(codec, channels, samples):
    frame = silent_frame(codec, channels)
    assert frame.samples == samples
    decoder = av.CodecContext.create("opus" if "opus" in codec else "aac", "r")
    if codec == "aac":  # raw AAC needs its AudioSpecificConfig: the recording's (output/audio.py)
        from reel_recorder.output.audio import OpusToAac
        decoder = av.CodecContext.create("aac", "r")
        decoder.extradata = OpusToAac().template.codec_context.extradata
    else:
        decoder.sample_rate, decoder.layout = 48000, "stereo"
    out = decoder.decode(av.Packet(frame.data)) + decoder.decode(av.Packet(frame.data))
    pcm = np.concatenate([f.to_ndarray().ravel() for f in out])
    assert pcm.size and np.abs(pcm).max() < 1e-3
    with pytest.raises(ValueError):
        silent_frame("pcm_s16le", 1)
