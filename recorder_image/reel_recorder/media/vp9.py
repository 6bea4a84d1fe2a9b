"""The little VP9 bitstream knowledge the recorder needs: whether a frame is a key frame, and its picture size.

Read from a frame's uncompressed header (VP9 bitstream specification, section 6.2), as FFmpeg's RTP depacketizer
hands frames over (a superframe's frames one after the other; the first frame's header decides). Only the fields
up to the frame size are read.
"""

from __future__ import annotations

SYNC_CODE = 0x498342
CS_RGB = 7


class _Bits:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("VP9 header cut short")
            value = (value << 1) | (self.data[byte] >> (7 - (self.pos & 7)) & 1)
            self.pos += 1
        return value


def _header(data: bytes) -> tuple[_Bits, int, bool] | None:
    """(reader after frame_type, profile, key frame), or None when this is no frame header."""
    bits = _Bits(data)
    try:
        if bits.read(2) != 2:  # frame_marker
            return None
        profile = bits.read(1) | bits.read(1) << 1
        if profile == 3:
            bits.read(1)  # reserved_zero
        if bits.read(1):  # show_existing_frame: a repeat, no new picture
            return bits, profile, False
        return bits, profile, bits.read(1) == 0
    except ValueError:
        return None


def is_keyframe(data: bytes) -> bool:
    """A key frame (frame_type 0): decodable on its own."""
    found = _header(data)
    return bool(found and found[2])


def picture_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) stated by a key frame; None for another frame or a header that does not parse."""
    found = _header(data)
    if not found or not found[2]:
        return None
    bits, profile, _ = found
    try:
        bits.read(2)  # show_frame, error_resilient_mode
        if bits.read(24) != SYNC_CODE:
            return None
        if profile >= 2:
            bits.read(1)  # ten_or_twelve_bit
        if bits.read(3) != CS_RGB:  # color_space
            bits.read(1)  # color_range
            if profile in (1, 3):
                bits.read(3)  # subsampling_x, subsampling_y, reserved_zero
        elif profile in (1, 3):
            bits.read(1)  # reserved_zero
        return bits.read(16) + 1, bits.read(16) + 1
    except ValueError:
        return None
