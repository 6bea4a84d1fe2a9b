"""Opus kept as sent (``audioCodec: opus``, fMP4 segments only): packets copied, stamped on the recording's timeline.

Stands where the writer keeps its ``OpusToAac`` (output/audio.py; same three members: ``template``, ``encode``,
``close``), so the writer cuts and muxes the same way whatever the audio codec.

``template``: an output stream whose codec parameters each segment's muxer (and the MP4's) copies. MP4 needs an
``OpusHead`` (the ``dOps`` box: channels, pre-skip); RTP carries none, so the template is FFmpeg's own libopus
encoder's (48 kHz, stereo as WebRTC's ``opus/48000/2`` says, channel mapping 0, pre-skip 312: the lookahead of
libopus as browsers and aiortc use it). Decoders drop the pre-skip at the start and then play each packet at its
timestamp: a packet whose first input sample was captured at recording time ``t`` is stamped ``t`` - 312
samples, as ``OpusToAac`` places its decoded audio (output/audio.py ``OPUS_PRE_SKIP``), so the sound meets the
picture as in the AAC recording.

Durations: an Opus packet's duration is in its own TOC byte, which this does not parse (FFmpeg does when it
decodes); the next packet's timestamp gives it, and the last one seen is used until then (WebRTC sends 20 ms
packets). A packet that does not move the timeline forward is dropped (MP4 needs increasing timestamps).
"""

from __future__ import annotations

import io
from fractions import Fraction

import av

from .audio import OPUS_PRE_SKIP, RATE

TIME_BASE = Fraction(1, RATE)
DEFAULT_DURATION = RATE // 50  # 20 ms, WebRTC's packet length
MAX_DURATION = RATE * 120 // 1000  # Opus packets are at most 120 ms


def opus_template():
    """(holder container, template stream) with libopus's OpusHead as the stream's extradata."""
    holder = av.open(io.BytesIO(), "w", format="mp4")
    template = holder.add_stream("libopus", rate=RATE, layout="stereo")
    holder.start_encoding()
    return holder, template


class OpusCopy:
    """Hands each Opus packet on, re-stamped (pts in 1/48000 on the recording timeline) with a duration."""

    def __init__(self):
        self._holder, self.template = opus_template()
        self._last_pts: int | None = None
        self._duration = DEFAULT_DURATION

    def encode(self, packet: av.Packet, t: float) -> list[av.Packet]:
        """One Opus packet whose first sample was captured at recording time ``t``: the packet to mux."""
        pts = round(t * RATE) - OPUS_PRE_SKIP
        if pts < 0:
            return []  # before the recording's start (its first 6.5 ms): nothing to place it on
        if self._last_pts is not None:
            step = pts - self._last_pts
            if step <= 0:
                return []  # a duplicate or a step back: MP4 timestamps only go forward
            if step <= MAX_DURATION:
                self._duration = step
        self._last_pts = pts
        out = av.Packet(bytes(packet))
        out.pts = out.dts = pts
        out.time_base = TIME_BASE
        out.duration = packet.duration if packet.duration and packet.time_base == TIME_BASE else self._duration
        return [out]

    def close(self) -> list[av.Packet]:
        """Nothing is buffered: every packet was handed on."""
        self._holder.close()
        return []
