"""Only Janus feeds a recording: the SDP the ingest gives FFmpeg takes packets from Janus's address only (real
FFmpeg, on loopback: 127.0.0.2 plays Janus, 127.0.0.3 a stranger sending forged RTP and an RTCP BYE)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import av

from reel_recorder.ingest.rtp import PortAllocator, RtpStream

JANUS, STRANGER, US = "127.0.0.2", "127.0.0.3", "127.0.0.1"


def _send(src: str, port: int, ssrc: int, n: int, *, bye: bool = False) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        for i in range(n):
            ts = i * 960 if ssrc != 0xBAD else 0x7FFF0000 + i * 960  # the stranger's: far in the future
            s.sendto(struct.pack("!BBHII", 0x80, 111, i, ts, ssrc) + b"\xf8\xff\xfe", (US, port))
            if bye:
                s.sendto(struct.pack("!BBHI", 0x81, 203, 1, ssrc), (US, port + 1))  # RTCP BYE
                s.sendto(struct.pack("!BBHI", 0x81, 203, 1, ssrc), (US, port))
            time.sleep(0.01)


def _received(tmp_path, source: str | None) -> list[int]:
    port = PortAllocator(US).allocate()
    sdp = tmp_path / "s.sdp"
    sdp.write_text(RtpStream(kind="audio", codec="opus", payload_type=111, port=port, local_addr=US,
                             source=source).sdp())

    def attack():
        time.sleep(0.3)
        stranger = threading.Thread(target=_send, args=(STRANGER, port, 0xBAD, 80), kwargs={"bye": True})
        stranger.start()
        _send(JANUS, port, 0x600D, 80)
        stranger.join()

    threading.Thread(target=attack, daemon=True).start()
    pts = []
    with av.open(str(sdp), format="sdp", timeout=(3, 1.5),
                 options={"protocol_whitelist": "file,udp,rtp", "analyzeduration": "200000", "probesize": "32"}) as c:
        try:
            for packet in c.demux():
                if packet.pts is not None:
                    pts.append(packet.pts)
        except (av.error.ExitError, TimeoutError, av.error.EOFError):
            pass  # the read timed out: everything sent has come
    return pts


def test_the_sdp_names_janus_as_the_only_source():
    sdp = RtpStream("audio", "opus", 111, 40000, "10.1.2.3", source="10.1.2.4").sdp()
    assert "a=source-filter: incl IN IP4 10.1.2.3 10.1.2.4" in sdp
    assert "source-filter" not in RtpStream("audio", "opus", 111, 40000, "10.1.2.3").sdp()


def test_a_stranger_cannot_put_a_packet_into_the_stream_nor_end_it(tmp_path):
    pts = _received(tmp_path, JANUS)
    assert len(pts) == 80, len(pts)  # Janus's 80, none of the stranger's, and no BYE ended it early
    assert max(pts) - min(pts) < 80 * 960, (min(pts), max(pts))  # no far-future timestamp got in


def test_without_the_filter_the_stranger_gets_in(tmp_path):
    """What the filter is for (and that the attack above is a real one)."""
    pts = _received(tmp_path, None)
    assert len(pts) != 80 or max(pts) - min(pts) >= 80 * 960, (len(pts), min(pts), max(pts))
