"""Pictures that come late are not a stalled camera (output/writer.py, ``VIDEO_STALL``). A sender's video can run
behind its sound (a busy encoder, a browser's pacer): the pictures are placed by their own timestamps, so the
sound placed at time t is written while the pictures of t are still on their way. When the sound ran more than
``VIDEO_STALL`` ahead, the writer took the camera for stopped and cut the segment on audio time; the late pictures
then started the next segment without the keyframe they need (seen in CI: a TS segment decoded on its own,
"non-existing PPS 0 referenced"). A camera that stops is still cut on audio time."""

from __future__ import annotations

from tests.support.analyze import decode_segments
from tests.support.packets import participant_media

from reel_recorder.output.formats import TS, segment_format
from reel_recorder.output.writer import VIDEO_STALL, ParticipantWriter


def _record(tmp_path, timed):
    """Give the writer ``timed`` [(arrival, kind, packet, t)] in the order they arrive; its clock is the arrival."""
    segments, now = [], [0.0]
    writer = ParticipantWriter("gus_7", tmp_path, segment_seconds=2, on_segment=segments.append,
                               segment_format=segment_format(TS, "aac"), clock=lambda: now[0])
    for arrival, kind, packet, t in sorted(timed, key=lambda m: m[0]):
        now[0] = arrival
        getattr(writer, kind)(packet, t)
    writer.close()
    return segments


def test_pictures_running_late_by_more_than_the_stall_bound_start_no_segment(tmp_path):
    media = participant_media(8, fps=30, gop=45)
    timed = []
    for kind, packet, t in media:  # from 3 s on the pictures arrive 1.3 s late (and keep coming)
        late = 1.3 if kind == "video" and t >= 3.0 else 0.0
        timed.append((t + late, kind, packet, t))
    segments = _record(tmp_path, timed)
    assert len(segments) >= 3
    for s in segments:  # each starts with a keyframe: decodable on its own, as HLS players seek
        decoded = decode_segments([tmp_path / "gus_7" / s.name])
        assert decoded.decode_errors == 0, (s.name, s.start, decoded.decode_messages[:3])
    frames = decode_segments([tmp_path / "gus_7" / s.name for s in segments]).video_frames
    assert frames == 8 * 30, frames  # no picture lost either


def test_a_camera_that_stops_is_still_cut_on_audio_time(tmp_path):
    media = participant_media(8, fps=30, gop=45)
    timed = [(t, kind, packet, t) for kind, packet, t in media if not (kind == "video" and t >= 2.5)]
    segments = _record(tmp_path, timed)
    spans = [(round(s.start, 3), round(s.duration, 3)) for s in segments]
    first, *rest = segments
    assert first.start + first.duration <= 2.5 + VIDEO_STALL + 0.05, spans  # cut once the pictures stayed away
    assert rest and all(s.duration <= 2.0 + 0.05 for s in rest), spans  # then every ~2 s of sound
