"""The primary answers slowly, with HTTP 500/503, resets or refuses connections for a while (a fault proxy
in front of a real MinIO): zero segments lost, playlists complete, checksums intact."""

from __future__ import annotations

import hashlib
import itertools
import json
import time

import pytest
from tests.integration.storage.helpers import SyntheticRecorder, wait_for
from tests.support.synthetic import SyntheticRecording, manifest_segments, playlist_entries

from reel_recorder.storage import S3Store, Uploader

FAULTS = {
    "http_503": (lambda px: px.http_error(503), "http_503"),
    "http_500": (lambda px: px.http_error(500), "http_500"),
    "slow": (lambda px: px.delay(1.5), "delayed"),
    "reset": (lambda px: px.reset(), "reset"),
    "refuse": (lambda px: px.refuse(), None),
}


def check_bucket(minio, bucket, rec, closed):
    assert set(closed) == set(rec.segments)
    manifest = json.loads(minio.get(bucket, rec.manifest_key))
    assert sorted(e["key"] for e in manifest_segments(manifest)) == sorted(closed)
    for entry in manifest_segments(manifest):
        assert entry["location"] == "primary"
        assert hashlib.sha256(minio.get(bucket, entry["key"])).hexdigest() == entry["sha256"]
    for p, part in rec.participants.items():
        text = minio.get(bucket, rec.playlist_key(p)).decode()
        assert playlist_entries(text) == [s.name for s in part.segments]
        assert text.rstrip().endswith("#EXT-X-ENDLIST")


@pytest.mark.parametrize("fault", list(FAULTS))
def test_primary_faults_for_a_while_lose_nothing(minio, bucket, proxy, spool, fault):
    apply, counter = FAULTS[fault]
    primary = S3Store(bucket, endpoint_url=proxy.endpoint, credentials=minio.credentials, connect_timeout=1,
                      read_timeout=5)
    seen = []
    up = Uploader(primary, failover_after=120, progress_interval=0.5, manifest_interval=0.5, retry_max=1.0,
                  on_progress=lambda p: seen.append((time.monotonic(), p)))
    up.start()
    rec = SyntheticRecording(spool, prefix=f"{fault}/", participants=("alice", "bob"), segment_bytes=60_000)
    recorder = SyntheticRecorder(rec, up, interval=0.05).start()
    wait_for(lambda: up.progress().primary_segments >= 4, what="segments before the fault")

    apply(proxy)
    recorder.wait_segments(20)  # the recording goes on during the fault
    if counter:
        wait_for(lambda: proxy.stats[counter] >= 3, what=f"{fault} answered 3 times")
    else:
        wait_for(lambda: "cannot connect" in up.progress().last_error, what="refused connections seen")
    if fault != "slow":
        assert up.progress().pending_segments > 0, "the fault must hold segments back"
    proxy.pass_through()

    wait_for(lambda: up.progress().pending_segments == 0, timeout=60, what="catching up after the fault")
    recorder.wait_segments(4)
    recorder.stop()
    closing = time.monotonic()
    result = up.close(timeout=60)
    assert result.status == "uploaded", result.message
    assert not result.progress.backed_up
    check_bucket(minio, bucket, rec, recorder.closed)
    assert not list(spool.rglob("*.ts"))
    assert recorder.max_call_seconds < 0.5, "the recorder's calls must not block during the fault"
    # progress kept coming during the fault and the catch-up, at least every progress_interval (+ scheduling
    # slack), from the monitor; close() stops the monitor before its integrity check (which may take longer than
    # that: one HEAD per segment) and reports once more when it is done, with the final counts
    times = [t for t, _ in seen if t < closing]
    assert max(b - a for a, b in itertools.pairwise(times)) < 0.5 + 0.5
    assert seen[-1][1] == result.progress
    if fault == "slow":
        assert max(up.latencies.values()) >= 1.5


def test_long_503_fails_over_and_backfills(minio, bucket, proxy, spool):
    backup_bucket = minio.create_bucket(bucket + "-backup")
    primary = S3Store(bucket, endpoint_url=proxy.endpoint, credentials=minio.credentials, connect_timeout=1,
                      read_timeout=5)
    backup = S3Store(backup_bucket, name="backup", endpoint_url=minio.endpoint, credentials=minio.credentials)
    up = Uploader(primary, backup, failover_after=1.0, retry_max=0.5, manifest_interval=0.5)
    up.start()
    rec = SyntheticRecording(spool, prefix="long503/", participants=("alice", "bob"), segment_bytes=60_000)
    recorder = SyntheticRecorder(rec, up, interval=0.05).start()
    wait_for(lambda: up.progress().primary_segments >= 4, what="segments before the fault")
    proxy.http_error(503)
    wait_for(lambda: up.progress().backup_only_segments >= 10, what="failover after 1 s of 503")
    assert up.progress().backed_up and "SlowDown" in up.progress().last_error
    proxy.pass_through()
    wait_for(lambda: up.progress().backup_only_segments == 0, timeout=60, what="backfill")
    recorder.stop()
    result = up.close(timeout=60)
    assert result.status == "uploaded", result.message
    check_bucket(minio, bucket, rec, recorder.closed)
