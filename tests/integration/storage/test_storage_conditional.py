"""Objects are never silently overwritten, against a real MinIO: write-once uploads are conditional
(``If-None-Match: *`` on PutObject and on CompleteMultipartUpload), a retry whose first answer was lost is accepted,
a different object at a segment's key is refused (the earlier one kept, the upload ends naming the key), and two
recordings under one prefix template both keep theirs (the second gets ``<prefix><recordingId>/``)."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
import yaml
from tests.integration.storage.helpers import wait_for
from tests.support.fake_room import FakeIngest, FakeRoom, Reports, publisher, until
from tests.support.recorder_proc import session_manifest
from tests.support.synthetic import SyntheticRecording

from reel_api.vocabulary import Phase
from reel_recorder.control import PauseControl
from reel_recorder.recorder import Recorder
from reel_recorder.session import session_from_manifest, validated_manifest
from reel_recorder.storage import ObjectExistsError, Uploader
from reel_recorder.storage.s3 import MULTIPART_THRESHOLD, S3Store


def s3(minio, bucket, name="primary") -> S3Store:
    return S3Store(bucket, name=name, endpoint_url=minio.endpoint, credentials=minio.credentials,
                   connect_timeout=1, read_timeout=10)


def test_minio_refuses_a_different_segment_at_a_stored_key_and_keeps_the_first(minio, bucket, tmp_path):
    store = s3(minio, bucket)
    first, second = tmp_path / "first.ts", tmp_path / "second.ts"
    first.write_bytes(b"the first recording's segment")
    second.write_bytes(b"another recording's segment!!")  # same size: only the checksum tells
    store.put_file("rec/a/seg_00000.ts", first, sha256=hashlib.sha256(first.read_bytes()).hexdigest())
    assert store.conditional_writes is True, "MinIO takes If-None-Match: *"
    store.put_file("rec/a/seg_00000.ts", first, sha256=hashlib.sha256(first.read_bytes()).hexdigest())  # same: fine
    with pytest.raises(ObjectExistsError) as ei:
        store.put_file("rec/a/seg_00000.ts", second, sha256=hashlib.sha256(second.read_bytes()).hexdigest())
    assert "an object already exists at 'rec/a/seg_00000.ts' and differs" in str(ei.value)
    assert minio.get(bucket, "rec/a/seg_00000.ts") == first.read_bytes()
    store.put_bytes("rec/a/index.m3u8", b"#EXTM3U\n")  # documents are rewritten on purpose
    store.put_bytes("rec/a/index.m3u8", b"#EXTM3U\n#EXT-X-ENDLIST\n")
    assert minio.get(bucket, "rec/a/index.m3u8").endswith(b"#EXT-X-ENDLIST\n")


def test_a_recording_never_writes_over_an_earlier_segment(minio, bucket, spool):
    """Another recording's object at one of our segment keys: the uploader stops with a clear error naming the key;
    the earlier object is intact and our segment is kept in the spool (nothing silently lost)."""
    rec = SyntheticRecording(spool, prefix="shared/", participants=("alice",), segment_bytes=20_000)
    up = Uploader(s3(minio, bucket), retry_max=0.2, progress_interval=0.1)
    up.start()
    keys = [rec.close_segment(up, "alice") for _ in range(2)]
    wait_for(lambda: up.progress().primary_segments == 2, what="two segments stored")
    taken = rec.write_segment("alice")
    minio.client().put_object(Bucket=bucket, Key=taken.key, Body=b"someone else's segment")
    rec.announce(up, taken)
    wait_for(lambda: up.fatal_error is not None, 10, what="the collision")
    result = up.close(timeout=10)
    assert result.status == "failed" and taken.key in result.missing
    assert f"an object already exists at {taken.key!r} and differs" in result.message
    assert minio.get(bucket, taken.key) == b"someone else's segment"
    assert taken.info.path.exists(), "our segment stays in the spool"
    for key in keys:  # stored before: untouched
        assert hashlib.sha256(minio.get(bucket, key)).hexdigest() == rec.segments[key].sha256


def test_a_retry_after_a_lost_answer_is_accepted(minio, bucket, spool):
    """The first PUT reaches MinIO and stores the segment, but its answer is lost (a read timeout): the retry gets
    412 PreconditionFailed, finds the same bytes (HEAD: size and SHA-256) and counts the segment as stored."""
    from botocore.exceptions import ReadTimeoutError

    store = s3(minio, bucket)
    lost = {}

    def lose_first_answer(http_response, parsed, model, **kwargs):
        if model.name == "PutObject" and http_response.status_code == 200 and not lost:
            lost["at"] = True
            raise ReadTimeoutError(endpoint_url=minio.endpoint)

    store._client.meta.events.register("after-call.s3.PutObject", lose_first_answer)
    rec = SyntheticRecording(spool, prefix="lost/", participants=("alice",), segment_bytes=30_000)
    up = Uploader(store, retry_base=0.05, retry_max=0.2, progress_interval=0.1)
    up.start()
    keys = [rec.close_segment(up, "alice") for _ in range(3)]
    rec.end(up)
    result = up.close(timeout=20)
    assert lost, "the first answer was lost"
    assert result.status == "uploaded", result.message
    assert up.fatal_error is None and result.progress.failed_segments == 0
    for key in keys:
        assert hashlib.sha256(minio.get(bucket, key)).hexdigest() == rec.segments[key].sha256


def test_a_multipart_upload_completes_only_if_the_key_is_free(minio, bucket, tmp_path):
    store = s3(minio, bucket)
    size = MULTIPART_THRESHOLD + 1024
    big, other = tmp_path / "big.mp4", tmp_path / "other.mp4"
    with open(big, "wb") as f:
        f.truncate(size)
    with open(other, "wb") as f:
        f.truncate(size)
        f.seek(size - 1)
        f.write(b"x")
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    store.put_file("rec/a/recording.mp4", big, sha256=sha)
    store.put_file("rec/a/recording.mp4", big, sha256=sha)  # identical: accepted (read back: a multipart checksum)
    with pytest.raises(ObjectExistsError):
        store.put_file("rec/a/recording.mp4", other, sha256=hashlib.sha256(other.read_bytes()).hexdigest())
    assert hashlib.sha256(minio.get(bucket, "rec/a/recording.mp4")).hexdigest() == sha, "the first one is kept"


def recorder_for(tmp_path, store, template: str) -> tuple[Recorder, Reports]:
    manifest = validated_manifest(yaml.safe_dump(session_manifest(
        "ws://janus.test:8188", 1234, storage={"bucket": "unused", "endpoint": "http://127.0.0.1:1",
                                               "prefix": template})))
    reports = Reports()
    recorder = Recorder(session_from_manifest(manifest), room=FakeRoom([publisher(1, "alice")]),
                        make_ingest=FakeIngest, uploader=Uploader(store, progress_interval=0.05),
                        spool=tmp_path / "spool", progress=reports, pin="1234", control=PauseControl(False),
                        upload_timeout=10)
    return recorder, reports


def test_two_recordings_with_one_prefix_template_both_keep_theirs(minio, bucket, tmp_path):
    """``prefix: meetings/{room}/`` has no recordingId: the second recording of the room finds the first one's
    manifest.json there and records under ``meetings/1234/<its recordingId>/``; both manifests stay."""
    statuses = []
    for n in (1, 2):
        recorder, reports = recorder_for(tmp_path / f"r{n}", s3(minio, bucket), "meetings/{room}/")

        async def main(recorder=recorder, reports=reports):
            stop = asyncio.Event()
            task = asyncio.create_task(recorder.run(stop))
            await until(lambda: Phase.RECORDING in reports.phases())
            stop.set()
            return await asyncio.wait_for(task, 30)

        statuses.append((recorder, asyncio.run(main())))
    (first, s1), (second, s2) = statuses
    assert first.prefix == "meetings/1234/" and s1["manifest"] == "meetings/1234/manifest.json"
    assert second.prefix == f"meetings/1234/{second.recording_id}/"
    assert s2["manifest"] == f"meetings/1234/{second.recording_id}/manifest.json"
    m1, m2 = (json.loads(minio.get(bucket, s["manifest"])) for s in (s1, s2))
    assert m1["recordingId"] == first.recording_id and m1["stoppedAt"]
    assert m2["recordingId"] == second.recording_id and m2["prefix"] == second.prefix and m2["stoppedAt"]
    assert s1["phase"] == s2["phase"] == Phase.COMPLETED
