"""One HLS segment file being written: the file that counts and hashes its bytes, and the MPEG-TS segment.

``segmentFormat: ts``: each segment is its own MPEG-TS file written by FFmpeg's muxer (through PyAV);
timestamps run on across segments (``mpegts_copyts``), so the segments of a playlist form one timeline. The
fMP4 segment (output/fmp4.py) has the same members, so the writer (output/writer.py) cuts both the same way.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av

VIDEO_TB = Fraction(1, 90000)


class HashingFile:
    """The file a segment is written to; counts and hashes bytes on the way."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self._f.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def close(self) -> None:
        self._f.flush()
        self._f.close()


class TsSegment:
    """An MPEG-TS segment: H.264 copied, audio from ``audio_template``'s codec (AAC)."""

    init: bytes | None = None  # TS segments need no init segment

    def __init__(self, index: int, path: Path, start: float, has_video: bool, has_audio: bool,
                 audio_template, discontinuity: bool, picture: tuple[int, int] | None = None,
                 parameter_sets: bytes = b"", run_start: bool = False, video_codec: str = "h264"):
        """``picture``, ``parameter_sets``, ``run_start`` and ``video_codec`` are the fMP4 segment's
        (output/fmp4.py): a TS segment carries the parameter sets in line with its keyframes, its tracks as they
        came, and H.264 only (outputs.plan_streams)."""
        self.index = index
        self.start = start
        self.end = start
        self.discontinuity = discontinuity
        self.file = HashingFile(path)
        # flush_packets 0: the muxer hands its bytes over when its buffer is full (32 KiB), not after every packet
        # (a Python write and hash call each: ~80 a second per participant); the file is whole at close()
        self.container = av.open(self.file, "w", format="mpegts",
                                 options={"mpegts_copyts": "1", "flush_packets": "0"})
        self.video = self.container.add_mux_stream("h264", rate=90000) if has_video else None
        if self.video is not None:
            self.video.time_base = VIDEO_TB
        self.audio = self.container.add_stream_from_template(audio_template) if has_audio else None
        self.keyframe_requested = False

    def mux(self, packet: av.Packet) -> None:
        self.container.mux(packet)

    def close(self, end: float | None = None, run_end: bool = False) -> None:
        self.container.close()
        self.file.close()
