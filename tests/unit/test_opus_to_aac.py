"""Opus → AAC (output/audio.py ``OpusToAac``): where the sound lands on the recording's timeline, its level, and
the timeline across gaps (filled up to a second, a new timeline after a longer one)."""

from __future__ import annotations

import itertools
from fractions import Fraction

import av
import numpy as np
import pytest

from reel_recorder.output.audio import AAC_FRAME, RATE, OpusToAac

OPUS_FRAME = 960  # 20 ms


def sender_packets(signal: np.ndarray) -> list[tuple[bytes, float]]:
    """``signal`` as a WebRTC sender makes it: libopus in its VOIP mode, "stereo" with the same sound in both
    channels, each packet stamped with the capture time of its first input sample."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = RATE, "stereo", "s16", 64000
    enc.options = {"application": "voip"}
    pcm = (np.repeat(signal[None, :], 2, axis=0).T.reshape(1, -1) * 32767).astype(np.int16)
    out = []
    for i in range(0, len(signal) - OPUS_FRAME + 1, OPUS_FRAME):
        frame = av.AudioFrame.from_ndarray(pcm[:, 2 * i:2 * (i + OPUS_FRAME)], format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = RATE, i, Fraction(1, RATE)
        out += [bytes(p) for p in enc.encode(frame)]
    return [(p, n * OPUS_FRAME / RATE) for n, p in enumerate(out)]


def transcode(packets, times) -> tuple[list[av.Packet], OpusToAac]:
    tx = OpusToAac()
    out = []
    for (data, _), t in zip(packets, times, strict=True):
        out += tx.encode(av.Packet(data), t)
    return out + tx.close(), tx


def on_timeline(packets: list[av.Packet], extradata, seconds: float) -> np.ndarray:
    """The AAC decoded, each frame placed at its pts (what a player does with the segments' timestamps)."""
    dec = av.CodecContext.create("aac", "r")
    dec.extradata = extradata
    out = np.zeros(round(seconds * RATE), np.float32)
    for p in packets:
        assert p.time_base == Fraction(1, RATE)
        for f in dec.decode(p):
            x = f.to_ndarray().reshape(-1)
            start = f.pts
            lo = max(start, 0)
            out[lo:start + len(x)] = x[lo - start:len(out) - start]
    return out


def beep_at(seconds: float, onsets: list[float], freq: float = 1000.0, amplitude: float = 0.5) -> np.ndarray:
    x = np.zeros(round(seconds * RATE), np.float32)
    for on in onsets:
        i = round(on * RATE)
        x[i:i + RATE // 10] = amplitude * np.sin(2 * np.pi * freq * np.arange(RATE // 10) / RATE)
    return x


def first_loud(x: np.ndarray, after: float, level: float = 0.1) -> float:
    i = round(after * RATE)
    return (i + int(np.nonzero(np.abs(x[i:]) > level)[0][0])) / RATE


def test_a_beep_lands_where_the_sender_captured_it_at_the_senders_level():
    onsets = [0.5, 1.5, 2.5]
    packets = sender_packets(beep_at(3.0, onsets))
    out, tx = transcode(packets, [t + 10.0 for _, t in packets])  # the recording clock: 10 s later
    x = on_timeline(out, tx.template.codec_context.extradata, 14.0)
    for on in onsets:
        assert first_loud(x, 10.0 + on - 0.05) == pytest.approx(10.0 + on, abs=0.0005)
    # the level of the sound as sent (both channels alike: the decoder's mono downmix keeps it)
    i = round((10.0 + onsets[0] + 0.03) * RATE)
    assert np.max(np.abs(x[i:i + 2000])) == pytest.approx(0.5, rel=0.1)


def test_gaps_up_to_a_second_are_silence_and_longer_ones_start_a_new_timeline():
    onsets = [0.3, 1.3, 2.3, 3.3]
    packets = sender_packets(beep_at(4.0, onsets))
    # arrival jitter within the packets, a 0.4 s hole before packet 80 (1.6 s), 2.5 s more before packet 140 (2.8 s)
    rng = np.random.default_rng(7)
    shift = [0.0 if n < 80 else 0.4 if n < 140 else 2.9 for n in range(len(packets))]
    times = [t + s + 5.0 + rng.uniform(-0.004, 0.004) for (_, t), s in zip(packets, shift, strict=True)]
    out, tx = transcode(packets, times)
    pts = [p.pts for p in out]
    assert all(b > a for a, b in itertools.pairwise(pts)), "AAC timestamps must grow"
    assert all(p.duration in (AAC_FRAME, None) or p is out[-1] for p in out)
    x = on_timeline(out, tx.template.codec_context.extradata, 14.0)
    # each beep where its packet said, jitter taken out (within half an AAC frame the timeline is kept)
    for on, s in zip(onsets, (0.0, 0.0, 0.4, 2.9), strict=True):
        assert first_loud(x, 5.0 + on + s - 0.05) == pytest.approx(5.0 + on + s, abs=0.005)
    # the filled hole is silent
    hole = x[round(6.61 * RATE):round(6.99 * RATE)]
    assert np.max(np.abs(hole)) < 0.01


def test_whole_frames_straight_to_the_encoder_give_what_pyav_encode_gives():
    """``OpusToAac`` hands whole frames to FFmpeg through PyAV's private ``_send_frame_and_recv`` (PyAV's ``encode``
    would pass them through a filter graph first); without that method it uses ``encode``: the same packets."""
    packets = sender_packets(beep_at(2.0, [0.4, 1.4]))
    times = [t + 3.0 + (1.3 if n >= 60 else 0.0) for n, (_, t) in enumerate(packets)]  # and a long gap
    direct = OpusToAac()
    assert direct._send is not None, "PyAV no longer has _send_frame_and_recv: OpusToAac falls back to encode()"
    fallback = OpusToAac()
    fallback._send = None
    outs = []
    for tx in (direct, fallback):
        out = []
        for (data, _), t in zip(packets, times, strict=True):
            out += tx.encode(av.Packet(data), t)
        outs.append(out + tx.close())
    a, b = outs
    assert [(p.pts, p.duration, bytes(p)) for p in a] == [(p.pts, p.duration, bytes(p)) for p in b]
