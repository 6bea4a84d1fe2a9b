"""What a recorder without the composite loads: not numpy (~6 MiB anonymous and an OpenBLAS thread in every pod;
issue 18's memory budget). numpy comes with the composite only (outputs.py imports it when asked for)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import reel_recorder.cli, reel_recorder.recorder, reel_recorder.outputs
from reel_recorder.output import fmp4, mp4, writer
from reel_recorder.output.silence import silent_frame
silent_frame("aac", 1), silent_frame("opus", 2)
print("numpy" in sys.modules)
"""


def test_a_recorder_without_the_composite_does_not_load_numpy():
    path = [str(REPO / "recorder_image"), str(REPO / "operator")]
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == ["False"]
