"""Only Janus feeds a recording: while two participants publish, a third address on the same network sends forged
RTP (random SSRCs, far-future timestamps, garbage IDR slices) and RTCP BYEs at every port the recorder receives
on. The recording is what it would be without the attack: every frame, no foreign one, no decode error, no
stream ended early."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.support.analyze import read_participant, recording_folders

pytestmark = pytest.mark.integration
FPS = 30
REPO = Path(__file__).resolve().parents[2]


class Attacker:
    """Sprays forged packets from ``source`` (the root namespace's end of the test network) at ``ports``."""

    def __init__(self, source: str, target: str):
        self.source, self.target = source, target
        self.ports: set[int] = set()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        return self.sent

    def _packets(self, i: int) -> list[tuple[int, bytes]]:
        ssrc = int.from_bytes(os.urandom(4), "big")
        ts = 0x7FFFFFFF - i  # far in the future of any real stream
        idr = struct.pack("!BBHII", 0x80, 0x80 | 96, i & 0xFFFF, ts, ssrc) + b"\x65" + os.urandom(900)
        fu_a = struct.pack("!BBHII", 0x80, 96, (i + 7) & 0xFFFF, ts, ssrc) + b"\x7c\x85" + os.urandom(900)
        opus = struct.pack("!BBHII", 0x80, 111, i & 0xFFFF, ts, ssrc) + os.urandom(60)
        bye = struct.pack("!BBHI", 0x81, 203, 1, ssrc)
        return [(0, idr), (0, fu_a), (0, opus), (0, bye), (1, bye), (1, os.urandom(40))]

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((self.source, 0))
            i = 0
            while not self._stop.is_set():
                for port in list(self.ports):
                    for offset, data in self._packets(i):
                        try:
                            s.sendto(data, (self.target, port + offset))
                            self.sent += 1
                        except OSError:
                            pass
                i += 1
                time.sleep(0.01)


def _forwarded_ports(janus, room) -> set[int]:
    return {f["port"] for p in janus.list_forwarders(room.id, secret=room.secret) for f in p.get("forwarders") or []
            if f.get("port")}


def test_forged_rtp_and_rtcp_from_a_third_address_change_nothing(record, room, publisher, janus, test_network):
    run = record(room, recording={"segmentSeconds": 4})
    run.wait_event("joined", timeout=30)
    attacker = Attacker(test_network.host_addr, test_network.addr)
    attacker.start()
    alice = publisher(room, display="alice", duration=15)
    bob = publisher(room, display="bob", duration=15)
    deadline = time.monotonic() + 30
    while len(attacker.ports) < 4:  # both participants' audio and video
        assert time.monotonic() < deadline, attacker.ports
        attacker.ports |= _forwarded_ports(janus, room)
        time.sleep(0.1)
    sent = {"alice": alice.wait(90), "bob": bob.wait(90)}
    forged = attacker.stop()
    status = run.wait(60)
    assert status["phase"] == "Completed" and status["stopReason"] == "NoUsers", status
    assert forged > 5000, forged
    outputs = {name.rsplit("_", 1)[0]: read_participant(folder) for name, folder in
               recording_folders(run.output).items()}
    assert sorted(outputs) == ["alice", "bob"]
    figures = []
    for who, (info, decoded) in outputs.items():
        frames_sent = sent[who]["video_frames"]
        assert abs(decoded.video_frames - frames_sent) <= 0.01 * frames_sent, (who, decoded.video_frames, frames_sent)
        assert decoded.decode_errors == 0, who
        assert decoded.sizes == {(640, 480)}, decoded.sizes  # no foreign picture
        assert not any(d for _, _, d in info.entries), info.entries  # no stream ended or restarted
        total = sum(d for _, d, _ in info.entries)
        assert all(0 < d <= 5.0 for _, d, _ in info.entries), info.entries  # no segment claims hours
        assert abs(total - frames_sent / FPS) < 0.3, (total, frames_sent)
        assert abs(decoded.audio_samples / 48000 - total) < 0.3
        figures.append(f"{who}: {decoded.video_frames}/{frames_sent} frames, {total:.2f} s")
    print(f"forged media: {forged} packets at {len(attacker.ports)} ports; " + "; ".join(figures))


def test_forged_rtp_from_janus_own_address_with_foreign_ssrcs_changes_nothing(record, room, publisher, janus,
                                                                               test_network):
    """The forger sits where Janus is (its network namespace, its address): only the SSRC we asked Janus's
    forwarder to use tells its packets from Janus's (the RTP gate, recorder_image/reel_recorder/ingest/gate.py)."""
    run = record(room, recording={"segmentSeconds": 4})
    run.wait_event("joined", timeout=30)
    alice = publisher(room, display="alice", duration=12)
    deadline = time.monotonic() + 30
    ports: set[int] = set()
    while len(ports) < 2:
        assert time.monotonic() < deadline, ports
        ports |= _forwarded_ports(janus, room)
        time.sleep(0.1)
    forger = test_network.popen([sys.executable, "-m", "tests.support.forger", "--source", test_network.addr,
                                 "--target", test_network.addr, "--ports", ",".join(map(str, sorted(ports))),
                                 "--seconds", "8"], stdout=subprocess.PIPE, text=True, cwd=REPO)
    sent = alice.wait(90)
    forged = int(forger.communicate(timeout=30)[0])
    status = run.wait(60)
    assert status["phase"] == "Completed" and status["stopReason"] == "NoUsers", status
    assert forged > 2000, forged
    (folder,) = recording_folders(run.output).values()
    info, decoded = read_participant(folder)
    frames_sent = sent["video_frames"]
    assert abs(decoded.video_frames - frames_sent) <= 0.01 * frames_sent, (decoded.video_frames, frames_sent)
    assert decoded.decode_errors == 0, decoded.decode_messages
    assert decoded.sizes == {(640, 480)}, decoded.sizes
    assert not any(d for _, _, d in info.entries), info.entries
    assert all(0 < d <= 5.0 for _, d, _ in info.entries), info.entries
    (part,) = json.loads(next(run.output.rglob("manifest.json")).read_text())["participants"]
    assert part["packetsRejected"] >= forged, (part, forged)  # every forged RTP packet was kept out, counted
    assert part["droppedFrames"] == 0, part
    print(f"forged from Janus's address: {forged} RTP packets, {part['packetsRejected']} rejected; "
          f"{decoded.video_frames}/{frames_sent} frames")
