"""Composite recording (spec.recording.mode composite/both) against a real Janus with aiortc publishers: the whole
meeting as one HLS recording, decoded back with PyAV."""

from __future__ import annotations

import hashlib
import json

from tests.support.analyze import read_participant, recording_folders


def _manifest(run) -> dict:
    [path] = run.output.rglob("manifest.json")
    return json.loads(path.read_text())


def test_mode_both_gives_each_participant_and_the_composite(record, room, publisher):
    run = record(room, recording={"mode": "both", "composite": {"width": 640, "height": 360}})
    run.wait_event("joined", timeout=30)
    a = publisher(room, display="alice", duration=8)
    b = publisher(room, display="bob", duration=8)
    a.wait(60)
    b.wait(60)
    status = run.wait(60)
    assert status["phase"] == "Completed", status
    folders = recording_folders(run.output)
    assert "composite" in folders and len(folders) == 3, folders
    info, decoded = read_participant(folders["composite"])
    assert info.ended and decoded.decode_errors == 0 and decoded.sizes == {(640, 360)}, decoded
    total = sum(d for _, d, _ in info.entries)
    assert 6.0 < total < 10.0, info.entries
    assert decoded.audio_samples > 6 * 48000
    manifest = _manifest(run)
    composite = manifest["composite"]
    assert composite["playlist"].endswith("composite/index.m3u8") and composite["frames"] > 0
    for s in composite["segments"]:
        data = (run.output / s["key"]).read_bytes()
        assert s["sha256"] == hashlib.sha256(data).hexdigest()
    assert status["composite"]["playlist"] == composite["playlist"]
    assert composite["playlist"] in status["playlists"] and len(status["playlists"]) == 3
    print(f"composite: {total:.1f} s, {composite['frames']} frames, {composite['droppedFrames']} dropped")
