"""Whole frames out of their RTP payloads (pure): what the RTP gate (gate.py) hands the writer.

The gate has already checked that a frame is whole (rtppacket.py: every packet from its start to its marker, the
codec's own start and end marks agreeing); here its payloads, in order, become the bytes the writer takes, the
same bytes FFmpeg's RTP depacketizers produced when the forward ingest still went through them:

- **H.264** (RFC 6184, packetization mode 1): an Annex-B access unit, each NAL unit after a 4-byte start code;
  a single NAL unit as it is, each unit of a STAP-A, a FU-A's fragments joined behind the NAL header they
  rebuild. Parameter sets come in band (Janus forwards the publisher's; no ``sprop-parameter-sets``).
- **VP8** (RFC 7741): the payload descriptor taken off, the partitions joined.
- **VP9** (RFC 9628): the payload descriptor taken off each packet, the frames of the picture joined.
- **AV1** (AOMedia's RTP payload format): the OBU elements (fragments joined across packets) as a low-overhead
  OBU stream: a temporal delimiter first, each OBU with its ``obu_size``; temporal delimiters and tile lists
  sent in the payload are dropped.
- **Opus**: the payload as it is.

Each function takes the payloads (``bytes``, RTP header and padding off) and raises ``ValueError`` for one it
cannot read (the gate drops the frame as incomplete).
"""

from __future__ import annotations

from collections.abc import Callable

from .rtppacket import vp8_payload_offset, vp9_payload_offset

START = b"\x00\x00\x00\x01"
_STAP_A, _FU_A = 24, 28
OBU_TEMPORAL_DELIMITER, OBU_TILE_LIST = 2, 8
TEMPORAL_DELIMITER = b"\x12\x00"  # its OBU header with obu_has_size_field, size 0


def h264(payloads: list[bytes]) -> bytes:
    out: list[bytes] = []
    for p in payloads:
        if not p:
            raise ValueError("empty H.264 payload")
        kind = p[0] & 0x1F
        if 1 <= kind <= 23:
            out += (START, p)
        elif kind == _STAP_A:
            i = 1
            while i + 2 < len(p):
                size = (p[i] << 8) | p[i + 1]
                i += 2
                if size == 0 or i + size > len(p):
                    raise ValueError("STAP-A unit beyond its packet")
                out += (START, p[i:i + size])
                i += size
        elif kind == _FU_A:
            if len(p) < 3:
                raise ValueError("FU-A too short")
            if p[1] & 0x80:
                out += (START, bytes(((p[0] & 0xE0) | (p[1] & 0x1F),)))
            out.append(p[2:])
        else:
            raise ValueError(f"H.264 payload of NAL type {kind} (not packetization mode 1)")
    return b"".join(out)


def vp8(payloads: list[bytes]) -> bytes:
    return _after_descriptors(payloads, vp8_payload_offset, "VP8")


def vp9(payloads: list[bytes]) -> bytes:
    return _after_descriptors(payloads, vp9_payload_offset, "VP9")


def _after_descriptors(payloads: list[bytes], offset: Callable[[bytes, int, int], int], codec: str) -> bytes:
    """The payloads without their payload descriptors (``offset(data, 0, len)``: where the data starts)."""
    out = []
    for p in payloads:
        j = offset(p, 0, len(p)) if p else 0
        if not p or j >= len(p):
            raise ValueError(f"{codec} payload without data")
        out.append(p[j:])
    return b"".join(out)


def leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_leb128(p: bytes, i: int) -> tuple[int, int]:
    value = 0
    for n in range(8):
        if i + n >= len(p):
            break
        byte = p[i + n]
        value |= (byte & 0x7F) << (7 * n)
        if not byte & 0x80:
            return value, i + n + 1
    raise ValueError("AV1 length field cut short")


def av1_elements(payloads: list[bytes]) -> list[bytes]:
    """The OBUs of a temporal unit as sent (their elements, fragments joined), from its packets' payloads."""
    obus: list[bytes] = []
    open_obu: list[bytes] | None = None  # the fragments of an OBU that continues in the next packet
    for p in payloads:
        if not p:
            raise ValueError("empty AV1 payload")
        z, y, w = p[0] & 0x80, p[0] & 0x40, (p[0] >> 4) & 0x03
        if bool(z) != (open_obu is not None):
            raise ValueError("AV1 fragment that does not continue the one before")
        i, count = 1, 0
        while i < len(p):
            count += 1
            if w == 0 or count < w:
                size, i = _read_leb128(p, i)
            else:
                size = len(p) - i  # the last element of W: no length field
            if size == 0 or i + size > len(p):
                raise ValueError("AV1 element beyond its packet")
            element = p[i:i + size]
            i += size
            if open_obu is not None:  # the first element continues the open OBU
                open_obu.append(element)
                element, open_obu = b"".join(open_obu), None
            if y and i >= len(p):
                open_obu = [element]
            else:
                obus.append(element)
    if open_obu is not None:
        raise ValueError("AV1 temporal unit ends inside an OBU")
    return obus


def av1(payloads: list[bytes]) -> bytes:
    out = [TEMPORAL_DELIMITER]
    for obu in av1_elements(payloads):
        header = obu[0]
        kind = (header >> 3) & 0x0F
        if header & 0x80:
            raise ValueError("AV1 OBU with its forbidden bit set")
        if kind in (OBU_TEMPORAL_DELIMITER, OBU_TILE_LIST):
            continue
        if header & 0x02:  # it has its size field already
            out.append(obu)
            continue
        head = 2 if header & 0x04 else 1  # with the extension byte
        if len(obu) < head:
            raise ValueError("AV1 OBU header cut short")
        out += (bytes((header | 0x02,)), obu[1:head], leb128(len(obu) - head), obu[head:])
    return b"".join(out)


def opus(payloads: list[bytes]) -> bytes:
    return b"".join(payloads)


DEPACKETIZE: dict[str, Callable[[list[bytes]], bytes]] = {
    "h264": h264, "vp8": vp8, "vp9": vp9, "av1": av1, "opus": opus}
