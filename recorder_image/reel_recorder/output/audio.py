"""Opus (as WebRTC sends it) → AAC (what MPEG-TS/HLS players expect), with FFmpeg's codecs."""

from __future__ import annotations

import io
from fractions import Fraction

import av

RATE = 48000
AAC_FRAME = 1024
MAX_FILL = RATE  # gaps up to 1 s are filled with silence; longer ones restart the timeline there
# An Opus decoder's output lags its input by the encoder's lookahead: 312 samples (6.5 ms: 2.5 ms + 4 ms delay
# compensation) for libopus in its VOIP and AUDIO modes, which browsers (libwebrtc) and aiortc use. Ogg and MP4
# state it as the stream's pre-skip and FFmpeg then places decoded samples by it; RTP carries no such header and
# WebRTC senders stamp each packet with the capture time of its input, so the decoded audio of the packet
# stamped t starts at t - 312 samples. Without this the recorded sound was 6.5 ms late against the picture.
OPUS_PRE_SKIP = 312


class OpusToAac:
    """Decodes Opus packets and encodes mono AAC; keeps one encoder for the whole recording.

    The output is mono: WebRTC voice is mono in practice, and one AAC channel costs half of two.
    ``template`` is an output stream whose codec parameters (incl. the AAC extradata) each segment's
    muxer copies with ``add_stream_from_template``.
    """

    def __init__(self, bit_rate: int = 64000):
        self.decoder = av.CodecContext.create("opus", "r")
        self.decoder.sample_rate = RATE
        self.decoder.layout = "stereo"
        # An encoder that belongs to a stream, so that its parameters can serve as a template.
        self._holder = av.open(io.BytesIO(), "w", format="mpegts")
        self.template = self._holder.add_stream("aac", rate=RATE, layout="mono")
        self.encoder = self.template.codec_context
        self.encoder.bit_rate = bit_rate
        self.encoder.options = {"aac_coder": "fast"}
        self._holder.start_encoding()
        self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=RATE)
        self.fifo = av.AudioFifo()
        self._next_pts: int | None = None  # pts (1/48000) expected for the next decoded sample
        self._fifo_pts = 0  # pts of the first sample waiting in the fifo (the fifo itself gets no pts)

    def encode(self, packet: av.Packet, t: float) -> list[av.Packet]:
        """Transcode one Opus packet whose first sample plays at recording time ``t``."""
        pts = round(t * RATE) - OPUS_PRE_SKIP  # what the decoder returns for it starts with older samples
        out: list[av.Packet] = []
        for frame in self.decoder.decode(packet):
            for mono in self.resampler.resample(frame):
                out += self._push(mono, pts)
                pts += mono.samples
        return out

    def _push(self, frame: av.AudioFrame, pts: int) -> list[av.Packet]:
        out: list[av.Packet] = []
        if self._next_pts is not None:
            gap = pts - self._next_pts
            if abs(gap) <= AAC_FRAME // 2:
                pts = self._next_pts  # jitter of the arrival-based clock: keep the sample timeline
            elif 0 < gap <= MAX_FILL:
                silence = av.AudioFrame(format="fltp", layout="mono", samples=gap)
                for plane in silence.planes:
                    plane.update(bytes(plane.buffer_size))
                silence.sample_rate = RATE
                self.fifo.write(silence)
            else:
                out += self._drain()  # a long gap or a step back: start a new timeline at pts
        if self.fifo.samples == 0:
            self._fifo_pts = pts
        frame.pts = None
        self.fifo.write(frame)
        self._next_pts = pts + frame.samples
        while self.fifo.samples >= AAC_FRAME:
            out += self._encode(self.fifo.read(AAC_FRAME))
        return out

    def _encode(self, frame: av.AudioFrame) -> list[av.Packet]:
        frame.pts = self._fifo_pts
        frame.time_base = Fraction(1, RATE)
        self._fifo_pts += frame.samples
        return list(self.encoder.encode(frame))

    def _drain(self) -> list[av.Packet]:
        rest = self.fifo.read()
        self.fifo = av.AudioFifo()
        return self._encode(rest) if rest is not None else []

    def close(self) -> list[av.Packet]:
        """Everything still buffered, the encoder's delay included; the transcoder is done afterwards."""
        out = self._drain() + list(self.encoder.encode(None))
        self._holder.close()
        return out
