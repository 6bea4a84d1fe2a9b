"""aiortc without decoding: what a WebRTC subscription receives, handed on as encoded packets.

aiortc's ``RTCRtpReceiver`` depacketizes RTP, reorders it in its jitter buffer (asking for retransmissions, NACK,
and for keyframes, PLI, itself) and gives each whole encoded frame to a decoder on its own thread (one
``<kind>-decoder`` thread per receiver). It finds that decoder through the module-level name
``aiortc.rtcrtpreceiver.get_decoder``; ``install()`` puts ``get_decoder`` of this module there: for the codecs we
record it returns a stand-in whose ``decode`` gives back the frame as it came, as an ``EncodedFrame`` (an
``av.Packet`` and its RTP timestamp), which aiortc then queues on the track like a decoded frame. Other codecs
keep aiortc's own decoders.

What the packets are (the same as the RTP gate gives the forward ingest, ingest/depacketize.py): H.264 as Annex-B
access units (aiortc's depacketizer writes start codes), keyframe = an IDR slice in it; VP8 frames as sent
(keyframe = bit 0 of the first byte clear); Opus packets as sent. ``pts`` is the RTP timestamp counted from the
stream's first frame (aiortc's ``TimestampMapper``), time base 1/clock rate.

This leans on private names of aiortc (``get_decoder`` looked up at run time by the receiver, and
``RTCRtpReceiver._handle_rtp_packet``, ``_send_rtcp_pli``: ingest/webrtc.py); pyproject pins aiortc, and
``tests/unit/test_webrtc_ingest.py`` fails loudly when one of them is gone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from importlib.metadata import version

import aiortc.rtcrtpreceiver as _receiver
import av

from ..media import h264

#: codec name (as aiortc's RTCRtpCodecParameters.name, lower case) -> kind, clock rate
PASSED = {"h264": ("video", 90000), "vp8": ("video", 90000), "opus": ("audio", 48000)}

_aiortc_get_decoder = _receiver.get_decoder


@dataclass
class EncodedFrame:
    """What the stand-in decoder returns for one frame (in place of a decoded picture or sound)."""

    packet: av.Packet
    timestamp: int  # RTP timestamp since the stream's first frame (the packet's pts)
    decoded_at: float  # time.monotonic() when aiortc handed it over (the arrival when none was recorded)


def is_keyframe(codec: str, data: bytes) -> bool:
    """A frame a decoder can start from: H.264 with an IDR slice, a VP8 key frame; every Opus packet."""
    if codec == "h264":
        return h264.is_idr(data)
    if codec == "vp8":
        return bool(data) and not data[0] & 0x01
    return True


class PassthroughDecoder:
    """Stands in for aiortc's decoder of one receiver: the frame, not decoded (runs on aiortc's decoder thread)."""

    def __init__(self, codec: str):
        self.codec = codec
        self.time_base = Fraction(1, PASSED[codec][1])

    def decode(self, encoded_frame) -> list[EncodedFrame]:
        data = bytes(encoded_frame.data)
        if not data:
            return []
        packet = av.Packet(data)
        packet.pts = packet.dts = encoded_frame.timestamp
        packet.time_base = self.time_base
        packet.is_keyframe = is_keyframe(self.codec, data)
        return [EncodedFrame(packet, encoded_frame.timestamp, time.monotonic())]


def get_decoder(codec):
    """aiortc's ``get_decoder``, but the codecs we record are passed through (``PassthroughDecoder``)."""
    name = codec.name.lower()
    if name in PASSED:
        return PassthroughDecoder(name)
    return _aiortc_get_decoder(codec)


def install() -> None:
    """Make every aiortc receiver of this process pass frames through (idempotent). Raises RuntimeError when
    aiortc no longer has the names this relies on (an aiortc other than the pinned one)."""
    missing = [name for name in ("get_decoder", "decoder_worker") if not hasattr(_receiver, name)]
    missing += [f"RTCRtpReceiver.{name}" for name in ("_handle_rtp_packet", "_send_rtcp_pli")
                if not hasattr(_receiver.RTCRtpReceiver, name)]
    if missing:
        raise RuntimeError(f"aiortc {version('aiortc')} lacks {', '.join(missing)}: the WebRTC ingest needs the "
                           "aiortc version pyproject pins")
    _receiver.get_decoder = get_decoder
