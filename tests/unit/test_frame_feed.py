"""The forward ingest's feeds (ingest/rtp.py FrameFeed, FeedPool): the gate's frames reach the sink as packets on a
thread of the feeds' pool (a participant's streams on one), placed on the recording clock by the arrival of their
first packet, in order, the alignment's window released at the end; media times equal the exact fractions
(issue 18)."""

from __future__ import annotations

import random
import threading
from fractions import Fraction

from reel_recorder.ingest.gate import MediaFrame
from reel_recorder.ingest.rtp import FeedPool, FrameFeed


def test_frames_reach_the_sink_on_the_feeds_thread_aligned_by_their_arrival():
    got: list[tuple] = []
    feed = FrameFeed("video", 90000, lambda p, t: got.append((p, t, threading.current_thread().name)), name="v")
    feed.start()
    # 30 frames a second; the third came 40 ms late (its delay is not the stream's): the least delayed sets the offset
    arrivals = [10.0 + i / 30 + (0.04 if i == 2 else 0.0) for i in range(30)]
    feed.put([MediaFrame(b"k", 0, True, arrivals[0])])
    feed.put([MediaFrame(b"p%d" % i, 3000 * i, False, arrivals[i]) for i in range(1, 30)])
    feed.put([MediaFrame(b"old", 3000 * 5, False, 20.0)])  # not after the last: dropped
    feed.stop()
    assert feed.error is None and feed.packets == 30
    assert [bytes(p) for p, _, _ in got] == [b"k"] + [b"p%d" % i for i in range(1, 30)]
    assert all(abs(t - (10.0 + i / 30)) < 1e-9 for i, (_, t, _) in enumerate(got))
    first = got[0][0]
    assert (first.pts, first.dts, first.time_base, first.is_keyframe) == (0, 0, Fraction(1, 90000), True)
    assert not got[1][0].is_keyframe
    assert {name for _, _, name in got} == {"reel-feed-0"}  # a thread of the feed's pool, not the caller's


def test_a_stream_shorter_than_the_alignment_window_is_delivered_at_the_stop():
    got = []
    feed = FrameFeed("audio", 48000, lambda p, t: got.append(t), name="a")
    feed.start()
    feed.put([MediaFrame(b"\xf8", 960 * i, True, 5.0 + 0.02 * i) for i in range(3)])
    feed.stop()
    assert got == [5.0, 5.02, 5.04]


def test_a_failing_sink_is_reported_and_the_feed_takes_nothing_more():
    def sink(p, t):
        raise OSError("disk gone")

    feed = FrameFeed("audio", 48000, sink, name="a")
    feed.start()
    feed.put([MediaFrame(b"\xf8", 960 * i, True, 0.02 * i) for i in range(40)])  # past the window
    feed.stop()
    assert isinstance(feed.error, OSError)
    queued = feed._queue.qsize()
    feed.put([MediaFrame(b"\xf8", 960 * 50, True, 1.0)])  # the gate goes on: nothing queued for a dead thread
    assert feed._queue.qsize() == queued


def test_media_times_equal_the_exact_fraction():
    rng = random.Random(18)
    for rate in (90000, 48000):
        times: list[float] = []
        feed = FrameFeed("audio", rate, lambda p, t: None, name="t")
        feed.aligner.push = lambda item, media_time, arrival, times=times: times.append(media_time) or []
        pts_values = sorted(rng.sample(range(1, 1 << 40), 200))
        for pts in pts_values:
            feed._handle(MediaFrame(b"\x01", pts, True, 0.0))
        assert times == [float(Fraction(pts, rate)) for pts in pts_values]


def test_a_participants_streams_share_a_thread_and_participants_are_spread_over_the_pool():
    pool = FeedPool(2)
    threads: dict[str, set[str]] = {}

    def sink(name):
        return lambda p, t: threads.setdefault(name, set()).add(threading.current_thread().name)

    feeds = [FrameFeed(kind, 48000, sink(f"{who}-{kind}"), name=f"{who}-{kind}", pool=pool, key=who)
             for who in ("alice", "bob") for kind in ("audio", "video")]
    for f in feeds:
        f.start()
    for f in feeds:
        f.put([MediaFrame(b"x", 960 * i, True, 0.02 * i) for i in range(40)])
    for f in feeds:
        f.stop()
    pool.close()
    assert all(f.packets == 40 and f.error is None for f in feeds)
    assert threads["alice-audio"] == threads["alice-video"] != threads["bob-audio"] == threads["bob-video"]
    assert {t for ts in threads.values() for t in ts} == {"reel-feed-0", "reel-feed-1"}
