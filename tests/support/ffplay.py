"""Playing a stored HLS recording with FFmpeg's own player, ffplay (Debian's ``ffmpeg`` package: hack/deps.sh).

``play_in_ffplay(folder)`` plays ``folder/index.m3u8`` in real time to its end with SDL's dummy video and audio
drivers (no display, no sound card: every picture and sample still decoded and presented on the player's clock)
and ``-autoexit``; returns the exit status, the seconds it took and what it logged at level error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class FfplayResult:
    returncode: int
    wall: float  # seconds from start to exit: a recording played to its end takes about its duration
    errors: list[str]


def missing() -> str | None:
    """Why ffplay cannot run here, or None."""
    return None if shutil.which("ffplay") else "no ffplay (Debian package ffmpeg): run hack/deps.sh"


def play_in_ffplay(folder: Path, *, timeout: float = 120.0) -> FfplayResult:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    t0 = time.monotonic()
    done = subprocess.run(["ffplay", "-autoexit", "-loglevel", "error", "-hide_banner", str(folder / "index.m3u8")],
                          env=env, capture_output=True, timeout=timeout, check=False)
    lines = (done.stdout + done.stderr).decode(errors="replace").splitlines()
    return FfplayResult(done.returncode, time.monotonic() - t0, [line for line in lines if line.strip()])
