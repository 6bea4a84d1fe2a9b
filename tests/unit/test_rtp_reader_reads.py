"""The forward ingest's reader (ingest/rtp.py RtpStreamReader): one demux iterator for many reads, and media times
without a Fraction per packet that equal the exact ones (issue 18)."""

from __future__ import annotations

import random
from fractions import Fraction

import av

from reel_recorder.clock import RecordingClock
from reel_recorder.ingest.rtp import RtpStream, RtpStreamReader


class Container:
    """Stands in for a PyAV input container: ``demux`` yields the queued packets, then ends as a read that timed
    out does (PyAV raises ExitError out of the generator)."""

    def __init__(self, batches: list[list[av.Packet]]):
        self.batches = batches
        self.streams = ["the stream"]
        self.demux_calls = 0

    def demux(self, stream):
        assert stream == "the stream"
        self.demux_calls += 1
        yield from self.batches.pop(0)
        raise av.error.ExitError(-1414092869, "timed out")  # AVERROR_EXIT


def packet(pts: int, time_base: Fraction) -> av.Packet:
    p = av.Packet(b"\x01\x02")
    p.pts = p.dts = pts
    p.time_base = time_base
    return p


def reader(sink) -> RtpStreamReader:
    return RtpStreamReader(RtpStream("audio", "opus", 97, 46000, "127.0.0.1"), sink, RecordingClock(), name="t")


def test_one_demux_iterator_serves_reads_until_a_read_times_out():
    tb = Fraction(1, 48000)
    container = Container([[packet(960 * i, tb) for i in range(5)], [packet(960 * 9, tb)]])
    r = reader(lambda p, t: None)
    got = [r._read(container) for _ in range(6)]
    assert [p.pts for p in got[:5]] == [0, 960, 1920, 2880, 3840]
    assert got[5] is None  # the timeout: None, and the iterator is dropped
    assert container.demux_calls == 1
    assert r._read(container).pts == 8640  # a new iterator after the timeout
    assert container.demux_calls == 2


def test_media_times_equal_the_exact_fraction():
    rng = random.Random(18)
    for tb in (Fraction(1, 90000), Fraction(1, 48000)):
        times: list[float] = []
        r = reader(lambda p, t: None)
        r.aligner.push = lambda item, media_time, arrival, measure=True, times=times: times.append(media_time) or []
        pts_values = sorted(rng.sample(range(1, 1 << 40), 200))
        for pts in pts_values:
            r._handle(packet(pts, tb))
        assert times == [float(pts * tb) for pts in pts_values]
