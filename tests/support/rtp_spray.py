"""Sends forged RTP at a host's UDP ports and says how many datagrams went out: the intruder of the NetworkPolicy
test (tests/e2e/test_network_policy.py), run inside a pod as ``python3 - HOST COUNT PORT...`` with this file on
stdin. Standard library only (the pod's image has Python, not this repository).

Each port gets COUNT datagrams, round robin, ~2 ms apart, from one socket (one source port): RTP version 2,
payload type 96 (H.264, what the recorder asks Janus for), a random SSRC, far-future timestamps and an H.264 IDR
slice of garbage, the packets a forger would send to get something into a recording. Prints one JSON line:
{"sent": N, "errors": M} (send errors, e.g. ICMP port unreachable reported on the socket, are counted, not fatal).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time


def packet(seq: int, ssrc: int) -> bytes:
    header = struct.pack("!BBHII", 0x80, 0x80 | 96, seq & 0xFFFF, (0x7FFF0000 + seq * 3000) & 0xFFFFFFFF, ssrc)
    return header + b"\x65" + os.urandom(900)  # NAL type 5 (IDR slice), random body


def main(argv: list[str]) -> int:
    host, count, ports = argv[0], int(argv[1]), [int(p) for p in argv[2:]]
    ssrc = int.from_bytes(os.urandom(4), "big")
    sent = errors = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(count):
            for port in ports:
                try:
                    s.sendto(packet(i, ssrc), (host, port))
                    sent += 1
                except OSError:
                    errors += 1
            time.sleep(0.002)
    print(json.dumps({"sent": sent, "errors": errors}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
