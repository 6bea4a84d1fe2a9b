"""A tiny RTP sink for tests: receives a Janus ``rtp_forward`` on UDP sockets, counts packets, spots H.264
IDRs, and sends RTCP PLI back to Janus's forwarder to ask for a keyframe.

Good enough to prove the media path; the recorder has its own (FFmpeg) demuxer.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field


def h264_nal_types(payload: bytes) -> list[int]:
    """NAL unit types carried by one H.264 RTP payload (RFC 6184: single NAL, STAP-A, FU-A start)."""
    if not payload:
        return []
    t = payload[0] & 0x1F
    if 1 <= t <= 23:
        return [t]
    if t == 24:  # STAP-A
        types, i = [], 1
        while i + 2 < len(payload):
            size = struct.unpack("!H", payload[i:i + 2])[0]
            if i + 2 < len(payload):
                types.append(payload[i + 2] & 0x1F)
            i += 2 + size
        return types
    if t == 28 and len(payload) > 1 and payload[1] & 0x80:  # FU-A, start bit
        return [payload[1] & 0x1F]
    return []


def pli(sender_ssrc: int = 1, media_ssrc: int = 0) -> bytes:
    """RTCP Picture Loss Indication (RFC 4585): 12 bytes."""
    return struct.pack("!BBHII", 0x81, 206, 2, sender_ssrc, media_ssrc)


@dataclass
class StreamStats:
    packets: int = 0
    bytes: int = 0
    payload_types: set[int] = field(default_factory=set)
    ssrcs: set[int] = field(default_factory=set)
    idr_times: list[float] = field(default_factory=list)  # time.monotonic() of each IDR start
    first_at: float | None = None
    last_at: float | None = None
    last_ssrc: int = 0


class RtpSink:
    """UDP receivers on ``host``: one per ``port``; ``stats[port]``.  Use as a context manager."""

    def __init__(self, host: str, ports: list[int], h264_pt: int | None = None) -> None:
        self.host = host
        self.stats = {p: StreamStats() for p in ports}
        self.h264_pt = h264_pt
        self._socks = {}
        for p in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((host, p))
            s.settimeout(0.2)
            self._socks[p] = s
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._recv, args=(p,), daemon=True) for p in ports]
        self.lock = threading.Lock()

    def __enter__(self) -> RtpSink:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in self._socks.values():
            s.close()

    def _recv(self, port: int) -> None:
        sock, st = self._socks[port], self.stats[port]
        while not self._stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            now = time.monotonic()
            pt = data[1] & 0x7F
            ssrc = struct.unpack("!I", data[8:12])[0]
            cc = data[0] & 0x0F
            off = 12 + 4 * cc
            if data[0] & 0x10 and len(data) >= off + 4:  # header extension
                off += 4 + 4 * struct.unpack("!H", data[off + 2:off + 4])[0]
            payload = data[off:]
            if data[0] & 0x20 and payload:  # padding
                payload = payload[:-payload[-1]]
            with self.lock:
                st.packets += 1
                st.bytes += len(data)
                st.payload_types.add(pt)
                st.ssrcs.add(ssrc)
                st.last_ssrc = ssrc
                st.first_at = st.first_at or now
                st.last_at = now
                if (self.h264_pt is None or pt == self.h264_pt) and 5 in h264_nal_types(payload):
                    st.idr_times.append(now)

    def send_pli(self, from_port: int, janus_host: str, janus_rtcp_port: int, media_ssrc: int = 0) -> None:
        """Send a PLI to Janus's forwarder RTCP port (``local_rtcp_port`` in the rtp_forward answer).  Sent
        from a socket bound to ``from_port`` (the forward's ``rtcp_port`` on our side)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((self.host, from_port))
            s.sendto(pli(media_ssrc=media_ssrc), (janus_host, janus_rtcp_port))
        finally:
            s.close()


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout}s")
