"""Opus (as WebRTC sends it) → AAC (what MPEG-TS/HLS players expect), with FFmpeg's codecs."""

from __future__ import annotations

import io
from fractions import Fraction

import av

RATE = 48000
AAC_FRAME = 1024
TIME_BASE = Fraction(1, RATE)
MAX_FILL = RATE  # gaps up to 1 s are filled with silence; longer ones restart the timeline there
# An Opus decoder's output lags its input by the encoder's lookahead: 312 samples (6.5 ms: 2.5 ms + 4 ms delay
# compensation) for libopus in its VOIP and AUDIO modes, which browsers (libwebrtc) and aiortc use. Ogg and MP4
# state it as the stream's pre-skip and FFmpeg then places decoded samples by it; RTP carries no such header and
# WebRTC senders stamp each packet with the capture time of its input, so the decoded audio of the packet
# stamped t starts at t - 312 samples. Without this the recorded sound was 6.5 ms late against the picture.
OPUS_PRE_SKIP = 312


class OpusToAac:
    """Decodes Opus packets and encodes mono AAC; keeps one encoder for the whole recording.

    The output is mono: WebRTC voice is mono in practice, and one AAC channel costs half of two. FFmpeg's Opus
    decoder mixes a stereo stream down itself ((L+R)/2: a sound sent in both channels keeps its level) and returns
    planar float, the AAC encoder's own format, so the
    samples go from the decoder through a sample queue (``AudioFifo``, cut into AAC's 1024-sample frames) to the
    encoder with no conversion. PyAV's ``encode`` would pass every frame through an FFmpeg filter graph of its own
    (a resampler that cuts frames to size) even then: that graph cost as much CPU as the AAC encoder itself
    (issue 18, measured with perf on a recording), so whole frames go to ``avcodec_send_frame`` directly through
    PyAV's ``_send_frame_and_recv`` (PyAV is pinned; without that method ``encode`` is used, same output).
    ``template`` is an output stream whose codec parameters (incl. the AAC extradata) each segment's
    muxer copies with ``add_stream_from_template``.
    """

    def __init__(self, bit_rate: int = 64000):
        self.decoder = av.CodecContext.create("opus", "r")
        self.decoder.sample_rate = RATE
        self.decoder.layout = "mono"
        # An encoder that belongs to a stream, so that its parameters can serve as a template.
        self._holder = av.open(io.BytesIO(), "w", format="mpegts")
        self.template = self._holder.add_stream("aac", rate=RATE, layout="mono")
        self.encoder = self.template.codec_context
        self.encoder.bit_rate = bit_rate
        self.encoder.options = {"aac_coder": "fast"}
        self._holder.start_encoding()
        self._send = getattr(self.encoder, "_send_frame_and_recv", None)
        self.fifo = av.AudioFifo()
        self._next_pts: int | None = None  # pts (1/48000) expected for the next decoded sample
        self._fifo_pts = 0  # pts of the first sample waiting in the fifo (the fifo itself gets no pts)

    def encode(self, packet: av.Packet, t: float) -> list[av.Packet]:
        """Transcode one Opus packet whose first sample plays at recording time ``t``."""
        pts = round(t * RATE) - OPUS_PRE_SKIP  # what the decoder returns for it starts with older samples
        out: list[av.Packet] = []
        for frame in self.decoder.decode(packet):
            out += self._push(frame, pts)
            pts += frame.samples
        return out

    def _push(self, frame: av.AudioFrame, pts: int) -> list[av.Packet]:
        """Place a decoded frame on the sample timeline (1/RATE). Arrival jitter within half an AAC frame keeps
        the timeline; a gap up to MAX_FILL is filled with silence; after a longer one the samples still queued
        are completed with silence (it is silent there) and a new timeline starts at ``pts`` (a step back, which
        the readers' monotonic timestamps do not produce, starts where the encoded audio ends)."""
        out: list[av.Packet] = []
        if self._next_pts is not None:
            gap = pts - self._next_pts
            if abs(gap) <= AAC_FRAME // 2:
                pts = self._next_pts  # jitter of the arrival-based clock: keep the sample timeline
            elif 0 < gap <= MAX_FILL:
                self.fifo.write(_silence(gap))
            else:
                if self.fifo.samples:
                    self.fifo.write(_silence(AAC_FRAME - self.fifo.samples))
                    out += self._encode(self.fifo.read(AAC_FRAME))
                pts = max(pts, self._fifo_pts)
        if self.fifo.samples == 0:
            self._fifo_pts = pts
        frame.pts = None
        self.fifo.write(frame)
        self._next_pts = pts + frame.samples
        while self.fifo.samples >= AAC_FRAME:
            out += self._encode(self.fifo.read(AAC_FRAME))
        return out

    def _encode(self, frame: av.AudioFrame | None) -> list[av.Packet]:
        """Encode a whole frame (or the last, shorter one; None: flush) of the queue's samples."""
        if frame is not None:
            frame.pts = self._fifo_pts
            frame.time_base = TIME_BASE
            self._fifo_pts += frame.samples
        if self._send is None:
            return self.encoder.encode(frame)
        packets = list(self._send(frame))
        for p in packets:
            p.time_base = TIME_BASE  # what PyAV's encode stamps: the encoder's time base
        return packets

    def close(self) -> list[av.Packet]:
        """Everything still buffered, the encoder's delay included; the transcoder is done afterwards."""
        rest = self.fifo.read()  # fewer than AAC_FRAME samples: the encoder takes a shorter last frame
        out = (self._encode(rest) if rest is not None else []) + self._encode(None)
        self._holder.close()
        return out


def _silence(samples: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout="mono", samples=samples)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = RATE
    return frame
