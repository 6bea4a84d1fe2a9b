"""A real outage: the primary MinIO is stopped during a recording and started again.

Zero segments may be lost; the session shows backed up while the backup holds segments; backfill copies them
into the primary (while recording, or after stop within the backfill deadline); the primary's playlists are
complete at the end.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

from tests.integration.storage.helpers import SyntheticRecorder, wait_for
from tests.support.synthetic import SyntheticRecording, manifest_segments, playlist_entries

from reel_recorder.storage import S3Store, Uploader


def s3(server, bucket, name):
    return S3Store(bucket, name=name, endpoint_url=server.endpoint, credentials=server.credentials,
                   connect_timeout=1, read_timeout=5)


def assert_all_in(server, bucket, rec, closed, location="primary"):
    """Every closed segment is in the bucket with its checksum; playlists complete; manifest says where."""
    assert set(closed) == set(rec.segments)
    manifest = json.loads(server.get(bucket, rec.manifest_key))
    assert manifest["stoppedAt"] is not None
    assert sorted(e["key"] for e in manifest_segments(manifest)) == sorted(closed)
    for entry in manifest_segments(manifest):
        data = server.get(bucket, entry["key"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["key"]
        if location:
            assert entry["location"] == location, entry
    for p, part in rec.participants.items():
        text = server.get(bucket, rec.playlist_key(p)).decode()
        assert playlist_entries(text) == [s.name for s in part.segments], p
        assert text.rstrip().endswith("#EXT-X-ENDLIST")
    return manifest


def test_primary_outage_failover_and_backfill_while_recording(own_minio, minio, bucket, spool):
    primary_bucket = own_minio.create_bucket("primary")
    seen = []
    up = Uploader(s3(own_minio, primary_bucket, "primary"), s3(minio, bucket, "backup"),
                  failover_after=1.0, backfill_deadline=60, progress_interval=0.2, on_progress=seen.append,
                  manifest_interval=0.5, retry_max=0.5)
    up.preflight()
    up.start()
    rec = SyntheticRecording(spool, prefix="2026-11-25/r1/", participants=("alice", "bob"),
                             segment_bytes=100_000)
    recorder = SyntheticRecorder(rec, up, interval=0.05).start()
    wait_for(lambda: up.progress().primary_segments >= 6, what="segments in the primary")

    own_minio.stop()  # the primary goes away
    wait_for(lambda: up.progress().backup_only_segments >= 6, what="failover to the backup")
    p = up.progress()
    assert p.backed_up and p.location == "mixed"
    assert "cannot connect" in p.last_error and "primary store" in p.last_error
    # the backup's playlists list only what it holds; its manifest says where everything is
    wait_for(lambda: rec.playlist_key("alice") in minio.list_keys(bucket), what="backup playlist")
    backup_pl = playlist_entries(minio.get(bucket, rec.playlist_key("alice")).decode())
    assert backup_pl and all(minio.list_keys(bucket, rec.key("alice", n)) for n in backup_pl)
    wait_for(lambda: rec.manifest_key in minio.list_keys(bucket), what="backup manifest")

    own_minio.start()  # ... and comes back: backfill while still recording
    wait_for(lambda: up.progress().backup_only_segments == 0, timeout=60, what="backfill")
    recorder.wait_segments(6)
    recorder.stop()
    result = up.close(timeout=60)

    assert result.status == "uploaded", result.message
    assert result.progress.backed_up and result.progress.location == "primary"
    assert result.progress.pending_segments == 0 and result.progress.progress == 1.0
    assert_all_in(own_minio, primary_bucket, rec, recorder.closed)
    assert not list(spool.rglob("*.ts"))
    assert {s.location for s in seen} >= {"primary", "mixed"}
    assert any(s.backed_up for s in seen)
    assert recorder.max_call_seconds < 0.5, "the recorder's calls must not block during the outage"


def test_primary_back_after_stop_is_backfilled_within_the_deadline(own_minio, minio, bucket, spool):
    primary_bucket = own_minio.create_bucket("primary")
    up = Uploader(s3(own_minio, primary_bucket, "primary"), s3(minio, bucket, "backup"),
                  failover_after=0.5, backfill_deadline=60, retry_max=0.5)
    up.start()
    rec = SyntheticRecording(spool, prefix="r2/", participants=("alice",), segment_bytes=50_000)
    for _ in range(3):
        rec.close_segment(up, "alice")
    wait_for(lambda: up.progress().primary_segments == 3, what="first segments")
    own_minio.stop()
    for _ in range(5):
        rec.close_segment(up, "alice")
    wait_for(lambda: up.progress().backup_only_segments == 5, what="failover")
    rec.end(up)

    results = []
    closer = threading.Thread(target=lambda: results.append(up.close(timeout=60)))
    closer.start()
    # close() is waiting for the backfill: the recording is over, the primary is still down
    wait_for(lambda: up.progress().pending_segments == 0, what="pending segments stored")
    assert closer.is_alive()
    own_minio.start()
    closer.join(70)
    assert results, "close() did not return"
    result = results[0]
    assert result.status == "uploaded", result.message
    assert_all_in(own_minio, primary_bucket, rec, list(rec.segments))


def test_primary_never_returns_the_session_ends_backed_up(own_minio, minio, bucket, spool):
    primary_bucket = own_minio.create_bucket("primary")
    up = Uploader(s3(own_minio, primary_bucket, "primary"), s3(minio, bucket, "backup"),
                  failover_after=0.5, backfill_deadline=2, retry_max=0.5)
    up.start()
    rec = SyntheticRecording(spool, prefix="r3/", participants=("alice", "bob"), segment_bytes=50_000)
    for p in rec.participants:
        rec.close_segment(up, p)
    wait_for(lambda: up.progress().primary_segments == 2, what="first segments")
    own_minio.stop()
    for _ in range(3):
        for p in rec.participants:
            rec.close_segment(up, p)
    rec.end(up)
    t0 = time.monotonic()
    result = up.close(timeout=30)
    # the backfill deadline (2 s), then little more: a primary that is down is not waited for again
    assert time.monotonic() - t0 < 5
    assert result.status == "backed_up", result.message
    assert "backup store" in result.message and "primary store" in result.message
    assert len(result.backup_only) == 6 and not result.missing
    # the backup holds the segments the primary lacks, and a manifest that says where each one is
    manifest = json.loads(minio.get(bucket, rec.manifest_key))
    where = {e["key"]: e["location"] for e in manifest_segments(manifest)}
    assert sorted(where.values()) == ["backup"] * 6 + ["primary"] * 2
    for key, loc in where.items():
        server, b = (minio, bucket) if loc == "backup" else (own_minio, primary_bucket)
        if loc == "primary":
            own_minio.start()
        data = server.get(b, key)
        assert hashlib.sha256(data).hexdigest() == rec.segments[key].sha256
    assert not list(spool.rglob("*.ts")), "stored in the backup, so the spool is free"
