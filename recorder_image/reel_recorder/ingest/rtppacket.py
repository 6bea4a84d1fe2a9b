"""One RTP packet as the RTP gate sees it (gate.py): its header, and the marks of the codecs whose frames the gate
assembles: where an H.264 NAL unit (RFC 6184), a VP8 frame (RFC 7741), a VP9 frame (RFC 9628) or an AV1 OBU (the
AOMedia "RTP Payload Format for AV1") starts and ends, and whether it is a keyframe. Pure functions of the packet's
bytes; depacketize.py turns a whole frame's payloads into what the writer takes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from ..media import vp9

_RTP = struct.Struct("!BBHII")


@dataclass(slots=True)
class RtpPacket:
    data: bytes
    marker: bool
    pt: int
    seq: int
    ts: int
    ssrc: int
    payload: int  # offset of the payload in ``data``
    end: int  # end of the payload (padding taken off)


def parse_rtp(data: bytes) -> RtpPacket | None:
    """The RTP header of a datagram; None when it is not an RTP packet (too short, version not 2, RTCP, bad
    extension or padding)."""
    if len(data) < 12:
        return None
    b0, b1, seq, ts, ssrc = _RTP.unpack_from(data)
    if b0 >> 6 != 2 or 72 <= (b1 & 0x7F) <= 79:  # RTCP (200-207 with the marker bit) is not media
        return None
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(data[offset + 2:offset + 4], "big")
    end = len(data)
    if b0 & 0x20:
        end -= data[-1]
    if end < offset:
        return None
    return RtpPacket(data, bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, offset, end)


# -- codec marks ----------------------------------------------------------------------------------------------

def h264_marks(pkt: RtpPacket) -> tuple[bool, bool, bool]:
    """(starts a NAL unit, ends one, carries an IDR slice) of an H.264 RTP payload (RFC 6184)."""
    if pkt.end <= pkt.payload:
        return False, False, False
    data, i = pkt.data, pkt.payload
    t = data[i] & 0x1F
    if 1 <= t <= 23:
        return True, True, t == 5
    if t == 24:  # STAP-A: whole NAL units
        idr, j = False, i + 1
        while j + 2 < pkt.end:
            size = int.from_bytes(data[j:j + 2], "big")
            idr |= data[j + 2] & 0x1F == 5
            j += 2 + size
        return True, True, idr
    if t == 28 and pkt.end - i >= 2:  # FU-A
        fu = data[i + 1]
        return bool(fu & 0x80), bool(fu & 0x40), fu & 0x1F == 5
    return False, False, False  # STAP-B, MTAP, FU-B (not in packetization-mode 1), or reserved


def vp8_marks(pkt: RtpPacket) -> tuple[bool, bool, bool]:
    """(starts the frame, ends it: unknown, keyframe) of a VP8 RTP payload (RFC 7741): a frame starts at the
    start of its partition 0; only the marker bit tells its end."""
    data, i, end = pkt.data, pkt.payload, pkt.end
    if end <= i:
        return False, False, False
    start = bool(data[i] & 0x10) and data[i] & 0x07 == 0
    j = vp8_payload_offset(data, i, end)
    key = start and j < end and not data[j] & 0x01
    return start, False, key


def vp8_payload_offset(data: bytes, i: int, end: int) -> int:
    """Where the VP8 data starts after the payload descriptor at ``data[i]`` (RFC 7741 section 4.2)."""
    j = i + 1
    if data[i] & 0x80 and j < end:  # X: an extension byte
        x = data[j]
        j += 1
        if x & 0x80 and j < end:  # I: a 7- or 15-bit picture ID
            j += 2 if data[j] & 0x80 else 1
        j += bool(x & 0x40) + bool(x & 0x30)  # L: TL0PICIDX; T or K: TID/Y/KEYIDX
    return j


def h264_opens(pkt: RtpPacket) -> bool:
    """The packet can only be the first of an access unit: its first NAL unit is an SPS or an access unit
    delimiter (an encoder puts them before the slices of a frame)."""
    if pkt.end <= pkt.payload:
        return False
    t = pkt.data[pkt.payload] & 0x1F
    if t == 24 and pkt.end - pkt.payload > 3:
        t = pkt.data[pkt.payload + 3] & 0x1F
    return t in (7, 9)


def h264_whole(packets: list[RtpPacket]) -> bool:
    """Every NAL unit of the frame whole: FU-A fragments from a start to an end, nothing else inside."""
    inside = False  # within a fragmented NAL unit
    for p in packets:
        starts, ends, _ = h264_marks(p)
        if starts == inside:  # a start inside a fragment, or a continuation outside one
            return False
        inside = not ends
    return not inside


def vp8_whole(packets: list[RtpPacket]) -> bool:
    """The frame's first packet starts it, and no other does."""
    return vp8_marks(packets[0])[0] and not any(vp8_marks(p)[0] for p in packets[1:])


def _vp9_descriptor(pkt: RtpPacket) -> tuple[int, int]:
    return vp9_descriptor(pkt.data, pkt.payload, pkt.end)


def vp9_payload_offset(data: bytes, i: int, end: int) -> int:
    """Where the VP9 data starts after the payload descriptor at ``data[i]`` (depacketize.py)."""
    return vp9_descriptor(data, i, end)[0]


def vp9_descriptor(data: bytes, i: int, end: int) -> tuple[int, int]:
    """(offset of the VP9 data after the payload descriptor at ``data[i]``, spatial layer SID: 0 without layer
    indices)."""
    d, j, sid = data[i], i + 1, 0
    if d & 0x80 and j < end:  # I: a picture ID of 7 or 15 bits
        j += 2 if data[j] & 0x80 else 1
    if d & 0x20 and j < end:  # L: TID U SID D, and TL0PICIDX in non-flexible mode
        sid = (data[j] >> 1) & 0x07
        j += 1 if d & 0x10 else 2
    if d & 0x10 and d & 0x40:  # F and P: up to 3 reference indices, N marks another
        while j < end and data[j] & 0x01:
            j += 1
        j += 1
    if d & 0x02 and j < end:  # V: the scalability structure
        ss = data[j]
        j += 1 + (4 * ((ss >> 5) + 1) if ss & 0x10 else 0)
        if ss & 0x08 and j < end:  # G: the picture group description
            groups, j = data[j], j + 1
            for _ in range(groups):
                if j >= end:
                    break
                j += 1 + ((data[j] >> 2) & 0x03)
    return j, sid


def vp9_marks(pkt: RtpPacket) -> tuple[bool, bool, bool]:
    """(starts a frame, ends one, keyframe) of a VP9 RTP payload (RFC 9628): the descriptor's B and E bits (one
    picture may hold a frame per spatial layer, each from a B to an E); a keyframe is the start of a frame in the
    lowest spatial layer that is not inter-picture predicted (P=0) and whose own header says key frame (FFmpeg's
    RTP packetizer never sets P)."""
    if pkt.end <= pkt.payload:
        return False, False, False
    d = pkt.data[pkt.payload]
    start, end = bool(d & 0x08), bool(d & 0x04)
    if not start or d & 0x40:
        return start, end, False
    j, sid = _vp9_descriptor(pkt)
    return start, end, sid == 0 and j < pkt.end and vp9.is_keyframe(pkt.data[j:min(pkt.end, j + 4)])


def vp9_opens(pkt: RtpPacket) -> bool:
    """The packet can only be the first of a picture: it starts the frame of the lowest spatial layer."""
    return pkt.end > pkt.payload and bool(pkt.data[pkt.payload] & 0x08) and _vp9_descriptor(pkt)[1] == 0


def av1_marks(pkt: RtpPacket) -> tuple[bool, bool, bool]:
    """(starts an OBU, ends one, keyframe) of an AV1 RTP payload: the aggregation header's Z bit (the first OBU
    element continues one from the packet before) and Y bit (the last one continues in the next packet); N (the
    first packet of a coded video sequence: a sequence header and a key frame) is the keyframe."""
    if pkt.end <= pkt.payload:
        return False, False, False
    z = pkt.data[pkt.payload]
    return not z & 0x80, not z & 0x40, bool(z & 0x08)


def av1_opens(pkt: RtpPacket) -> bool:
    """The packet can only be the first of a temporal unit: it begins a coded video sequence (N)."""
    return pkt.end > pkt.payload and pkt.data[pkt.payload] & 0x88 == 0x08


def continued_whole(marks: Callable[[RtpPacket], tuple[bool, bool, bool]]) -> Callable[[list[RtpPacket]], bool]:
    """For payloads whose packets say whether they start and end a unit (VP9 frames, AV1 OBUs): the frame's first
    packet starts one, its last ends one, and each packet continues exactly what the one before left open."""
    def whole(packets: list[RtpPacket]) -> bool:
        inside = False  # a unit left open by the packet before
        for p in packets:
            starts, ends, _ = marks(p)
            if starts == inside:
                return False
            inside = not ends
        return not inside
    return whole


MARKS: dict[str, Callable[[RtpPacket], tuple[bool, bool, bool]]] = {
    "h264": h264_marks, "vp8": vp8_marks, "vp9": vp9_marks, "av1": av1_marks}
WHOLE: dict[str, Callable[[list[RtpPacket]], bool]] = {
    "h264": h264_whole, "vp8": vp8_whole, "vp9": continued_whole(vp9_marks), "av1": continued_whole(av1_marks)}
OPENS: dict[str, Callable[[RtpPacket], bool]] = {
    "h264": h264_opens, "vp8": lambda p: vp8_marks(p)[0], "vp9": vp9_opens, "av1": av1_opens}
