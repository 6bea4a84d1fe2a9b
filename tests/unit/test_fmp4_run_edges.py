"""fMP4 runs leave no hole in a player's buffer: both tracks of each run start and end together (output/fmp4.py,
"A run's edges"). Seen with hls.js in Chromium: a rejoin whose sound ended one audio frame (21 ms) before its
picture left a hole in the buffer at the discontinuity, and a recording whose sound ended so stalled 60 ms before
its end (tests/integration/test_hls_browser.py)."""

from __future__ import annotations

import itertools

import pytest
from tests.support.analyze import decode_segments
from tests.support.fmp4_spans import track_spans
from tests.support.packets import participant_media

from reel_recorder.output.formats import FMP4, segment_format
from reel_recorder.output.writer import ParticipantWriter

SECONDS = 3
# (audio shift, video shift, seconds of sound missing at the run's end, how much later the sound arrives than
# the pictures of its time), seconds
CASES = {
    "picture-first-sound-ends-early": (0.012, 0.0, 0.021, 0.0),  # as recorded from Janus in the stalled run
    "sound-first-by-a-frame": (0.0, 0.009, 0.0, 0.0),
    "picture-late-by-300ms": (0.0, 0.3, 0.0, 0.0),  # the first keyframe after the PLI
    "sound-stops-early": (0.0, 0.0, 0.4, 0.0),
    # the sound starts with the picture but arrives a little later (AAC's encoder then hands out its first frame,
    # which starts before the picture, after the second picture was given): a rejoin in CI, found again by
    # varying the arrival order
    "sound-arrives-after-two-pictures": (0.0, 0.0, 0.0, 0.07),
    # each stream's aligner hands out its first 0.5 s at once: the sound's batch can come after the pictures'
    # (a rejoin under load, measured: the first sound given after 16 pictures)
    "sound-arrives-after-half-a-second-of-pictures": (0.0, 0.0, 0.0, 0.6),
}


def _record(tmp_path, audio_codec, audio_shift, video_shift, cut_sound, sound_arrives_later):
    segments = []
    writer = ParticipantWriter("fay_6", tmp_path, segment_seconds=2, on_segment=segments.append,
                               segment_format=segment_format(FMP4, audio_codec), mp4=True)
    media = participant_media(SECONDS)
    for offset in (1.0, 7.0):  # two runs: a leave (pause), a rejoin after a discontinuity
        timed = []
        for kind, packet, t in media:
            if kind == "audio" and t >= SECONDS - cut_sound:
                continue
            t += offset + (audio_shift if kind == "audio" else video_shift)
            timed.append((t + (sound_arrives_later if kind == "audio" else 0.0), kind, packet, t))
        for _arrival, kind, packet, t in sorted(timed, key=lambda m: m[0]):
            getattr(writer, kind)(packet, t)
        writer.pause()
    writer.close()
    return segments


@pytest.mark.parametrize("codec", ["opus", "aac"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_runs_tracks_start_and_end_together(tmp_path, codec, case):
    segments = _record(tmp_path, codec, *CASES[case])
    folder = tmp_path / "fay_6"
    runs, run = [], []
    for s in segments:
        if s.discontinuity and run:
            runs.append(run)
            run = []
        run.append(s)
    runs.append(run)
    assert len(runs) == 2, [s.name for s in segments]
    for run in runs:
        first, last = run[0], run[-1]
        spans = track_spans((folder / first.name).read_bytes(), (folder / first.init.name).read_bytes())
        assert abs(spans["video"][0] - spans["audio"][0]) < 0.0005, (case, first, spans)
        assert abs(spans["video"][0] - first.start) < 0.0005, (case, first, spans)  # where the playlist puts it
        spans = track_spans((folder / last.name).read_bytes(), (folder / last.init.name).read_bytes())
        assert abs(spans["video"][1] - spans["audio"][1]) < 0.0005, (case, last, spans)
        assert abs(spans["video"][1] - (last.start + last.duration)) < 0.0005, (case, last, spans)
        for a, b in itertools.pairwise(run):  # and within a run the segments tile the timeline, as before
            assert abs(a.start + a.duration - b.start) < 0.0005
    # nothing recorded is lost: every picture decodes; the sound is all there, plus at most one silent frame at
    # each edge of each run (an AAC frame: 1024 samples), AAC's priming
    paths = []
    for s in segments:
        path = tmp_path / f"whole_{s.index}.mp4"
        path.write_bytes((folder / s.init.name).read_bytes() + (folder / s.name).read_bytes())
        paths.append(path)
    decoded = decode_segments(paths)
    frames, samples, errors = decoded.video_frames, decoded.audio_samples, decoded.decode_errors
    sent = 2 * round((SECONDS - CASES[case][2]) * 48000)
    assert errors == 0 and frames == 2 * SECONDS * 15
    assert sent - 2 * 1024 <= samples, (samples, sent)
    assert samples <= 2 * (round((runs[0][-1].start + runs[0][-1].duration - runs[0][0].start) * 48000) + 2048), \
        (samples, sent)  # no more sound than the run lasts (+ one frame of decoder output at each end)
