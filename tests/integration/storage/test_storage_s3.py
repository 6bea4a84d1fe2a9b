"""S3Store and the Uploader against a real MinIO server."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from tests.integration.storage.helpers import wait_for
from tests.support.synthetic import SyntheticRecording, manifest_segments, playlist_entries
from tests.support.views import storage_view

from reel_recorder.storage import InvalidKeyError, S3Store, StoreError, Uploader, open_store


def s3_store(minio, bucket, name="primary", endpoint=None, **kw) -> S3Store:
    return S3Store(bucket, name=name, endpoint_url=endpoint or minio.endpoint, credentials=minio.credentials,
                   credentials_secret="s3", connect_timeout=1, read_timeout=5, **kw)


def test_store_roundtrip_content_types_and_checksums(minio, bucket, tmp_path):
    store = s3_store(minio, bucket)
    store.check()
    assert store.describe() == f"s3://{bucket} @ {minio.endpoint}"
    data = bytes(range(256)) * 1000
    src = tmp_path / "seg.ts"
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    store.put_file("rec/alice/seg00000.ts", src, sha256=sha)
    store.put_bytes("rec/alice/index.m3u8", b"#EXTM3U\n")
    store.put_bytes("rec/manifest.json", b"{}")
    assert minio.get(bucket, "rec/alice/seg00000.ts") == data
    head = store.head("rec/alice/seg00000.ts")
    assert head["ContentType"] == "video/mp2t"
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(sha)).decode()  # verified by the server
    assert store.head("rec/alice/index.m3u8")["ContentType"] == "application/vnd.apple.mpegurl"
    assert store.head("rec/manifest.json")["ContentType"] == "application/json"
    assert store.get_bytes("rec/alice/index.m3u8") == b"#EXTM3U\n"
    assert store.exists("rec/manifest.json") and not store.exists("rec/nothing.ts")
    with pytest.raises(StoreError) as ei:
        store.get_bytes("rec/nothing.ts")
    assert ei.value.code == "NoSuchKey" and ei.value.kind == "object"


def test_server_refuses_bytes_that_differ_from_the_recorded_checksum(minio, bucket, tmp_path):
    store = s3_store(minio, bucket)
    src = tmp_path / "seg.ts"
    src.write_bytes(b"bytes on disk changed after the recorder hashed them")
    with pytest.raises(StoreError) as ei:
        store.put_file("rec/seg.ts", src, sha256=hashlib.sha256(b"what was recorded").hexdigest())
    assert ei.value.kind == "object"
    assert not store.exists("rec/seg.ts")


@pytest.mark.parametrize("sse", ["AES256", "aws:kms"])
def test_server_side_encryption(minio, bucket, tmp_path, sse):
    store = s3_store(minio, bucket, server_side_encryption=sse)
    store.check()
    src = tmp_path / "seg.ts"
    src.write_bytes(b"secret media")
    store.put_file("rec/seg.ts", src, sha256=hashlib.sha256(b"secret media").hexdigest())
    store.put_bytes("rec/index.m3u8", b"#EXTM3U\n")
    assert store.head("rec/seg.ts")["ServerSideEncryption"] == sse
    assert store.head("rec/index.m3u8")["ServerSideEncryption"] == sse
    assert store.get_bytes("rec/seg.ts") == b"secret media"


@pytest.mark.parametrize("creds", [
    {"AWS_ACCESS_KEY_ID": "AKIANOTAKEY", "AWS_SECRET_ACCESS_KEY": "nope"},
    "wrong-secret",
])
def test_wrong_credentials_name_the_store_and_the_secret(minio, bucket, creds):
    if creds == "wrong-secret":
        creds = {"AWS_ACCESS_KEY_ID": minio.access_key, "AWS_SECRET_ACCESS_KEY": "wrong"}
    spec = storage_view(endpoint=minio.endpoint, bucket=bucket, prefix="{date}/",
                credentials_secret_ref={"name": "s3-creds"})
    store = open_store(spec, "primary", creds)
    with pytest.raises(StoreError) as ei:
        store.check()
    msg = str(ei.value)
    assert ei.value.fatal
    assert msg.startswith(f"primary store s3://{bucket} @ {minio.endpoint}: ")
    assert "access denied (InvalidAccessKeyId)" in msg or "access denied (SignatureDoesNotMatch)" in msg
    assert "check the credentials Secret 's3-creds'" in msg


def test_missing_bucket(minio):
    store = open_store(storage_view(endpoint=minio.endpoint, bucket="no-such-bucket"), "backup", minio.credentials)
    with pytest.raises(StoreError) as ei:
        store.check()
    assert ei.value.fatal
    assert str(ei.value) == (f"backup store s3://no-such-bucket @ {minio.endpoint}: check: bucket "
                             "'no-such-bucket' does not exist: create it or fix the bucket name")


def test_credentials_secret_missing_a_key(minio, bucket):
    with pytest.raises(StoreError) as ei:
        open_store(storage_view(endpoint=minio.endpoint, bucket=bucket, credentials_secret_ref={"name": "s3"}),
                   "primary", {"AWS_ACCESS_KEY_ID": "x"})
    assert "Secret 's3' lack AWS_SECRET_ACCESS_KEY" in str(ei.value) and ei.value.fatal


def test_credentials_from_the_standard_aws_environment(minio, bucket, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", minio.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", minio.secret_key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    store = open_store(storage_view(endpoint=minio.endpoint, bucket=bucket), "primary", None)
    store.check()
    store.put_bytes("rec/x.json", b"{}")
    assert minio.get(bucket, "rec/x.json") == b"{}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StoreError) as ei:
        open_store(storage_view(endpoint=minio.endpoint, bucket=bucket), "primary", None).check()
    assert "AWS credentials" in str(ei.value) and ei.value.fatal


HOSTILE = ["../escape.ts", "tenant-a/../tenant-b/x.ts", "/tenant-a/x.ts", "tenant-a//x.ts",
           "tenant-a/./x.ts", "tenant-b/x.ts", "x.ts", "tenant-a/\u202ex.ts", "tenant-a/\uff0e\uff0e/x.ts",
           "tenant-a\\..\\x.ts", "tenant-a/x\r\n.ts"]


@pytest.mark.parametrize("key", HOSTILE)
def test_hostile_keys_cannot_leave_the_configured_prefix(minio, bucket, tmp_path, key):
    store = open_store(storage_view(endpoint=minio.endpoint, bucket=bucket, prefix="tenant-a/{date}/{room}/"),
                       "primary", minio.credentials)
    src = tmp_path / "x.ts"
    src.write_bytes(b"evil")
    with pytest.raises(InvalidKeyError):
        store.put_file(key, src)
    with pytest.raises(InvalidKeyError):
        store.put_bytes(key, b"evil")
    store.put_bytes("tenant-a/2026-11-25/room/ok.ts", b"fine")
    assert minio.list_keys(bucket) == ["tenant-a/2026-11-25/room/ok.ts"]


def test_uploader_everything_arrives_with_matching_checksums(minio, bucket, spool):
    primary = s3_store(minio, bucket)
    progress = []
    up = Uploader(primary, progress_interval=0.5, on_progress=progress.append, manifest_interval=0.5)
    up.preflight()
    up.start()
    rec = SyntheticRecording(spool, prefix="2026-11-25/room_101500_01J/",
                             participants=("alice", "bob", "carol"), segment_bytes=200_000)
    for _ in range(8):
        for p in rec.participants:
            rec.close_segment(up, p)
    wait_for(lambda: up.progress().primary_segments == 24, what="all segments stored")
    rec.end(up)
    result = up.close(timeout=30)
    assert result.status == "uploaded", result.message

    manifest = json.loads(minio.get(bucket, rec.manifest_key))
    assert manifest["stoppedAt"] is not None and len(manifest_segments(manifest)) == 24
    for entry in manifest_segments(manifest):
        data = minio.get(bucket, entry["key"])
        assert len(data) == entry["bytes"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["key"]
        assert entry["location"] == "primary"
    for p, part in rec.participants.items():
        text = minio.get(bucket, rec.playlist_key(p)).decode()
        assert playlist_entries(text) == [s.name for s in part.segments]
        assert text.rstrip().endswith("#EXT-X-ENDLIST")
    keys = set(minio.list_keys(bucket))
    assert keys == set(rec.segments) | {rec.manifest_key} | {rec.playlist_key(p) for p in rec.participants}
    assert not [f for f in spool.rglob("*") if f.is_file()]
    assert progress[-1].progress == 1.0 and progress[-1].recorded_bytes == 24 * 200_000


def test_wrong_credentials_on_both_stores_is_fatal_and_keeps_files(minio, bucket, spool):
    bad = {"AWS_ACCESS_KEY_ID": "AKIANOTAKEY", "AWS_SECRET_ACCESS_KEY": "nope"}
    primary = open_store(storage_view(endpoint=minio.endpoint, bucket=bucket, credentials_secret_ref={"name": "s3"}),
                         "primary", bad)
    backup = open_store(storage_view(endpoint=minio.endpoint, bucket="no-such-bucket"), "backup", minio.credentials)
    with pytest.raises(StoreError) as ei:
        Uploader(primary, backup).preflight()
    assert "primary store" in str(ei.value) and "InvalidAccessKeyId" in str(ei.value)
    assert "backup store" in str(ei.value) and "does not exist" in str(ei.value)

    # the same, found while recording (no preflight)
    up = Uploader(primary, backup).start()
    rec = SyntheticRecording(spool, participants=("alice",))
    rec.close_segment(up, "alice")
    wait_for(lambda: up.fatal_error is not None, what="fatal error")
    assert "InvalidAccessKeyId" in str(up.fatal_error) and "no-such-bucket" in str(up.fatal_error)
    result = up.close(timeout=10)
    assert result.status == "failed" and result.missing
    assert len(list(spool.rglob("*.ts"))) == 1, "local files are kept"


def test_wrong_credentials_on_primary_use_the_backup(minio, bucket, spool):
    backup_bucket = minio.create_bucket(bucket + "-b")
    bad = {"AWS_ACCESS_KEY_ID": "AKIANOTAKEY", "AWS_SECRET_ACCESS_KEY": "nope"}
    primary = open_store(storage_view(endpoint=minio.endpoint, bucket=bucket), "primary", bad)
    backup = s3_store(minio, backup_bucket, name="backup")
    up = Uploader(primary, backup, backfill_deadline=0.5)
    problems = up.preflight()
    assert [p.code for p in problems] == ["InvalidAccessKeyId"]
    up.start()
    rec = SyntheticRecording(spool, participants=("alice",))
    for _ in range(3):
        rec.close_segment(up, "alice")
    rec.end(up)
    result = up.close(timeout=10)
    assert result.status == "backed_up", result.message
    assert "InvalidAccessKeyId" in result.message
    assert set(minio.list_keys(backup_bucket)) >= set(rec.segments)
    assert minio.list_keys(bucket) == []
