"""Sprays forged RTP and RTCP at a recorder's ports, from whatever address it binds (a test runs it inside the
network namespace of Janus, to send from Janus's own address): random SSRCs, random or far-future timestamps,
garbage IDR slices and FU-A fragments, Opus garbage, RTCP BYEs.

    python -m tests.support.forger --source ADDR --target ADDR --ports P1,P2 --seconds S

Prints the number of RTP packets sent to the RTP ports (RTCP and port + 1 not counted) when done.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import struct
import time


def packets(i: int) -> list[tuple[int, bytes]]:
    """(port offset, datagram) of one round: three forged RTP packets, RTCP BYEs on both ports."""
    ssrc = int.from_bytes(os.urandom(4), "big")
    ts = random.choice([random.getrandbits(32), 0x7FFFFFFF - i])
    seq = random.getrandbits(16)
    idr = struct.pack("!BBHII", 0x80, 0x80 | 96, seq, ts, ssrc) + b"\x65" + os.urandom(900)
    fu_a = struct.pack("!BBHII", 0x80, 96, seq + 1 & 0xFFFF, ts, ssrc) + b"\x7c\x85" + os.urandom(900)
    opus = struct.pack("!BBHII", 0x80, 111, seq, ts, ssrc) + os.urandom(60)
    bye = struct.pack("!BBHI", 0x81, 203, 1, ssrc)
    return [(0, idr), (0, fu_a), (0, opus), (0, bye), (1, bye)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--ports", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    ports = [int(p) for p in args.ports.split(",")]
    sent = 0
    deadline = time.monotonic() + args.seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((args.source, 0))
        i = 0
        while time.monotonic() < deadline:
            for port in ports:
                for offset, data in packets(i):
                    try:
                        s.sendto(data, (args.target, port + offset))
                        sent += offset == 0 and data[1] & 0x7F != 75  # RTP to the RTP port (not the BYE)
                    except OSError:
                        pass
            i += 1
            time.sleep(0.01)
    print(sent, flush=True)


if __name__ == "__main__":
    main()
