"""A full spool (storage/spool.py): a real MinIO stops while a participant publishes, the recorder's spool
(``--spool-limit``, in a pod the emptyDir's sizeLimit) fills up with segments it cannot store. The recorder
reports DiskFull instead of growing past the limit, keeps every unstored segment, drops new media (counted),
and records again once the store is back and the uploads drained the spool."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from tests.harness.minio import MinioServer, minio_binary
from tests.support.analyze import decode_segments, parse_playlist
from tests.support.recorder_proc import RecorderRun, session_manifest

LIMIT = 1280 * 1024  # full at 90 % (~6 segments of 2 s of the test publisher, ~10 s), free again below 70 %


@pytest.fixture
def s3(test_network, tmp_path):
    """A MinIO on the root side of the test network (the recorder runs inside the namespace)."""
    server = MinioServer(tmp_path / "minio" / "data", binary=minio_binary(build=True), host=test_network.host_addr)
    server.start()
    yield server
    server.stop()


def _spool_files(spool) -> dict[str, bytes]:
    out = {}
    for path in spool.rglob("seg_*.ts"):
        try:
            out[path.relative_to(spool).as_posix()] = path.read_bytes()
        except FileNotFoundError:  # stored and deleted meanwhile
            continue
    return out


def test_a_full_spool_keeps_unstored_segments_reports_disk_full_and_recording_resumes(
        test_network, janus, room, publisher, s3, tmp_path):
    bucket = s3.create_bucket("recordings")
    secrets = tmp_path / "s3-secret"
    secrets.mkdir()
    for k, v in s3.credentials.items():
        (secrets / k).write_text(v)
    storage = {"bucket": bucket, "endpoint": s3.endpoint, "credentialsSecretRef": {"name": "s3"}}
    manifest = session_manifest(janus.ws_url, room.id, recording={"maxIdleSeconds": 5, "segmentSeconds": 2},
                                storage=storage)
    run = RecorderRun(test_network.popen, manifest, tmp_path / "rec", output=False,
                      env={"REEL_ROOM_ADMIN_KEY": janus.admin_key},
                      extra_args=["--storage-secrets", str(secrets), "--spool-limit", str(LIMIT)])
    spool = tmp_path / "rec" / "spool"
    try:
        run.wait_event("joined", timeout=30)
        publisher(room, display="alice", duration=60, resolution="320x240")
        run.wait_event("upload", timeout=30, predicate=lambda e: e["status"]["upload"]["segments"] >= 2)

        s3.stop()  # the store is down: segments stay in the spool
        stopped = time.monotonic()
        full = run.wait_event("spool", timeout=30, predicate=lambda e: e["status"]["spool"]["full"])
        filled_after = time.monotonic() - stopped
        assert full["status"]["spool"]["usedBytes"] >= 0.9 * LIMIT, full["status"]["spool"]
        # full: nothing unstored is deleted, nothing new is started (the segment open at the mark may finish)
        held = _spool_files(spool)
        time.sleep(4)
        later = _spool_files(spool)
        assert held.keys() <= later.keys(), "an unstored segment was deleted from the spool"
        grown = [name for name, data in held.items() if later[name] != data]
        assert all(later[name].startswith(held[name]) for name in grown) and len(grown) <= 1, grown  # the open one
        assert len(later) - len(held) <= 1, sorted(later.keys() - held.keys())
        assert sum(len(b) for b in later.values()) < LIMIT

        s3.start()  # back: uploads drain the spool, recording resumes
        run.wait_event("spool", timeout=30, predicate=lambda e: not e["status"]["spool"]["full"])
        # a few segments recorded after it, all stored (earlier, before the outage, fewer were recorded)
        run.wait_event("upload", timeout=30, predicate=lambda e: e["status"]["upload"]["pendingSegments"] == 0
                       and e["status"]["upload"]["segments"] >= len(later) + 4)
        run.terminate()
        status = run.wait(60)
    finally:
        run.kill()

    assert status["phase"] == "Completed", status
    assert status["spool"]["droppedSegments"] >= 1 and status["spool"]["droppedSeconds"] >= 2.0, status["spool"]
    assert not status["spool"]["full"] and status["upload"]["pendingSegments"] == 0
    assert not list(spool.rglob("*.ts")), "stored segments are deleted from the spool"
    doc = json.loads(s3.get(bucket, status["manifest"]))
    (episode,) = doc["diskFull"]
    assert episode["since"] and episode["until"] and episode["droppedSegments"] == status["spool"]["droppedSegments"]
    (participant,) = doc["participants"]
    segments = participant["segments"]
    # every segment that was in the spool while the store was down is stored, byte for byte
    stored = {s["key"].rsplit("/", 1)[1]: s3.get(bucket, s["key"]) for s in segments}
    for name, data in later.items():
        assert stored[name.rsplit("/", 1)[1]] == data, name
    for s in segments:
        assert hashlib.sha256(stored[s["name"]]).hexdigest() == s["sha256"]
    # the playlist: every segment, one discontinuity where recording resumed, ended; the media decodes
    playlist = parse_playlist(s3.get(bucket, participant["playlist"]).decode())
    assert playlist.ended and [u for u, _, _ in playlist.entries] == [s["name"] for s in segments]
    discontinuities = [i for i, (_, _, disc) in enumerate(playlist.entries) if disc]
    assert len(discontinuities) == 1 and 0 < discontinuities[0] < len(segments) - 2, playlist.entries
    gap = segments[discontinuities[0]]["start"] - (segments[discontinuities[0] - 1]["start"]
                                                   + segments[discontinuities[0] - 1]["duration"])
    assert abs(gap - episode["droppedSeconds"]) < 2.5, (gap, episode)
    local = tmp_path / "stored"
    local.mkdir()
    for name, data in stored.items():
        (local / name).write_bytes(data)
    decoded = decode_segments([local / s["name"] for s in segments])
    assert decoded.decode_errors == 0 and decoded.video_frames > 0
    print(f"\nspool limit {LIMIT} B: full {filled_after:.1f} s after the store stopped; "
          f"{episode['droppedSegments']} segment(s), {episode['droppedSeconds']:.1f} s not recorded; "
          f"{len(segments)} segments stored, gap {gap:.1f} s; {sum(len(b) for b in later.values())} B in the spool "
          "while full")
