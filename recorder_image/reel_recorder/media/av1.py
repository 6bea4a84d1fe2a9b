"""The little AV1 bitstream knowledge the recorder needs: a temporal unit's sequence header, if it has one.

Temporal units come as FFmpeg's RTP depacketizer hands them over: OBUs in the low-overhead format (each with its
size field; AV1 specification, section 5). A WebRTC sender puts a sequence header in front of every key frame, and
a key frame is where a decoder can start: a temporal unit with a sequence header is taken as a keyframe, and a new
sequence header (another picture size, another profile) asks for a new init segment.
"""

from __future__ import annotations

OBU_SEQUENCE_HEADER = 1


def obus(data: bytes) -> list[tuple[int, int, int]]:
    """(type, start, end) of each OBU (start at its header); stops at an OBU without a size field or cut short."""
    out, i = [], 0
    while i < len(data):
        header = data[i]
        kind, has_extension, has_size = (header >> 3) & 0x0F, header & 0x04, header & 0x02
        j = i + 1 + (1 if has_extension else 0)
        if not has_size:
            out.append((kind, i, len(data)))
            break
        size, shift = 0, 0
        while j < len(data):
            byte = data[j]
            j += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            break
        if j + size > len(data):
            break
        out.append((kind, i, j + size))
        i = j + size
    return out


def sequence_header(data: bytes) -> bytes | None:
    """The temporal unit's sequence header OBU (its bytes), or None when it has none."""
    for kind, start, end in obus(data):
        if kind == OBU_SEQUENCE_HEADER:
            return data[start:end]
    return None
