"""Cheap publishers for the recorder benchmarks (``--publishers ffmpeg``): a pre-encoded clip (10 s of 640x480@30
H.264 baseline ~500 kb/s with SPS/PPS in band, and Opus), looped by the ``ffmpeg`` program with ``-c copy`` into a
Janus *remote publisher* (Janus 1.1's ``add_remote_publisher``, as tests/support/remote_publisher.py does): ~0.45 %
of a vCPU each, against 8-15 % for an aiortc publisher that encodes as it goes, so that counts beyond what 2 vCPUs
of aiortc publishers allow can be measured. For the recorder they are publishers like any other (Janus forwards or
relays their RTP the same way); they answer no PLI (a recorder starts at the clip's next keyframe, every 2 s)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from tests.harness.janus import Janus
from tests.harness.netns import TestNetwork


def make_clip(workdir: Path) -> Path:
    """The cheap publishers' clip (``--publishers ffmpeg``): 10 s, encoded once."""
    clip = workdir / "clip.ts"
    if not clip.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30", "-f", "lavfi",
                        "-i", "sine=frequency=440:sample_rate=48000", "-t", "10", "-c:v", "libx264",
                        "-profile:v", "baseline", "-preset", "veryfast", "-tune", "zerolatency", "-b:v", "500k",
                        "-maxrate", "500k", "-bufsize", "500k", "-g", "60", "-bf", "0",
                        "-x264-params", "repeat-headers=1", "-c:a", "libopus", "-b:a", "32k", "-ac", "2",
                        str(clip)], check=True)
    return clip


class CheapPublisher:
    """A Janus remote publisher fed by ``ffmpeg -stream_loop -1 -re -c copy`` (``--publishers ffmpeg``)."""

    def __init__(self, net: TestNetwork, janus: Janus, room: int, clip: Path, display: str, log: Path):
        self.janus, self.room = janus, room
        reply = janus.videoroom_request({"request": "add_remote_publisher", "room": room, "display": display,
                                         "iface": net.addr, "streams": [
            {"type": "video", "mindex": 0, "mid": "0", "codec": "h264"},
            {"type": "audio", "mindex": 1, "mid": "1", "codec": "opus", "stereo": True}]})
        self.id, target = reply["id"], f"rtp://{reply.get('ip') or net.addr}:{reply['port']}"
        self._log = open(log, "wb")  # noqa: SIM115 - closed in kill()
        self.proc = net.popen(["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
                               "-map", "0:v", "-c", "copy", "-f", "rtp", "-ssrc", "1000", "-payload_type", "96",
                               target, "-map", "0:a", "-c", "copy", "-f", "rtp", "-ssrc", "1010",
                               "-payload_type", "111", target],
                              stdout=subprocess.DEVNULL, stderr=self._log, stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()
        with contextlib.suppress(Exception):
            self.janus.videoroom_request({"request": "remove_remote_publisher", "room": self.room, "id": self.id})
