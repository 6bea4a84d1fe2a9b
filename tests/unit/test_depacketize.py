"""Whole frames out of their RTP payloads (ingest/depacketize.py), byte for byte: H.264 (single NAL units,
STAP-A, FU-A) as Annex-B, VP8 and VP9 without their payload descriptors, AV1's OBU elements as a low-overhead
OBU stream (a temporal delimiter first, each OBU with its size), Opus as sent."""

from __future__ import annotations

import struct

import pytest

from reel_recorder.ingest.depacketize import DEPACKETIZE, av1, av1_elements, h264, leb128, opus, vp8, vp9
from reel_recorder.media import av1 as av1_bits
from reel_recorder.media import h264 as h264_bits

SC = b"\x00\x00\x00\x01"
SPS = bytes([0x67, 0x42, 0xC0, 0x1F, 0xDA])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
IDR = bytes([0x65, 0x88, 0x84]) + bytes(range(40))


def stap_a(*nals: bytes) -> bytes:
    return bytes([0x78]) + b"".join(struct.pack("!H", len(n)) + n for n in nals)


def fu_a(nal: bytes, pieces: int) -> list[bytes]:
    """``nal`` in ``pieces`` FU-A fragments (RFC 6184 5.8): indicator (F, NRI, 28), header (S, E, type)."""
    body, size = nal[1:], -(-len(nal[1:]) // pieces)
    indicator = (nal[0] & 0xE0) | 28
    out = []
    for i in range(pieces):
        header = (0x80 if i == 0 else 0) | (0x40 if i == pieces - 1 else 0) | (nal[0] & 0x1F)
        out.append(bytes([indicator, header]) + body[i * size:(i + 1) * size])
    return out


def test_h264_single_nal_units_get_a_start_code_each():
    assert h264([bytes([0x41, 1, 2, 3]), bytes([0x41, 4])]) == SC + bytes([0x41, 1, 2, 3]) + SC + bytes([0x41, 4])


def test_h264_stap_a_units_are_taken_apart():
    assert h264([stap_a(SPS, PPS)]) == SC + SPS + SC + PPS


def test_h264_fu_a_fragments_are_joined_behind_the_header_they_rebuild():
    got = h264([stap_a(SPS, PPS), *fu_a(IDR, 3)])
    assert got == SC + SPS + SC + PPS + SC + IDR
    assert h264_bits.is_idr(got) and h264_bits.parameter_sets(got) == SC + SPS + SC + PPS


def test_h264_a_frame_of_several_fragmented_slices():
    second = bytes([0x65, 0x99]) + b"\x11" * 30
    assert h264(fu_a(IDR, 2) + fu_a(second, 4)) == SC + IDR + SC + second


@pytest.mark.parametrize("payload", [b"", bytes([0x79, 0, 1]), bytes([0x7D, 0x85, 1]), bytes([0x7C, 0x85]),
                                     bytes([0x78, 0x00, 0x09, 0x67])])
def test_h264_payloads_it_cannot_read_are_refused(payload):
    # empty; STAP-B; FU-B; an FU-A without data; a STAP-A unit longer than the packet
    with pytest.raises(ValueError):
        h264([payload])


def test_vp8_payload_descriptors_of_every_shape_are_taken_off():
    frame = b"\x10\x02\x00\x9d\x01\x2a"  # start of a key frame
    assert vp8([bytes([0x10]) + frame]) == frame  # S, partition 0, no extension
    assert vp8([bytes([0x90, 0x80, 0x05]) + frame]) == frame  # X, I: a 7-bit picture ID
    assert vp8([bytes([0x90, 0x80, 0x81, 0x23]) + frame]) == frame  # ... a 15-bit one
    assert vp8([bytes([0x90, 0xE0, 0x81, 0x23, 0x07, 0x40]) + frame]) == frame  # I, L, T
    assert vp8([bytes([0x90, 0x10, 0x20]) + frame[:3], bytes([0x00]) + frame[3:]]) == frame  # K; two packets
    with pytest.raises(ValueError):
        vp8([bytes([0x90, 0x80, 0x05])])  # a descriptor and nothing else


def test_vp9_payload_descriptors_are_taken_off_and_the_pieces_joined():
    data = bytes([0x82, 0x49, 0x83, 0x42]) + b"\x55" * 10
    assert vp9([bytes([0x0C]) + data]) == data  # B and E only (FFmpeg's packetizer)
    pid15 = bytes([0x88, 0x92, 0x34])  # I (15-bit picture ID), B
    assert vp9([pid15 + data[:6], bytes([0x84, 0x92, 0x34]) + data[6:]]) == data
    layers = bytes([0xAC, 0x05, 0x02, 0x07])  # I (7-bit), L (TID/U/SID/D, TL0PICIDX: non-flexible), B, E
    assert vp9([layers + data]) == data
    flexible = bytes([0xDC, 0x05, 0x03, 0x02])  # I, P, F, B, E: two reference indices (N on the first)
    assert vp9([flexible + data]) == data
    ss = bytes([0x8E, 0x05, 0x10, 0x02, 0x80, 0x01, 0xE0])  # I, B, E, V: one spatial layer's size, no G
    assert vp9([ss + data]) == data


def test_leb128():
    assert [leb128(v) for v in (0, 5, 127, 128, 300)] == [b"\x00", b"\x05", b"\x7f", b"\x80\x01", b"\xac\x02"]


def obu(kind: int, payload: bytes, *, ext: bool = False, sized: bool = False) -> bytes:
    header = bytes([(kind << 3) | (0x04 if ext else 0) | (0x02 if sized else 0)]) + (b"\x28" if ext else b"")
    return header + (leb128(len(payload)) if sized else b"") + payload


def aggregation(*, z: bool = False, y: bool = False, w: int = 0, n: bool = False) -> bytes:
    return bytes([(0x80 if z else 0) | (0x40 if y else 0) | (w << 4) | (0x08 if n else 0)])


def test_av1_elements_with_length_fields_become_obus_with_sizes_after_a_temporal_delimiter():
    seq, frame = obu(1, b"\x00\x00\x00\x0a\x0b\xf0"), obu(6, bytes(range(200)))
    packet = aggregation(n=True) + leb128(len(seq)) + seq + leb128(len(frame)) + frame
    got = av1([packet])
    want = b"\x12\x00" + bytes([0x0A]) + leb128(6) + seq[1:] + bytes([0x32]) + leb128(200) + frame[1:]
    assert got == want
    assert av1_bits.sequence_header(got) == bytes([0x0A, 6]) + seq[1:]  # the writer finds it


def test_av1_w_counts_elements_and_the_last_has_no_length():
    a, b = obu(1, b"\x01\x02"), obu(6, b"\x03\x04\x05")
    packet = aggregation(w=2) + leb128(len(a)) + a + b
    assert av1_elements([packet]) == [a, b]


def test_av1_an_obu_fragmented_over_three_packets_is_joined():
    frame = obu(6, bytes(range(256)) * 2, ext=True)  # with an extension byte; 514 bytes
    parts = [frame[:100], frame[100:300], frame[300:]]
    packets = [aggregation(y=True, w=1, n=True) + parts[0], aggregation(z=True, y=True, w=1) + parts[1],
               aggregation(z=True, w=1) + parts[2]]
    assert av1(packets) == b"\x12\x00" + bytes([0x36, 0x28]) + leb128(512) + frame[2:]


def test_av1_temporal_delimiters_and_tile_lists_sent_are_dropped_and_sized_obus_kept():
    td, tiles, sized = obu(2, b""), obu(8, b"\x09"), obu(6, b"\x0a\x0b", sized=True)
    packet = aggregation(w=3) + leb128(len(td)) + td + leb128(len(tiles)) + tiles + sized
    assert av1([packet]) == b"\x12\x00" + sized


@pytest.mark.parametrize("packets", [
    [aggregation(z=True, w=1) + obu(6, b"\x01")],  # continues nothing
    [aggregation(y=True, w=1) + obu(6, b"\x01")],  # never ends
    [aggregation() + leb128(9) + obu(6, b"\x01")],  # an element longer than its packet
    [aggregation(w=1) + bytes([0x80 | (6 << 3), 1])],  # the forbidden bit
])
def test_av1_payloads_it_cannot_read_are_refused(packets):
    with pytest.raises(ValueError):
        av1(packets)


def test_opus_is_the_payload_and_every_codec_has_a_depacketizer():
    assert opus([b"\xf8\xff\xfe"]) == b"\xf8\xff\xfe"
    assert set(DEPACKETIZE) == {"h264", "vp8", "vp9", "av1", "opus"}
    assert h264([memoryview(stap_a(SPS))]) == SC + SPS  # the gate hands memoryviews of its datagrams
