"""reel-recorder with S3 storage: a real MinIO reachable from the recorder's network namespace."""

from __future__ import annotations

import hashlib
import json

import pytest
from tests.harness.minio import MinioServer, minio_binary
from tests.support.analyze import parse_playlist
from tests.support.recorder_proc import RecorderRun, session_manifest


@pytest.fixture
def s3(test_network, tmp_path):
    """A MinIO on the root side of the test network (the recorder runs inside the namespace)."""
    server = MinioServer(tmp_path / "minio" / "data", binary=minio_binary(build=True), host=test_network.host_addr)
    server.start()
    yield server
    server.stop()


def _secret_dir(path, creds: dict) -> str:
    path.mkdir(parents=True)
    for k, v in creds.items():
        (path / k).write_text(v)
    return str(path)


def _record(test_network, janus, room, tmp_path, storage: dict, backup: dict | None = None, args=()):
    manifest = session_manifest(janus.ws_url, room.id, recording={"maxIdleSeconds": 5, "segmentSeconds": 2},
                                storage=storage, backup=backup)
    return RecorderRun(test_network.popen, manifest, tmp_path / "rec", output=False,
                       env={"REEL_ROOM_ADMIN_KEY": janus.admin_key}, extra_args=list(args))


def test_every_object_reaches_s3_with_matching_checksums(test_network, janus, room, publisher, s3, tmp_path):
    bucket = s3.create_bucket("recordings")
    secrets = _secret_dir(tmp_path / "s3-secret", s3.credentials)
    storage = {"bucket": bucket, "endpoint": s3.endpoint, "prefix": "tenant-a/{room}/{recordingId}/",
               "credentialsSecretRef": {"name": "s3"}}
    run = _record(test_network, janus, room, tmp_path, storage, args=["--storage-secrets", secrets])
    run.wait_event("joined", timeout=30)
    publisher(room, display="alice", duration=8).wait(90)
    status = run.wait(90)
    assert status["phase"] == "Completed", status
    assert status["upload"]["pendingSegments"] == 0 and status["upload"]["location"] == "primary"

    keys = s3.list_keys(bucket)
    assert keys and all(k.startswith(f"tenant-a/{room.id}/{status['recordingId']}/") for k in keys)
    manifest = json.loads(s3.get(bucket, status["manifest"]))
    (participant,) = manifest["participants"]
    segments = participant["segments"]
    assert len(segments) >= 3
    for seg in segments:
        data = s3.get(bucket, seg["key"])
        assert hashlib.sha256(data).hexdigest() == seg["sha256"] and len(data) == seg["bytes"]
        assert seg["location"] == "primary"
    playlist = parse_playlist(s3.get(bucket, participant["playlist"]).decode())
    assert playlist.ended and [u for u, _, _ in playlist.entries] == [s["name"] for s in segments]
    assert set(keys) == {status["manifest"], participant["playlist"], *(s["key"] for s in segments)}


def test_primary_down_goes_to_backup_and_says_so(test_network, janus, room, publisher, s3, tmp_path):
    bucket = s3.create_bucket("backup")
    secrets = _secret_dir(tmp_path / "s3-secret", s3.credentials)
    # the primary points at a port where nothing listens: every upload fails
    primary = {"bucket": "primary", "endpoint": f"http://{test_network.host_addr}:9", "credentialsSecretRef":
               {"name": "s3"}}
    backup = {"bucket": bucket, "endpoint": s3.endpoint, "credentialsSecretRef": {"name": "s3"}}
    run = _record(test_network, janus, room, tmp_path, primary, backup,
                  # a backfill deadline beyond the upload budget (as in a pod: grace period) must still leave time
                  # for the final playlists and manifest in the backup
                  args=["--storage-secrets", secrets, "--backup-storage-secrets", secrets, "--failover-after", "2",
                        "--backfill-deadline", "300", "--upload-timeout", "20"])
    run.wait_event("joined", timeout=30)
    publisher(room, display="bob", duration=8).wait(90)
    status = run.wait(120)
    assert status["phase"] == "BackedUp", status
    playlist = parse_playlist(s3.get(bucket, status["playlists"][0]).decode())
    assert playlist.ended
    assert status["upload"]["location"] == "backup" and status["upload"]["pendingSegments"] == 0
    manifest = json.loads(s3.get(bucket, status["manifest"]))
    segments = manifest["participants"][0]["segments"]
    assert segments and all(s["location"] == "backup" for s in segments)
    for seg in segments:
        assert hashlib.sha256(s3.get(bucket, seg["key"])).hexdigest() == seg["sha256"]


def test_wrong_credentials_fail_with_the_store_named(test_network, janus, room, s3, tmp_path):
    bucket = s3.create_bucket("guarded")
    secrets = _secret_dir(tmp_path / "bad", {"AWS_ACCESS_KEY_ID": "nobody", "AWS_SECRET_ACCESS_KEY": "wrong-key-1"})
    storage = {"bucket": bucket, "endpoint": s3.endpoint, "credentialsSecretRef": {"name": "s3"}}
    run = _record(test_network, janus, room, tmp_path, storage, args=["--storage-secrets", secrets])
    status = run.wait(60)
    assert run.proc.returncode == 1
    assert status["phase"] == "Failed" and status["reason"] == "StorageFailed", status
    assert "primary store" in status["message"] and bucket in status["message"], status["message"]
