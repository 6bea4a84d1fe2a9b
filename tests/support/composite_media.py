"""Synthetic media for the composite tests and benchmark: what the ingest hands a sink, made with PyAV.

``solid_h264``: a solid-colour picture encoded with libx264 as Annex-B packets (SPS/PPS in-band with the
IDR, like FFmpeg's RTP depacketizer gives them), keyframe flag set on IDRs. ``tone_opus``: a sine tone
encoded as 20 ms Opus packets (48 kHz), like a WebRTC microphone. ``decode_all``: decoded frames of packets.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

RATE = 48000
OPUS_FRAME = 960  # 20 ms


def solid_h264(rgb: tuple[int, int, int], *, width: int = 320, height: int = 240, count: int = 10, fps: int = 30,
               gop: int = 30, noise: int = 0, seed: int = 1, codec: str = "libx264") -> list[av.Packet]:
    """``count`` pictures of one colour (plus some noise: a realistic bit rate) as H.264 packets (or VP8 with
    ``codec="libvpx"``)."""
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = Fraction(1, fps)
    enc.framerate = Fraction(fps)
    enc.gop_size = gop
    if codec == "libx264":
        enc.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
    else:
        enc.bit_rate = 300_000
        enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(seed)
    base = np.zeros((height, width, 3), np.int16)
    base[:] = rgb
    packets: list[av.Packet] = []
    for i in range(count):
        img = base
        if noise:
            img = base + rng.integers(-noise, noise + 1, size=base.shape, dtype=np.int16)
        frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        packets += list(enc.encode(frame))
    packets += list(enc.encode(None))
    return packets


def tone(freq: float, seconds: float, amplitude: float = 0.3, *, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tone_opus(freq: float, seconds: float, amplitude: float = 0.3) -> list[av.Packet]:
    """A mono sine as 20 ms Opus packets (decoded as stereo by the mixer, as the recorder does)."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate = RATE
    enc.layout = "mono"
    enc.format = "s16"
    enc.bit_rate = 64000
    enc.time_base = Fraction(1, RATE)
    samples = (tone(freq, seconds, amplitude) * 32767).astype(np.int16)
    packets: list[av.Packet] = []
    for i in range(0, len(samples) - OPUS_FRAME + 1, OPUS_FRAME):
        frame = av.AudioFrame.from_ndarray(samples[None, i:i + OPUS_FRAME], format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = i
        packets += list(enc.encode(frame))
    packets += list(enc.encode(None))
    return packets


def decode_all(codec: str, packets: list[av.Packet], **options) -> list:
    dec = av.CodecContext.create(codec, "r")
    for k, v in options.items():
        setattr(dec, k, v)
    frames = []
    for p in packets:
        frames += dec.decode(av.Packet(bytes(p)))
    frames += dec.decode(None)
    return frames


def peak_frequencies(samples: np.ndarray, rate: int = RATE, count: int = 2) -> list[float]:
    """The ``count`` strongest frequencies (Hz) of a mono signal, strongest first (distinct peaks)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    found: list[float] = []
    for i in np.argsort(spectrum)[::-1]:
        f = float(freqs[i])
        if all(abs(f - g) > 20 for g in found):
            found.append(f)
        if len(found) == count:
            break
    return found
