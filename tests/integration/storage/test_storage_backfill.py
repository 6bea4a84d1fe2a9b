"""After a BackedUp end, against real MinIO servers: the backfill (``reel-recorder backfill``'s program) copies the
backup-only objects into the primary, verifies them and empties the backup (or keeps it), or gives up when the
primary stays down, leaving the backup intact; a stored object corrupted behind the recorder's back ends the
recording IntegrityMismatch, never Completed."""

from __future__ import annotations

import hashlib
import json
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from tests.integration.storage.helpers import wait_for
from tests.support.synthetic import SyntheticRecording, manifest_segments, playlist_entries

from reel_api.vocabulary import FailureReason, Phase
from reel_recorder import backfill as program
from reel_recorder.storage import S3Store, Uploader

pytestmark = pytest.mark.integration


def s3(server, bucket, name):
    return S3Store(bucket, name=name, endpoint_url=server.endpoint, credentials=server.credentials,
                   connect_timeout=1, read_timeout=10)


def backed_up(own_minio, minio, bucket, spool, prefix, *, big: int = 0):
    """A recording whose primary (own_minio) died after the first segments: it ends backed_up."""
    primary_bucket = own_minio.create_bucket("primary")
    up = Uploader(s3(own_minio, primary_bucket, "primary"), s3(minio, bucket, "backup"),
                  failover_after=0.5, backfill_deadline=1, retry_max=0.5)
    up.start()
    rec = SyntheticRecording(spool, prefix=prefix, participants=("alice", "bob"), segment_bytes=60_000)
    for p in rec.participants:
        rec.close_segment(up, p)
    wait_for(lambda: up.progress().primary_segments == 2, what="first segments in the primary")
    own_minio.stop()
    for _ in range(3):
        for p in rec.participants:
            rec.close_segment(up, p)
    if big:  # an MP4-sized object (multipart on the way in and out)
        rec.close_segment(up, "alice", size=big)
    rec.end(up)
    result = up.close(timeout=30)
    assert result.status == "backed_up", result.message
    return primary_bucket, rec


def program_args(rec, seconds: float):
    until = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return SimpleNamespace(manifest=rec.manifest_key, until=until, workdir=None)


def session(keep: bool):
    return SimpleNamespace(spec=SimpleNamespace(backup_storage=SimpleNamespace(keep=keep),
                                                recording=SimpleNamespace(segment_seconds=4)))


@pytest.mark.parametrize("keep", [False, True], ids=["delete-backup", "keep-backup"])
def test_backfill_moves_the_backup_into_the_primary(own_minio, minio, bucket, spool, keep, tmp_path):
    primary_bucket, rec = backed_up(own_minio, minio, bucket, spool, f"bf-{keep}/",
                                    big=0 if keep else 80 * 1024 * 1024)
    backup_before = minio.list_keys(bucket, rec.prefix)
    own_minio.start()  # the primary is back
    stores = lambda args, s: (s3(own_minio, primary_bucket, "primary"), s3(minio, bucket, "backup"))  # noqa: E731
    tracemalloc.start()
    t0 = time.monotonic()
    code, result = program.run(session(keep), SimpleNamespace(**{**vars(program_args(rec, 120)),
                                                                  "workdir": str(tmp_path)}), open_stores=stores)
    seconds = time.monotonic() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert code == program.EXIT_DONE and result["phase"] == Phase.COMPLETED, result
    copied = sum(s.size for k, s in rec.segments.items() if not k.endswith("seg_00000.ts"))
    assert result["objects"] == len(rec.segments) - 2 and result["bytes"] == copied
    print(f"\nbackfill: {result['objects']} objects, {copied / 2**20:.1f} MiB in {seconds:.2f} s "
          f"({copied / 2**20 / seconds:.0f} MiB/s); Python heap peak {peak / 2**20:.1f} MiB")
    if not keep:
        assert peak < 40 * 2**20, "a copy streams: the 80 MiB object is never in memory"
    manifest = json.loads(own_minio.get(primary_bucket, rec.manifest_key))
    assert {e["location"] for e in manifest_segments(manifest)} == {"primary"}
    assert manifest["backfill"]["backupKept"] is keep
    for key, seg in rec.segments.items():
        assert hashlib.sha256(own_minio.get(primary_bucket, key)).hexdigest() == seg.sha256, key
    for p, part in rec.participants.items():
        text = own_minio.get(primary_bucket, rec.playlist_key(p)).decode()
        assert playlist_entries(text) == [s.name for s in part.segments] and "#EXT-X-ENDLIST" in text
    assert minio.list_keys(bucket, rec.prefix) == (backup_before if keep else [])


def test_backfill_gives_up_at_its_deadline_leaving_the_backup_intact(own_minio, minio, bucket, spool):
    primary_bucket, rec = backed_up(own_minio, minio, bucket, spool, "bf-down/")
    backup_before = {k: minio.get(bucket, k) for k in minio.list_keys(bucket, rec.prefix)}
    stores = lambda args, s: (s3(own_minio, primary_bucket, "primary"), s3(minio, bucket, "backup"))  # noqa: E731
    t0 = time.monotonic()
    code, result = program.run(session(False), program_args(rec, 8), open_stores=stores)
    assert code == program.EXIT_OUT_OF_TIME and result["reason"] == FailureReason.BACKFILL_TIMEOUT
    assert "primary store" in result["message"] and "intact" in result["message"]
    assert time.monotonic() - t0 < 20
    assert {k: minio.get(bucket, k) for k in minio.list_keys(bucket, rec.prefix)} == backup_before


def test_a_corrupted_stored_object_ends_integrity_mismatch(minio, bucket, spool):
    up = Uploader(s3(minio, bucket, "primary"), retry_max=0.5)
    up.start()
    rec = SyntheticRecording(spool, prefix="integrity/", participants=("alice",), segment_bytes=40_000)
    keys = [rec.close_segment(up, "alice") for _ in range(40)]
    wait_for(lambda: up.progress().primary_segments == 40, what="segments stored")
    victim = keys[7]
    data = bytearray(minio.get(bucket, victim))
    data[100] ^= 0xFF  # same size, one bit flipped: only the checksum tells
    minio.client().put_object(Bucket=bucket, Key=victim, Body=bytes(data))
    rec.end(up)
    t0 = time.monotonic()
    result = up.close(timeout=30)
    print(f"\nclose incl. integrity check of 40 objects: {time.monotonic() - t0:.2f} s")
    assert result.status == "failed" and result.reason == FailureReason.INTEGRITY_MISMATCH
    assert result.mismatched == (victim,) and victim in result.message


def test_the_integrity_check_costs_one_head_per_object(minio, bucket, spool):
    """Objects stored with their checksum are checked by HEAD alone (no read back): 200 objects, timed."""
    from reel_recorder.storage.integrity import Expected, check_objects

    store = s3(minio, bucket, "primary")
    rec = SyntheticRecording(spool, prefix="heads/", participants=("alice",), segment_bytes=200_000)
    wants = []
    for _ in range(200):
        seg = rec.write_segment("alice")
        store.put_file(seg.key, seg.info.path, sha256=seg.sha256)
        wants.append((store, Expected(seg.key, seg.size, seg.sha256)))
    reads = []
    store.read_into = lambda key, out: reads.append(key)  # would be a read back
    t0 = time.monotonic()
    assert check_objects(wants) == []
    seconds = time.monotonic() - t0
    print(f"\nintegrity: 200 objects by HEAD in {seconds:.2f} s ({seconds / 200 * 1000:.1f} ms each)")
    assert not reads, "MinIO keeps the SHA-256 it verified: HEAD is enough"
