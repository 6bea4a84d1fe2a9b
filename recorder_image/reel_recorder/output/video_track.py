"""The stream of a copied video track in an MP4 muxer (fMP4 segments, the participant's MP4): H.264, VP9 or AV1.

The MP4 muxer writes each codec's configuration box from what it knows when it writes the ``moov``: H.264's
``avcC`` and AV1's ``av1C`` from the first packet (its parameter sets, its sequence header), so a stream with the
codec and the picture size is enough (``add_mux_stream``). VP9's ``vpcC`` (profile, level, bit depth, chroma) comes
from the stream's parameters only: without a pixel format it is left empty, and browsers refuse the track (hls.js
in Chromium: ``bufferAddCodecError``). So a VP9 stream is made from a template stream of FFmpeg's VP9 encoder
(never opened: PyAV gives such a stream a codec context, whose picture size and ``yuv420p`` reach the stream's
parameters when the muxer starts): 8-bit 4:2:0, VP9 profile 0, what WebRTC senders send (FFmpeg derives the profile
and the level from them).
"""

from __future__ import annotations

import functools
import io
from fractions import Fraction

import av

VIDEO_TB = Fraction(1, 90000)


@functools.cache
def _vp9_template():
    holder = av.open(io.BytesIO(), "w", format="mp4")
    return holder, holder.add_stream("libvpx-vp9", rate=30)  # the holder keeps the template's container alive


def add_video_track(container, codec: str, width: int, height: int):
    """A stream for ``codec`` (h264, vp9, av1) copied packets at ``width`` x ``height``, time base 1/90000."""
    if codec == "vp9":
        stream = container.add_stream_from_template(_vp9_template()[1])
        ctx = stream.codec_context
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    else:
        stream = container.add_mux_stream(codec, rate=90000, width=width, height=height)
    stream.time_base = VIDEO_TB
    return stream
