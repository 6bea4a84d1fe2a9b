"""A run's end (a stop, a pause) is one instant for every stream, also while a sender's video runs late against
its audio (ingest/cut.py): the recorder waits, briefly, for the video captured before the end."""

from __future__ import annotations

import time

from tests.support.analyze import audio_gaps, av_offsets, read_participant, recording_folders
from tests.support.ingests import INGESTS

FPS = 30
LAG = 0.4  # s: the publisher's video, from media time 3 s on, reaches its encoder this late (its audio does not)


def _lagging_publisher(run, room, publisher, display: str):
    run.wait_event("joined", timeout=30)
    p = publisher(room, display=display, duration=60, flash_beep=True, video_lag=f"{LAG}:3")
    p.wait_event("published", timeout=60)
    return p


def _ends_together(d) -> float:
    """Where the last video frame ends against the end of the audio (s; negative: the video ends first)."""
    return d.video_times[-1] + 1 / FPS - d.audio_spans[-1][1]


@INGESTS
def test_a_stop_ends_audio_and_video_together_while_the_video_runs_late(record, room, publisher, ingest):
    run = record(room, recording={"maxIdleSeconds": 60, **ingest})
    _lagging_publisher(run, room, publisher, "lena")
    time.sleep(8)
    t0 = time.monotonic()
    run.terminate()
    status = run.wait(60)
    assert time.monotonic() - t0 < 10
    assert status["stopReason"] == "Requested" and status["phase"] == "Completed", status
    (folder,) = recording_folders(run.output).values()
    _info, d = read_participant(folder)
    assert d.decode_errors == 0
    # the late video is placed by its own timestamps: in sync with its audio, before and after it fell behind
    offsets = av_offsets(d.flashes, d.beeps, d.video_times)
    assert len(offsets) >= 5 and max(abs(o) for o in offsets) <= 0.020, offsets
    # the stop: the video captured before it is recorded, the audio after it is not (without the wait the video
    # ended LAG before the audio)
    assert abs(_ends_together(d)) < 0.1, (d.audio_spans[-1], d.video_times[-1])
    assert not audio_gaps(d.audio_spans)


def test_a_pause_ends_audio_and_video_together_while_the_video_runs_late(record, room, publisher):
    run = record(room, recording={"maxIdleSeconds": 60, "ingest": "forward"})
    _lagging_publisher(run, room, publisher, "milo")
    time.sleep(7)
    run.pause()
    run.wait_event("paused", timeout=10)
    time.sleep(3)
    run.resume()
    run.wait_event("resumed", timeout=10)
    time.sleep(4)
    run.terminate()
    status = run.wait(60)
    assert status["stopReason"] == "Requested" and status["phase"] == "Completed", status
    (folder,) = recording_folders(run.output).values()
    info, d = read_participant(folder)
    assert d.decode_errors == 0 and sum(1 for _, _, disc in info.entries if disc) == 1, info.entries
    # the first run's end: the last video frame before the video's hole, the last audio before the audio's
    video_end = _before_the_hole([(t, t + 1 / FPS) for t in d.video_times])
    audio_end = _before_the_hole(d.audio_spans)
    assert abs(video_end - audio_end) < 0.1, (video_end, audio_end)
    assert abs(_ends_together(d)) < 0.1, (d.audio_spans[-1], d.video_times[-1])


def _before_the_hole(spans: list[tuple[float, float]]) -> float:
    """The end of the last span before the longest hole between spans."""
    where, _length = max(audio_gaps(spans), key=lambda gap: gap[1])
    return where
