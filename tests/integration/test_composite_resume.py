"""A composite recording whose recorder is killed is continued by its replacement (``--resume``): the composite's
playlist goes on after one discontinuity, its numbering on, and its MP4 (built from the stored segments by the
recorder that ends the recording) covers both runs."""

from __future__ import annotations

import hashlib
import itertools
import json
import re

from tests.support.analyze import decode_segments, read_participant, recording_folders


def test_a_killed_composite_recording_is_continued(record, room, publisher):
    recording = {"mode": "both", "segmentSeconds": 2, "maxIdleSeconds": 10, "outputs": ["hls", "mp4"],
                 "composite": {"width": 320, "height": 240, "fps": 15}}
    first = record(room, recording=recording)
    first.wait_event("joined", timeout=30)
    alice = publisher(room, display="alice", duration=20)
    first.wait_event("progress", timeout=30, predicate=lambda e: e["status"]["upload"]["segments"] >= 6)
    first.kill()  # SIGKILL: nothing flushed
    prefix = first.events[-1]["status"]["manifest"][: -len("manifest.json")]
    second = record(room, recording=recording, output=first.output, extra_args=["--resume", prefix])
    second.wait_event("joined", timeout=30)
    alice.wait(90)
    status = second.wait(90)
    assert status["phase"] == "Completed", status

    folder = recording_folders(first.output)["composite"]
    info, decoded = read_participant(folder)
    assert info.ended and decoded.decode_errors == 0 and decoded.sizes == {(320, 240)}
    numbers = [int(re.match(r"seg_(\d+)\.ts", uri).group(1)) for uri, _, _ in info.entries]
    assert numbers == sorted(set(numbers))
    gaps = [i for i, (_, _, disc) in enumerate(info.entries) if disc]
    assert len(gaps) == 1 and 1 <= gaps[0] < len(info.entries) - 1, info.entries
    [manifest_path] = first.output.rglob("manifest.json")
    manifest = json.loads(manifest_path.read_text())
    composite = manifest["composite"]
    assert [s["name"] for s in composite["segments"]] == [uri for uri, _, _ in info.entries]
    [interruption] = manifest["interruptions"]
    assert any("/composite/" in key for key in interruption["lostSegments"])  # its open segment
    mp4 = folder / "recording.mp4"
    assert composite["mp4"]["sha256"] == hashlib.sha256(mp4.read_bytes()).hexdigest()
    whole = decode_segments([mp4])
    assert whole.decode_errors == 0 and abs(whole.video_frames - decoded.video_frames) <= 2

    def widest_gap(times):
        return max(b - a for a, b in itertools.pairwise(sorted(times)))
    assert abs(widest_gap(whole.video_times) - widest_gap(decoded.video_times)) < 0.15
    print(f"composite resumed: {len(info.entries)} segments, gap {widest_gap(decoded.video_times):.1f} s, "
          f"{len(interruption['lostSegments'])} segment(s) lost")
