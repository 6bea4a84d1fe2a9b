"""The MP4 of a resumed recording, built from its stored TS segments (output/mp4.py mp4_from_segments): the real
HLS writer records two runs with a gap between them (a lost recorder and its replacement), the MP4 built from
both runs' segments holds all their media on the recording's timeline, the gap included."""

from __future__ import annotations

import hashlib
import itertools

import av
from tests.support.packets import participant_media

from reel_recorder.output.mp4 import mp4_from_segments
from reel_recorder.output.writer import ParticipantWriter

FPS = 15


def _record(writer: ParticipantWriter, media, offset: float) -> None:
    for kind, packet, t in media:
        getattr(writer, kind)(packet, t + offset)
    writer.close(hand_over_mp4=False)


def test_the_mp4_of_a_resumed_recording_covers_both_runs_with_the_gap(tmp_path):
    segments = []
    first = ParticipantWriter("alice_1", tmp_path / "run1", segment_seconds=2, on_segment=segments.append)
    _record(first, participant_media(5, fps=FPS, gop=FPS), offset=0.0)
    n_first = len(segments)
    second = ParticipantWriter("alice_1", tmp_path / "run2", segment_seconds=2, on_segment=segments.append,
                               first_index=n_first + 1)  # the open segment at the loss is never reused
    # the replacement records again 4 s after the first run ended
    _record(second, participant_media(5, fps=FPS, gop=FPS), offset=9.0)
    assert n_first >= 2 and len(segments) > n_first

    info, error = mp4_from_segments(tmp_path / "recording.mp4", (s.path.read_bytes() for s in segments))
    assert error is None and info is not None
    assert info.sha256 == hashlib.sha256((tmp_path / "recording.mp4").read_bytes()).hexdigest()
    assert 13.5 < info.duration < 14.5, info.duration  # 0 .. 14 s on the recording's timeline
    times, samples = [], 0
    with av.open(str(tmp_path / "recording.mp4")) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
        for frame in c.decode(c.streams.video[0], c.streams.audio[0]):
            if isinstance(frame, av.VideoFrame):
                times.append(float(frame.pts * frame.time_base))
            else:
                samples += frame.samples
    assert abs(len(times) - 2 * 5 * FPS) <= 2, len(times)  # every frame of both runs
    assert abs(samples - 2 * 5 * 48000) <= 4096, samples
    gaps = [b - a for a, b in itertools.pairwise(sorted(times)) if b - a > 1.0]
    assert len(gaps) == 1 and 3.5 < gaps[0] < 4.5, gaps  # the interruption stays a gap


def test_no_media_gives_no_mp4_and_an_unreadable_segment_an_error(tmp_path):
    assert mp4_from_segments(tmp_path / "a.mp4", []) == (None, None)
    info, error = mp4_from_segments(tmp_path / "b.mp4", [b"\x00" * 100])
    assert info is None and error
