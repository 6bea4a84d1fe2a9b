"""The tests' full-decode check (tests/support/analyze.py ``decode_segments``) fails on a frame that the H.264
decoder conceals: a keyframe cut short decodes "fine" (a picture comes out) but FFmpeg logs its errors."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from tests.support.analyze import decode_segments


def _write(path, packets, size) -> None:
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("h264", rate=30)
        stream.width, stream.height = size
        for data, pts in packets:
            p = av.Packet(data)
            p.pts = p.dts = pts
            p.time_base = Fraction(1, 90000)
            p.stream = stream
            out.mux(p)


def test_a_keyframe_cut_short_counts_as_a_decode_error(tmp_path):
    size = (320, 240)
    rng = np.random.default_rng(1)
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = *size, "yuv420p"
    enc.time_base = Fraction(1, 90000)
    enc.options = {"preset": "ultrafast", "tune": "zerolatency", "keyint": "100"}
    packets = []
    for i in range(10):
        picture = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * 3000
        packets += [(bytes(p), p.pts) for p in enc.encode(frame)]
    packets += [(bytes(p), p.pts) for p in enc.encode(None)]
    whole, cut = tmp_path / "whole.ts", tmp_path / "cut.ts"
    _write(whole, packets, size)
    first, pts = packets[0]
    _write(cut, [(first[: len(first) // 3], pts), *packets[1:]], size)

    good = decode_segments([whole])
    assert good.decode_errors == 0 and good.video_frames == 10, good.decode_messages
    bad = decode_segments([cut])
    assert bad.decode_errors > 0, bad.video_frames
    assert any("h264" in m for m in bad.decode_messages), bad.decode_messages
