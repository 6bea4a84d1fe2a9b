"""Encoded media of a synthetic participant, as the ingest hands it to a writer (no network, no Janus)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def participant_media(seconds: float, *, fps: int = 15, gop: int = 15, size: tuple[int, int] = (160, 120)):
    """[(kind, packet, t)] sorted by t: H.264 access units (Annex B, a keyframe every ``gop`` frames) and Opus
    packets (20 ms, stereo, a 440 Hz tone)."""
    width, height = size
    video = av.CodecContext.create("libx264", "w")
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.time_base = Fraction(1, fps)
    video.gop_size = gop
    video.options = {"preset": "ultrafast", "tune": "zerolatency", "bframes": "0"}
    audio = av.CodecContext.create("libopus", "w")
    audio.sample_rate, audio.layout, audio.format = 48000, "stereo", "s16"
    out = []
    for i in range(int(seconds * fps)):
        frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), (i * 7) % 255, np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        out += [("video", p, i / fps) for p in video.encode(frame)]
    n = 0
    while n * 960 < seconds * 48000:
        samples = (np.sin(2 * np.pi * 440 * (np.arange(960) + n * 960) / 48000) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(samples[None, :], 2, axis=0).reshape(1, -1), format="s16",
                                           layout="stereo")
        frame.sample_rate, frame.pts = 48000, n * 960
        out += [("audio", p, n * 960 / 48000) for p in audio.encode(frame)]
        n += 1
    return sorted(out, key=lambda x: x[2])
