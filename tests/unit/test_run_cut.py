"""A run's end is one instant for every stream (clock.py ``StreamAligner.cut``, ingest/cut.py ``cut_streams``)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from reel_recorder.clock import RecordingClock, StreamAligner
from reel_recorder.ingest.cut import cut_streams


def _placed(offset: float = 10.0) -> StreamAligner:
    al = StreamAligner(window=0.0, min_packets=1)
    al.push("first", 0.0, offset)  # the window closes at once: offset = arrival - media time
    return al


def test_nothing_at_or_after_the_cut_is_released():
    al = _placed()
    al.cut = 10.1
    assert al.push("before", 0.06, 10.06) == [("before", pytest.approx(10.06))]
    assert al.push("at", 0.1, 10.1) == []
    assert al.push("after", 0.12, 10.12) == []
    assert al.last == pytest.approx(10.12)  # what was seen, cut or not


def test_what_the_window_holds_is_cut_when_released():
    al = StreamAligner(window=10)
    al.push("a", 0.0, 5.0)
    al.push("b", 0.5, 5.5)
    al.cut = 5.2
    assert al.flush() == [("a", 5.0)]


def test_a_stream_is_behind_while_it_flows_and_has_not_reached_the_cut():
    al = _placed()
    al.push("late video", 0.3, 10.7)  # placed at 10.3, arrived at 10.7: running 0.4 s late
    assert al.behind(cut=10.5, now=10.72, idle=0.5)
    assert not al.behind(cut=10.5, now=11.3, idle=0.5)  # nothing arrived for 0.58 s: not flowing
    al.push("past the cut", 0.5, 10.9)
    assert not al.behind(cut=10.5, now=10.9, idle=0.5)
    assert not StreamAligner(window=10).behind(cut=1.0, now=1.0, idle=0.5)  # nothing placed yet


def test_cut_streams_waits_for_the_late_stream_and_no_longer():
    clock = RecordingClock()
    audio, video = _placed(clock.now()), _placed(clock.now())
    video.push("frame", -0.4, clock.now())  # the video runs 0.4 s late: its latest frame is 0.4 s back
    stop = threading.Event()

    def sender():  # the video keeps coming, 0.4 s late, a frame each 20 ms
        media = -0.4
        while not stop.wait(0.02):
            media += 0.02
            video.push("frame", media, clock.now())
    thread = threading.Thread(target=sender)
    thread.start()
    try:
        cut = asyncio.run(cut_streams([audio, video], clock, wait=2.0, idle=0.5))
    finally:
        stop.set()
        thread.join()
    waited = clock.now() - cut
    assert 0.35 < waited < 1.0, waited  # until the video reached the cut: ~0.4 s
    assert audio.cut == video.cut == cut and video.last >= cut


def test_cut_streams_gives_up_after_its_wait():
    clock = RecordingClock()
    video = _placed(clock.now())

    def trickle():  # frames keep arriving, but never reach the cut
        for _ in range(40):
            time.sleep(0.01)
            video.push("frame", -5.0, clock.now())
    thread = threading.Thread(target=trickle)
    thread.start()
    cut = asyncio.run(cut_streams([video], clock, wait=0.15, idle=0.5))
    done = clock.now()
    thread.join()
    assert 0.15 <= done - cut < 0.3


def test_cut_streams_does_not_wait_for_a_stream_that_stopped_flowing():
    clock = RecordingClock()
    video = _placed(clock.now() - 2.0)  # its last frame came 2 s ago (muted, stalled, left)
    t0 = time.monotonic()
    asyncio.run(cut_streams([video], clock, wait=1.0, idle=0.5))
    assert time.monotonic() - t0 < 0.1
