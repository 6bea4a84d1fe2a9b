"""Objects are never silently overwritten (storage/base.py): write-once puts on a directory store, the S3 store's
412/501 handling with a stand-in client, the uploader's collision rule, and the prefix claim at start. Pure, no
servers (tests/integration/storage/test_storage_conditional.py does the same against MinIO)."""

from __future__ import annotations

import base64
import hashlib
import os
import threading

import pytest
from tests.support.fake_room import FakeRoom, make_recorder, run, until
from tests.support.synthetic import SyntheticRecording
from tests.support.waiting import wait_for

from reel_api.vocabulary import Phase
from reel_recorder.layout import manifest_key
from reel_recorder.storage import LocalStore, ObjectExistsError, StoreError, Uploader
from reel_recorder.storage.errors import OBJECT_EXISTS


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path):
    (tmp_path / "root").mkdir()
    return LocalStore(tmp_path / "root")


def spool_file(tmp_path, data: bytes, name="seg.ts"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- a directory store ----------------------------------------------------------------------------------------

def test_local_put_file_never_writes_over_a_different_object(store, tmp_path):
    store.put_file("rec/a/seg_00000.ts", spool_file(tmp_path, b"first recording"), sha256=sha(b"first recording"))
    other = spool_file(tmp_path, b"another recording!", "other.ts")
    with pytest.raises(ObjectExistsError) as ei:
        store.put_file("rec/a/seg_00000.ts", other, sha256=sha(b"another recording!"))
    err = ei.value
    assert err.kind == "object" and err.code == OBJECT_EXISTS and err.key == "rec/a/seg_00000.ts"
    assert "an object already exists at 'rec/a/seg_00000.ts' and differs" in str(err)
    assert "another recording writes under this prefix?" in str(err) and store.label in str(err)
    assert store.get_bytes("rec/a/seg_00000.ts") == b"first recording"
    assert sorted(os.listdir(store.root / "rec" / "a")) == ["seg_00000.ts"], "no temporary file is left behind"


def test_local_put_file_accepts_the_same_bytes_again(store, tmp_path):
    """A retry of our own upload (its first answer lost) finds its object there: fine, nothing rewritten."""
    src = spool_file(tmp_path, b"segment")
    store.put_file("rec/seg.ts", src, sha256=sha(b"segment"))
    inode = os.stat(store.root / "rec" / "seg.ts").st_ino
    store.put_file("rec/seg.ts", src, sha256=sha(b"segment"))
    store.put_file("rec/seg.ts", src)  # without a checksum given: hashed from the file
    assert os.stat(store.root / "rec" / "seg.ts").st_ino == inode


def test_local_same_size_different_bytes_is_a_collision(store, tmp_path):
    store.put_bytes_once("rec/seg.ts", b"AAAA")
    with pytest.raises(ObjectExistsError, match="sha256"):
        store.put_bytes_once("rec/seg.ts", b"BBBB")
    store.put_bytes_once("rec/seg.ts", b"AAAA")
    assert store.get_bytes("rec/seg.ts") == b"AAAA"


def test_local_documents_are_still_rewritten(store):
    store.put_bytes("rec/index.m3u8", b"#EXTM3U\n")
    store.put_bytes("rec/index.m3u8", b"#EXTM3U\nseg_00000.ts\n")
    assert store.get_bytes("rec/index.m3u8") == b"#EXTM3U\nseg_00000.ts\n"


def test_local_concurrent_writers_of_one_key_one_wins_the_other_is_refused(store):
    barrier = threading.Barrier(8)
    outcome: dict[int, str] = {}

    def write(i):
        barrier.wait()
        try:
            store.put_bytes_once("rec/race.ts", f"writer {i}".encode())
            outcome[i] = "stored"
        except ObjectExistsError:
            outcome[i] = "refused"

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in outcome.items() if o == "stored"]
    assert len(winners) == 1 and list(outcome.values()).count("refused") == 7
    assert store.get_bytes("rec/race.ts") == f"writer {winners[0]}".encode()


def test_local_without_hard_links_falls_back_to_looking_first(store, tmp_path, monkeypatch, caplog):
    import errno

    def no_links(*a, **kw):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    store.put_bytes_once("rec/seg.ts", b"one")
    with pytest.raises(ObjectExistsError):
        store.put_bytes_once("rec/seg.ts", b"two")
    store.put_bytes_once("rec/seg.ts", b"one")
    assert store.get_bytes("rec/seg.ts") == b"one"
    assert "refused a hard link" in caplog.text


# -- S3: 412 and 501 with a stand-in client -------------------------------------------------------------------

def client_error(code: str, status: int, op: str = "PutObject"):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


class FakeS3:
    """put_object/head_object over a dict, with If-None-Match answered as the server would (or 501 when
    ``conditional`` is False); ``lose_answer`` stores the next put, then raises a read timeout."""

    def __init__(self, conditional: bool = True) -> None:
        self.objects: dict[str, bytes] = {}
        self.conditional = conditional
        self.lose_answer = False
        self.calls: list[tuple[str, str, bool]] = []
        self.meta = type("Meta", (), {"events": type("Events", (), {"register": lambda *a, **k: None})()})()

    def put_object(self, *, Bucket, Key, Body, IfNoneMatch=None, ChecksumSHA256=None, **kw):
        self.calls.append(("put", Key, IfNoneMatch is not None))
        data = Body if isinstance(Body, bytes) else Body.read()
        if IfNoneMatch is not None:
            if not self.conditional:
                raise client_error("NotImplemented", 501)
            if Key in self.objects:
                raise client_error("PreconditionFailed", 412)
        self.objects[Key] = data
        if self.lose_answer:
            from botocore.exceptions import ReadTimeoutError

            self.lose_answer = False
            raise ReadTimeoutError(endpoint_url="http://s3.invalid")
        return {}

    def head_object(self, *, Bucket, Key, **kw):
        self.calls.append(("head", Key, False))
        if Key not in self.objects:
            raise client_error("404", 404, "HeadObject")
        data = self.objects[Key]
        return {"ContentLength": len(data), "ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode()}

    def close(self):
        pass


def s3_with(fake: FakeS3):
    from reel_recorder.storage.s3 import S3Store

    store = S3Store("bucket", endpoint_url="http://s3.invalid:9000",
                    credentials={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    store._client = fake
    return store


def test_s3_segments_are_conditional_documents_are_not(tmp_path):
    fake = FakeS3()
    store = s3_with(fake)
    store.put_file("rec/seg.ts", spool_file(tmp_path, b"seg"), sha256=sha(b"seg"))
    store.put_bytes("rec/index.m3u8", b"#EXTM3U\n")
    store.put_bytes("rec/index.m3u8", b"#EXTM3U\n")
    assert fake.calls == [("put", "rec/seg.ts", True), ("put", "rec/index.m3u8", False),
                          ("put", "rec/index.m3u8", False)]
    assert store.conditional_writes is True


def test_s3_412_on_our_own_retry_is_accepted_a_different_object_is_a_collision(tmp_path):
    fake = FakeS3()
    store = s3_with(fake)
    fake.lose_answer = True
    with pytest.raises(StoreError) as ei:  # the first attempt stored it, its answer was lost
        store.put_file("rec/seg.ts", spool_file(tmp_path, b"mine"), sha256=sha(b"mine"))
    assert ei.value.retryable
    store.put_file("rec/seg.ts", spool_file(tmp_path, b"mine"), sha256=sha(b"mine"))  # 412, identical: fine
    assert fake.calls[-2:] == [("put", "rec/seg.ts", True), ("head", "rec/seg.ts", False)]
    with pytest.raises(ObjectExistsError) as ei:
        store.put_file("rec/seg.ts", spool_file(tmp_path, b"theirs"), sha256=sha(b"theirs"))
    assert "an object already exists at 'rec/seg.ts' and differs" in str(ei.value) and "s3://bucket" in str(ei.value)
    assert fake.objects["rec/seg.ts"] == b"mine"


def test_s3_without_conditional_writes_is_detected_once_then_looks_before_writing(tmp_path, caplog):
    fake = FakeS3(conditional=False)
    store = s3_with(fake)
    store.put_file("rec/a.ts", spool_file(tmp_path, b"a"), sha256=sha(b"a"))
    assert store.conditional_writes is False
    assert fake.calls == [("put", "rec/a.ts", True), ("head", "rec/a.ts", False), ("put", "rec/a.ts", False)]
    assert caplog.text.count("does not support conditional writes") == 1
    fake.calls.clear()
    store.put_file("rec/b.ts", spool_file(tmp_path, b"b"), sha256=sha(b"b"))
    assert fake.calls == [("head", "rec/b.ts", False), ("put", "rec/b.ts", False)]
    with pytest.raises(ObjectExistsError):
        store.put_bytes_once("rec/b.ts", b"not b")
    store.put_bytes_once("rec/b.ts", b"b")
    assert fake.objects["rec/b.ts"] == b"b" and caplog.text.count("does not support conditional writes") == 1


# -- the uploader ------------------------------------------------------------------------------------------------

def test_a_collision_ends_the_upload_naming_the_key_and_keeps_both_copies(tmp_path):
    for d in ("spool", "primary"):
        (tmp_path / d).mkdir()
    primary = LocalStore(tmp_path / "primary")
    rec = SyntheticRecording(tmp_path / "spool", participants=("alice",), segment_bytes=1000)
    first = rec.write_segment("alice")
    primary.put_bytes(first.key, b"an earlier recording's segment")  # someone else's object at our key
    up = Uploader(primary, progress_interval=0.05, retry_max=0.1)
    up.start()
    rec.announce(up, first)
    wait_for(lambda: up.fatal_error is not None, 5, what="the collision")
    err = up.fatal_error
    assert isinstance(err, ObjectExistsError) and err.key == first.key
    result = up.close(timeout=5)
    assert result.status == "failed" and first.key in result.missing
    assert f"an object already exists at {first.key!r} and differs" in result.message
    assert primary.get_bytes(first.key) == b"an earlier recording's segment"
    assert first.info.path.read_bytes() and first.info.path.exists(), "our segment stays in the spool"


def test_backfill_into_the_primary_accepts_an_identical_copy_already_there(tmp_path):
    for d in ("spool", "primary", "backup"):
        (tmp_path / d).mkdir()
    primary, backup = LocalStore(tmp_path / "primary"), LocalStore(tmp_path / "backup", name="backup")
    up = Uploader(primary, backup, progress_interval=0.05)
    rec = SyntheticRecording(tmp_path / "spool", participants=("alice",), segment_bytes=1000)
    seg = rec.write_segment("alice")
    data = seg.info.path.read_bytes()
    backup.put_bytes(seg.key, data)
    primary.put_bytes(seg.key, data)  # the primary got it too, but its answer was lost
    up.adopt_stored(seg.key, size=seg.size, sha256=seg.sha256, in_primary=False, in_backup=True)
    result = up.close(timeout=10)
    assert result.progress.primary_segments == 1 and up.fatal_error is None, result.message


# -- the prefix at start -----------------------------------------------------------------------------------------

def test_a_prefix_holding_an_earlier_recording_is_made_unique(tmp_path):
    recorder, _, reports, _ = make_recorder(tmp_path / "one", FakeRoom(), store=None)
    template_prefix = recorder.prefix
    store = recorder.uploader.primary
    store.put_bytes(manifest_key(template_prefix), b'{"recordingId": "earlier"}')

    async def script(stop):
        await until(lambda: Phase.RECORDING in reports.phases())
        stop.set()

    status = run(recorder, script)
    assert recorder.prefix == f"{template_prefix}{recorder.recording_id}/"
    assert status["manifest"] == f"{recorder.prefix}manifest.json"
    assert store.get_bytes(manifest_key(template_prefix)) == b'{"recordingId": "earlier"}'
    assert b'"recordingId": "' + recorder.recording_id.encode() in store.get_bytes(status["manifest"])


def test_a_free_prefix_is_claimed_as_rendered(tmp_path):
    recorder, _, reports, _ = make_recorder(tmp_path, FakeRoom())
    rendered = recorder.prefix

    async def script(stop):
        await until(lambda: Phase.RECORDING in reports.phases())
        stop.set()

    status = run(recorder, script)
    assert recorder.prefix == rendered and status["manifest"] == f"{rendered}manifest.json"


def test_claim_in_the_backup_and_a_store_that_cannot_answer(tmp_path):
    for d in ("primary", "backup"):
        (tmp_path / d).mkdir()
    primary, backup = LocalStore(tmp_path / "primary"), LocalStore(tmp_path / "backup", name="backup")
    backup.put_bytes("m/manifest.json", b"{}")
    up = Uploader(primary, backup)
    assert up.claim("m/manifest.json", b"{}") == backup.label
    assert not primary.exists("m/manifest.json"), "nothing is written when the prefix is taken"
    assert up.claim("n/manifest.json", b"{}") is None and primary.get_bytes("n/manifest.json") == b"{}"
    assert up.claim("n/manifest.json", b'{"other": 1}') == primary.label
    down = Uploader(LocalStore(tmp_path / "missing"))
    assert down.claim("m/manifest.json", b"{}") is None  # cannot tell: logged, the uploads find out later
