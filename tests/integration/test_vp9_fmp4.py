"""VP9 and AV1 in fMP4 (issue 17): a participant who publishes VP9 or AV1 (a Janus "remote publisher" fed by FFmpeg's
RTP muxer: tests/support/remote_publisher.py) is recorded through Janus's RTP forwarding into CMAF segments with the
video copied (``vp09``, ``av01``); in MPEG-TS, which cannot carry them, their video is skipped with what to do, and
their sound recorded."""

from __future__ import annotations

import json

import av
import pytest
from tests.support import ffplay
from tests.support.analyze import av_offsets, read_participant, recording_folders
from tests.support.browser import missing, play_in_chromium
from tests.support.remote_publisher import RemotePublisher

SECONDS = 8


DECODERS = {"vp9": "vp9", "av1": "libdav1d"}


def _publish(janus, room, test_network, display: str, codec: str = "vp9", **kw):
    return RemotePublisher(janus, room.id, test_network.addr, codec=codec, display=display, seconds=SECONDS,
                           **kw).start()


@pytest.mark.parametrize("codec,outputs", [("vp9", ["hls"]), ("vp9", ["hls", "mp4"]), ("av1", ["hls", "mp4"])],
                         ids=["vp9", "vp9-mp4", "av1-mp4"])
def test_the_video_is_copied_into_fmp4_segments(record, make_room, janus, test_network, codec, outputs):
    room = make_room(videocodec=codec)
    run = record(room, recording={"segmentFormat": "fmp4", "segmentSeconds": 2, "outputs": outputs})
    run.wait_event("joined", timeout=30)
    sent = _publish(janus, room, test_network, "vera", codec).wait(60)
    status = run.wait(60)
    assert status["phase"] == "Completed", status
    [folder] = recording_folders(run.output).values()
    info, decoded = read_participant(folder)
    assert info.ended and decoded.decode_errors == 0, decoded.decode_messages
    with av.open(str(folder / "index.m3u8")) as c:
        assert {s.type: s.codec_context.name for s in c.streams} == {"video": DECODERS[codec], "audio": "opus"}
    assert decoded.sizes == {(320, 240)}
    # what came before the forward and its first keyframe (one a second) is not recorded; nothing after it lost
    assert sent.video_frames - 2 * 30 <= decoded.video_frames <= sent.video_frames, (decoded.video_frames, sent)
    total = sum(d for _, d, _ in info.entries)  # the media's span, both tracks (the sound may start first)
    span = (max(decoded.video_times[-1] + 1 / 30, decoded.audio_spans[-1][1])
            - min(decoded.video_times[0], decoded.audio_spans[0][0]))
    assert abs(total - span) < 0.15, (total, span)
    assert all(d <= 3.0 for _, d, _ in info.entries), info.entries  # cut at keyframes near 2 s
    offsets = av_offsets(decoded.flashes, decoded.beeps, decoded.video_times)
    print(f"{codec} fMP4: {decoded.video_frames}/{sent.video_frames} frames, {len(info.entries)} segments, "
          f"A/V offsets {[round(float(o) * 1000, 1) for o in offsets]} ms")
    assert len(offsets) >= 4 and max(abs(o) for o in offsets) <= 0.040, offsets
    manifest = json.loads(next(run.output.rglob("manifest.json")).read_text())
    [participant] = manifest["participants"]
    assert participant.get("inits") and "skipped" not in participant, participant
    why = missing()
    assert why is None, why
    result = play_in_chromium(folder)  # hls.js in Chromium, to the end
    print(f"{codec}: hls.js {result}")
    assert result.get("ended") is True and not [e for e in result["errors"] if e["fatal"]], result
    assert abs(result["currentTime"] - total) < 0.5 and result["decodedFrames"] >= decoded.video_frames - 5, result
    assert len(result["buffered"]) == 1, result["buffered"]
    why = ffplay.missing()
    assert why is None, why
    played = ffplay.play_in_ffplay(folder)
    assert played.returncode == 0 and not played.errors and played.wall > total - 1.0, played
    if "mp4" in outputs:
        with av.open(str(folder / "recording.mp4")) as c:
            assert c.streams.video[0].codec_context.name == DECODERS[codec]
            frames = sum(1 for p in c.demux(c.streams.video[0]) for _ in p.decode())
        assert abs(frames - decoded.video_frames) <= 2, (frames, decoded.video_frames)


def test_vp9_in_mpeg_ts_is_skipped_with_what_to_do(record, make_room, janus, test_network):
    room = make_room(videocodec="vp9")
    run = record(room, recording={"segmentSeconds": 2})
    run.wait_event("joined", timeout=30)
    publisher = _publish(janus, room, test_network, "walt")
    participants = run.wait_event("participants", timeout=30)["status"]["participants"]
    publisher.wait(60)
    [skip] = participants[0]["skipped"]
    assert skip["kind"] == "video" and skip["reason"] == "CodecUnsupported", skip
    assert "segmentFormat: fmp4" in skip["message"], skip
    assert run.wait(60)["phase"] == "Completed"
    [folder] = recording_folders(run.output).values()
    _info, decoded = read_participant(folder)
    assert decoded.video_frames == 0 and decoded.audio_samples > (SECONDS - 2) * 48000 and decoded.decode_errors == 0
