"""Encoding the composite: composed pictures → H.264 (libx264), mixed samples → AAC, both through PyAV.

``VideoEncoder``: libx264 with a real-time preset (``veryfast`` by default) and ``tune=zerolatency`` (no
B-frames, no look-ahead: one picture in, its packet out), bit rate capped by a one-second VBV, no scene-cut
keyframes. Keyframes come where the caller asks for them (the engine asks at the start of each run and at
each ``segment_seconds`` of its timeline, so HLS can cut there), and x264's own GOP is the same length
(``fps x segment_seconds``) as a backstop. SPS/PPS are repeated in-band with every IDR (Annex-B, no global
header), so every segment starts decodable. Timestamps: ``TB`` = 1/90000, pts = recording time x 90000.

``AudioEncoder``: AAC (FFmpeg's encoder, ``aac_coder=fast``) at 48 kHz; samples go in at their sample index
on the recording clock (1/48000) in any chunk size and leave in 1024-sample frames; packet pts are in 1/48000
(the first packet of a run starts 1024 samples early: the encoder's priming). One encoder per run: ``flush``
ends it. ``aac_template`` makes the stream whose codec parameters a muxer copies
(``add_stream_from_template``), as output/audio.py does for the participants.

``AacPassthrough``: what the participants' ``ParticipantWriter`` (output/writer.py) would need instead of
its ``OpusToAac`` to take the composite's AAC packets as they are (see engine.py for the wiring).

Not thread-safe: every encoder is used by the compositor thread only.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

TB = Fraction(1, 90000)
RATE = 48000
AAC_FRAME = 1024


class VideoEncoder:
    def __init__(self, width: int, height: int, fps: float, *, bit_rate: int, gop: int,
                 preset: str = "veryfast", threads: int = 1, codec: str = "libx264"):
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TB
        ctx.framerate = Fraction(fps).limit_denominator(1001)
        ctx.bit_rate = bit_rate
        ctx.gop_size = gop
        ctx.max_b_frames = 0
        ctx.thread_count = threads
        ctx.options = {
            "preset": preset,
            "tune": "zerolatency",
            "sc_threshold": "0",  # keyframes only where asked (segment boundaries) or at the GOP's end
            "forced-idr": "1",
            "maxrate": str(bit_rate),
            "bufsize": str(bit_rate),
        }
        ctx.open()
        self.ctx = ctx
        self.frames = 0

    def encode(self, frame: av.VideoFrame, t: float, *, keyframe: bool = False) -> list[av.Packet]:
        """Encode the picture of recording time ``t`` (an IDR when ``keyframe``)."""
        frame.pts = round(t / TB)
        frame.time_base = TB
        # a decoded picture keeps its type: reset it, or x264 would copy the source's keyframes
        frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        self.frames += 1
        return self._stamp(self.ctx.encode(frame))

    def flush(self) -> list[av.Packet]:
        return self._stamp(self.ctx.encode(None))

    @staticmethod
    def _stamp(packets) -> list[av.Packet]:
        out = list(packets)
        for p in out:
            p.time_base = TB
        return out


def aac_template(*, rate: int = RATE, layout: str = "stereo", bit_rate: int = 96000):
    """(holder, stream): an opened AAC encoder that belongs to a stream, whose parameters (and AAC extradata)
    muxers copy. Keep ``holder`` referenced as long as the template is used."""
    holder = av.open(io.BytesIO(), "w", format="mpegts")
    stream = holder.add_stream("aac", rate=rate, layout=layout)
    stream.codec_context.bit_rate = bit_rate
    stream.codec_context.options = {"aac_coder": "fast"}
    holder.start_encoding()
    return holder, stream


class AudioEncoder:
    def __init__(self, *, rate: int = RATE, layout: str = "stereo", bit_rate: int = 96000):
        self.rate, self.layout = rate, layout
        self._holder, stream = aac_template(rate=rate, layout=layout, bit_rate=bit_rate)
        self.ctx = stream.codec_context
        self.channels = av.AudioLayout(layout).nb_channels
        self._pending = np.zeros((self.channels, 0), np.float32)
        self._next: int | None = None  # sample index of the first pending sample
        self._done = False

    def encode(self, samples: np.ndarray, index: int) -> list[av.Packet]:
        """Samples (channels x n, float) whose first one is at sample ``index``; must follow the previous."""
        if self._next is None:
            self._next = index
        elif index != self._next + self._pending.shape[1]:
            raise ValueError(f"audio not contiguous: {index} after {self._next + self._pending.shape[1]}")
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)], axis=1)
        out: list[av.Packet] = []
        while self._pending.shape[1] >= AAC_FRAME:
            out += self._encode(self._pending[:, :AAC_FRAME])
            self._pending = self._pending[:, AAC_FRAME:]
        return out

    def flush(self) -> list[av.Packet]:
        """The rest (a short last frame) and the encoder's delay; the encoder is done afterwards."""
        if self._done:
            return []
        self._done = True
        out = self._encode(self._pending) if self._pending.shape[1] else []
        self._pending = self._pending[:, :0]
        return out + self._stamp(self.ctx.encode(None))

    def _encode(self, samples: np.ndarray) -> list[av.Packet]:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=self.layout)
        frame.sample_rate = self.rate
        frame.pts = self._next
        frame.time_base = Fraction(1, self.rate)
        self._next += samples.shape[1]
        return self._stamp(self.ctx.encode(frame))

    def _stamp(self, packets) -> list[av.Packet]:
        out = list(packets)
        for p in out:
            p.time_base = Fraction(1, self.rate)
        return out


class AacPassthrough:
    """Stands where ``ParticipantWriter`` keeps its ``OpusToAac`` (same three members), for a writer fed with
    AAC packets already encoded on the recording timeline (pts in 1/48000): it hands each packet on as is."""

    def __init__(self, template):
        self.template = template

    def encode(self, packet: av.Packet, t: float) -> list[av.Packet]:
        return [packet]

    def close(self) -> list[av.Packet]:
        return []
