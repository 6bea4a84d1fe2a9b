"""The media path alone (RTP in → RTP gate → feed → HLS out) on loopback, fed by a synthetic RTP sender instead of
Janus, wired as ForwardIngest wires it (ingest/forward.py); for each segment format (TS with AAC, fMP4 with Opus as
sent, fMP4 with AAC)."""

from __future__ import annotations

import itertools
import time

import av
import pytest
from tests.support.analyze import av_offsets, decode_segments
from tests.support.rtpsource import RtpSource

from reel_recorder.clock import RecordingClock
from reel_recorder.ingest.gate import StreamGate
from reel_recorder.ingest.relay import RtpGate
from reel_recorder.ingest.rtp import FrameFeed, KeyframeRequester
from reel_recorder.output.formats import segment_format
from reel_recorder.output.playlist import Playlist, PlaylistEntry
from reel_recorder.output.writer import ParticipantWriter

ADDR = "127.0.0.1"
FORMATS = [("ts", None), ("fmp4", "opus"), ("fmp4", "aac")]


def _playlist(folder, segments):
    """The folder's playlist, as the catalog writes it (fMP4: each segment's #EXT-X-MAP)."""
    pl = Playlist(target_duration=3, ended=True)
    for s in segments:
        init = s.init.name if s.init else None
        pl.add(PlaylistEntry(uri=s.name, key=s.name, duration=s.duration, discontinuity=s.discontinuity,
                             map_uri=init, map_key=init))
    path = folder / "index.m3u8"
    path.write_text(pl.render())
    return path


@pytest.mark.parametrize("fmt,codec", FORMATS, ids=[f"{f}-{c or 'aac'}" for f, c in FORMATS])
def test_segments_cut_at_requested_keyframes_with_av_in_sync(tmp_path, fmt, codec):
    clock = RecordingClock()
    segments = []
    requester = KeyframeRequester(ADDR, 46011, clock=clock)
    writer = ParticipantWriter("p_1", tmp_path, segment_seconds=2, on_segment=segments.append,
                            request_keyframe=requester.request, segment_format=segment_format(fmt, codec))
    gate = RtpGate(ADDR, None, now=clock.now)  # any source: the sender plays Janus
    feeds = [FrameFeed("video", 90000, writer.video, name="v"), FrameFeed("audio", 48000, writer.audio, name="a")]
    for f in feeds:
        f.start()
    gated = [gate.open(46000, StreamGate("h264", 90000, payload_type=96,
                                         request_keyframe=lambda new: requester.request(force=new)), feeds[0].put),
             gate.open(46002, StreamGate("opus", 48000, payload_type=97), feeds[1].put)]
    time.sleep(0.3)
    # a sender that never sends a keyframe unless asked (GOP longer than the test)
    src = RtpSource(ADDR, video_port=46000, audio_port=46002, duration=9, gop=100_000, pli_port=46011).start()
    src.wait(30)
    time.sleep(0.5)
    for g in gated:
        gate.close(g)
    for f in feeds:
        f.stop()
    writer.close()
    requester.close()
    assert all(f.error is None for f in feeds)

    durations = [s.duration for s in segments]
    assert len(segments) >= 4, durations
    assert all(d <= 3.0 for d in durations), durations
    assert all(d >= 1.5 for d in durations[1:-1]), durations
    assert src.keyframes_on_request >= 3
    if fmt == "ts":
        decoded = decode_segments([s.path for s in segments])
    else:  # fMP4 segments need their init segment: FFmpeg reads the playlist, as a player does
        decoded = decode_segments([_playlist(tmp_path / "p_1", segments)])
        with av.open(str(tmp_path / "p_1" / "index.m3u8")) as c:
            assert {s.type: s.codec_context.name for s in c.streams} == {"video": "h264", "audio": codec}
    assert decoded.decode_errors == 0
    assert decoded.video_frames >= src.frames_sent - 30  # at most the frames before the first keyframe
    # every sample arrives; extra: the Opus sender's final flush packet (960), AAC priming (1024) and the
    # padding of the last AAC frame (< 1024); missing: Opus as sent, the decoder's pre-skip (312), and the first
    # packet (960) when the sender's first came before the gate's port was open; fMP4: silence from the picture's
    # start and to its end, less than one audio frame each (a run's tracks start and end together: output/fmp4.py)
    padding = 2 * 1024 if fmt == "fmp4" else 0
    assert -960 - 312 <= decoded.audio_samples - src.samples_sent <= 960 + 1024 + 1023 + padding
    offsets = av_offsets(decoded.flashes, decoded.beeps, decoded.video_times)
    print(f"{fmt}-{codec or 'aac'}: A/V offsets (video - audio) {[round(float(o) * 1000, 1) for o in offsets]} ms")
    assert len(offsets) >= 6 and max(abs(o) for o in offsets) <= 0.040, offsets
    # the playlist durations tile the timeline: consecutive segments touch
    for a, b in itertools.pairwise(segments):
        assert abs(a.start + a.duration - b.start) < 1e-6
