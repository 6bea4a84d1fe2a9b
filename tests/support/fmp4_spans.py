"""What each track of an fMP4 (CMAF) media segment covers, read from its boxes as a player's buffer sees it.

``track_spans(segment, init)``: track kind ("video"/"audio") → (start, end) in seconds: the first fragment's
``tfdt`` and the last sample's end (``tfdt`` + the sum of the sample durations of ``trun``, or ``tfhd``/``trex``
defaults). Only what the recorder's muxer writes is read (version 0/1 ``tfdt``, ``trun`` flags 0x100..0x800).
"""

from __future__ import annotations

import struct


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    i, end = start, len(data) if end is None else end
    while i < end:
        size, kind = struct.unpack_from(">I4s", data, i)
        yield kind.decode("latin-1"), i, size
        i += size


def _children(data: bytes, offset: int, size: int, header: int = 8):
    return _boxes(data, offset + header, offset + size)


def init_tracks(init: bytes) -> dict[int, tuple[str, int, int]]:
    """track id → (kind, timescale, default sample duration) from an init segment's ``moov``."""
    tracks, defaults = {}, {}
    for kind, o, s in _boxes(init):
        if kind != "moov":
            continue
        for k, o2, s2 in _children(init, o, s):
            if k == "trak":
                tid = scale = handler = None
                for k3, o3, s3 in _children(init, o2, s2):
                    if k3 == "tkhd":
                        v = init[o3 + 8]
                        tid = struct.unpack_from(">I", init, o3 + 12 + (16 if v else 8))[0]
                    if k3 == "mdia":
                        for k4, o4, _s4 in _children(init, o3, s3):
                            if k4 == "mdhd":
                                v = init[o4 + 8]
                                scale = struct.unpack_from(">I", init, o4 + 12 + (16 if v else 8))[0]
                            if k4 == "hdlr":
                                handler = init[o4 + 16:o4 + 20].decode("latin-1")
                tracks[tid] = ({"vide": "video", "soun": "audio"}.get(handler, handler), scale)
            if k == "mvex":
                for k3, o3, _s3 in _children(init, o2, s2):
                    if k3 == "trex":
                        tid, _desc, duration = struct.unpack_from(">III", init, o3 + 12)
                        defaults[tid] = duration
    return {tid: (kind, scale, defaults.get(tid, 0)) for tid, (kind, scale) in tracks.items()}


def track_spans(segment: bytes, init: bytes) -> dict[str, tuple[float, float]]:
    tracks = init_tracks(init)
    spans: dict[str, tuple[float, float]] = {}
    for kind, o, s in _boxes(segment):
        if kind != "moof":
            continue
        for k, o2, s2 in _children(segment, o, s):
            if k != "traf":
                continue
            tid, base, total, default = None, 0, 0, None
            for k3, o3, _s3 in _children(segment, o2, s2):
                flags = int.from_bytes(segment[o3 + 9:o3 + 12], "big")
                if k3 == "tfhd":
                    tid = struct.unpack_from(">I", segment, o3 + 12)[0]
                    j = o3 + 16 + (8 if flags & 1 else 0) + (4 if flags & 2 else 0)
                    default = struct.unpack_from(">I", segment, j)[0] if flags & 8 else tracks[tid][2]
                if k3 == "tfdt":
                    base = struct.unpack_from(">Q" if segment[o3 + 8] else ">I", segment, o3 + 12)[0]
                if k3 == "trun":
                    count = struct.unpack_from(">I", segment, o3 + 12)[0]
                    j = o3 + 16 + (4 if flags & 1 else 0) + (4 if flags & 4 else 0)
                    for _ in range(count):
                        duration = default
                        if flags & 0x100:
                            duration = struct.unpack_from(">I", segment, j)[0]
                        j += 4 * sum(1 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
                        total += duration
            name, scale, _ = tracks[tid]
            start, end = base / scale, (base + total) / scale
            if name in spans:
                start, end = min(start, spans[name][0]), max(end, spans[name][1])
            spans[name] = (start, end)
    return spans
