"""Encoded silence: one silent audio frame of a segment's audio codec (Opus or AAC), to pad a run's sound.

fMP4 segments (output/fmp4.py) pad the sound of a run's first and last segments with it, so that both tracks of a
run start and end together: a player's buffer is where both tracks are, and a gap of one audio frame at a run's
edge is a hole in it (hls.js in Chromium stalled at the end of a recording whose sound ended 21 ms before its
picture). The frames are made once per codec by FFmpeg's own encoders with the parameters of the recording's audio
(output/opus.py: libopus, 48 kHz stereo, 20 ms; output/audio.py: AAC-LC, 48 kHz mono), from digital silence after
the encoder has settled (its first packets hold its priming), so any decoder of that stream decodes them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

import av

from .audio import RATE


@dataclass(frozen=True)
class SilentFrame:
    data: bytes
    samples: int  # its duration, in samples at RATE (1/48000 s)


def is_opus(codec_name: str) -> bool:
    return "opus" in codec_name


@functools.cache
def silent_frame(codec_name: str, channels: int) -> SilentFrame:
    """A silent frame for an audio stream of ``codec_name`` (``opus``/``libopus`` or ``aac``) with ``channels``
    channels at RATE. Raises ValueError for another codec."""
    if is_opus(codec_name):
        encoder, size = av.CodecContext.create("libopus", "w"), RATE // 50
    elif codec_name == "aac":
        encoder, size = av.CodecContext.create("aac", "w"), 1024
    else:
        raise ValueError(f"no silent frame for audio codec {codec_name!r}")
    layout = "stereo" if channels == 2 else "mono"
    encoder.sample_rate, encoder.layout, encoder.format = RATE, layout, encoder.codec.audio_formats[0].name
    encoder.time_base = Fraction(1, RATE)
    encoder.open()
    packets = []
    for i in range(6):
        frame = _zeros(encoder.format.name, layout, size)
        frame.sample_rate, frame.pts = RATE, i * size
        packets += encoder.encode(frame)
    if not packets:
        raise ValueError(f"the {codec_name} encoder gave no packet for silence")
    return SilentFrame(bytes(packets[-1]), size)


def _zeros(fmt: str, layout: str, size: int) -> av.AudioFrame:
    frame = av.AudioFrame(format=fmt, layout=layout, samples=size)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    return frame
