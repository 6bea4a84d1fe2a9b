"""The little H.264 bitstream knowledge the recorder needs: which NAL units an access unit holds.

Packets are Annex-B (start-code delimited), as FFmpeg's RTP depacketizer produces them.
"""

from __future__ import annotations

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8


def nal_units(data: bytes) -> list[tuple[int, int, int]]:
    """(nal_type, start, end) of every NAL unit; start/end include the start code."""
    units: list[tuple[int, int, int]] = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        start = i - 1 if i > 0 and data[i - 1] == 0 else i
        header = i + 3
        nxt = data.find(b"\x00\x00\x01", header)
        end = len(data) if nxt == -1 else (nxt - 1 if data[nxt - 1] == 0 else nxt)
        if header < len(data):
            units.append((data[header] & 0x1F, start, end))
        i = nxt
    return units


def parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS units of an access unit (with start codes), in order; b"" when none."""
    return b"".join(data[s:e] for t, s, e in nal_units(data) if t in (NAL_SPS, NAL_PPS))


def has_parameter_sets(data: bytes) -> bool:
    types = {t for t, _, _ in nal_units(data)}
    return NAL_SPS in types and NAL_PPS in types


def has_picture(data: bytes) -> bool:
    """The access unit holds a coded slice (NAL types 1-5), not only parameter sets, SEI or delimiters."""
    return any(1 <= t <= 5 for t, _, _ in nal_units(data))


def is_idr(data: bytes) -> bool:
    return any(t == NAL_IDR for t, _, _ in nal_units(data))
