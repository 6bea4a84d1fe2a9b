"""A recording played to its end by a real HLS player: hls.js in headless Chromium (tests/support/browser.py).

The recorder records a real Janus room (one publisher who leaves and comes back: two runs, a discontinuity and,
in fMP4, a second init segment); the stored folder is then played from 127.0.0.1 by hls.js. It must play to
``ended`` without a fatal error, over the playlist's whole duration, with every recorded picture decoded; and
ffplay plays it to its end without an error (tests/support/ffplay.py). fMP4: the
buffer is one range, without holes: each run's tracks start and end together (output/fmp4.py; before, a run's sound
ended one audio frame before its picture: a hole at the rejoin, and a stall 60 ms before the end).
"""

from __future__ import annotations

import pytest
from tests.support import ffplay
from tests.support.analyze import read_participant, recording_folders
from tests.support.browser import missing, play_in_chromium

FORMATS = [pytest.param({}, id="ts-aac"),
           pytest.param({"segmentFormat": "fmp4"}, id="fmp4-opus"),
           pytest.param({"segmentFormat": "fmp4", "audioCodec": "aac"}, id="fmp4-aac")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_hlsjs_in_chromium_plays_the_recording_to_its_end(record, room, publisher, fmt):
    why = missing()
    assert why is None, why
    run = record(room, recording={"segmentSeconds": 2, "maxIdleSeconds": 10, **fmt})  # a slow publisher start
    run.wait_event("joined", timeout=30)
    p = publisher(room, display="erin", duration=10, leave_at=4, rejoin_at=6, id=4201)
    p.wait(90)
    status = run.wait(60)
    assert status["phase"] == "Completed", status
    [folder] = recording_folders(run.output).values()
    info, decoded = read_participant(folder)
    assert info.ended and decoded.decode_errors == 0
    total = sum(d for _, d, _ in info.entries)

    result = play_in_chromium(folder)
    print(f"{fmt or 'ts'}: {total:.3f} s listed, {decoded.video_frames} frames; hls.js {result}")
    assert result.get("ended") is True and "fatal" not in result, result
    assert not [e for e in result["errors"] if e["fatal"]], result["errors"]
    assert abs(result["currentTime"] - total) < 0.5, (result["currentTime"], total)  # played to the end
    assert result["played"] > total - 1.0, (result["played"], total)  # ... through all of it
    assert result["decodedFrames"] >= decoded.video_frames - 5, (result["decodedFrames"], decoded.video_frames)
    if fmt:  # the player's buffer (where both tracks are) is one range: no hole at the rejoin or the end
        assert len(result["buffered"]) == 1 and abs(result["buffered"][0][1] - total) < 0.01, result["buffered"]
    why = ffplay.missing()
    assert why is None, why
    played = ffplay.play_in_ffplay(folder)  # FFmpeg's player, in real time, to its end
    assert played.returncode == 0 and not played.errors and played.wall > total - 1.0, played
