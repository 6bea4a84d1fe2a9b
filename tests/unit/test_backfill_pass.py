"""The backfill (storage/backfill.py, reel_recorder/backfill.py) and the integrity check (storage/integrity.py) on
directory stores: pure, no servers."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from reel_api.vocabulary import FailureReason, Phase
from reel_recorder import backfill as program
from reel_recorder.layout import folder_key, manifest_key, participant_folder, playlist_key, segment_name
from reel_recorder.manifest import ManifestData, ParticipantRecord, SegmentRecord
from reel_recorder.storage import LocalStore, StoreError, Uploader
from reel_recorder.storage.backfill import BackfillError, backfill_pass, listed_objects, prefix_of
from reel_recorder.storage.integrity import Expected, check_object

PREFIX = "2026-11-25/1234_r1/"


def backed_up_recording(primary: LocalStore, backup: LocalStore, *, segments: int = 4, in_primary: int = 1,
                        mp4_in_backup: bool = True) -> dict[str, bytes]:
    """What a recorder leaves when the primary failed after ``in_primary`` segments per participant: the rest in
    the backup, the final manifest in the backup, a stale one in the primary. Returns key -> bytes."""
    rnd = random.Random(7)
    data: dict[str, bytes] = {}
    where: dict[str, str] = {}
    m = ManifestData(session={"name": "s", "namespace": "media"}, tag=None, room={"server": "ws://j", "id": 1},
                     recording_id="r1", prefix=PREFIX, started_at="2026-11-25T10:00:00Z")
    for i, who in enumerate(("alice", "bob")):
        folder = participant_folder(who, i + 1)
        rec = ParticipantRecord(display=who, folder=folder, playlist=playlist_key(PREFIX, folder))
        for n in range(segments):
            body = rnd.randbytes(20_000 + n)
            key = folder_key(PREFIX, folder, segment_name(n))
            rec.segments.append(SegmentRecord(name=segment_name(n), key=key, start=4.0 * n, duration=4.0,
                                              bytes=len(body), sha256=hashlib.sha256(body).hexdigest(),
                                              discontinuity=False))
            data[key], where[key] = body, "primary" if n < in_primary else "backup"
        mp4 = rnd.randbytes(50_000)
        key = folder_key(PREFIX, folder, "recording.mp4")
        rec.mp4 = {"key": key, "bytes": len(mp4), "sha256": hashlib.sha256(mp4).hexdigest(), "duration": 16.0}
        data[key], where[key] = mp4, "backup" if mp4_in_backup else "primary"
        m.participants.append(rec)
    for key, body in data.items():
        (primary if where[key] == "primary" else backup).put_bytes(key, body)
    backup.put_bytes(manifest_key(PREFIX), m.render(where.get))  # before the stop: not final
    m.stopped_at, m.stop_reason = "2026-11-25T10:01:00Z", "Requested"
    backup.put_bytes(manifest_key(PREFIX), m.render(where.get))
    for rec in m.participants:
        backup.put_bytes(rec.playlist, b"#EXTM3U\n")  # what the backup's playlist holds does not matter here
    return data


@pytest.fixture
def stores(tmp_path):
    (tmp_path / "primary").mkdir()
    (tmp_path / "backup").mkdir()
    return LocalStore(tmp_path / "primary", name="primary"), LocalStore(tmp_path / "backup", name="backup")


def test_backfill_copies_verifies_rewrites_the_documents_and_empties_the_backup(stores, tmp_path):
    primary, backup = stores
    data = backed_up_recording(primary, backup)
    report = backfill_pass(primary, backup, PREFIX, keep=False, segment_seconds=4, workdir=tmp_path)
    assert (report.objects, report.copied, report.deleted) == (10, 8, 8 + 2 + 1)
    assert report.copied_bytes == sum(len(data[k]) for k in data if not k.endswith("seg_00000.ts"))
    for key, body in data.items():
        assert primary.get_bytes(key) == body
    assert backup.list_keys(PREFIX) == []
    manifest = json.loads(primary.get_bytes(manifest_key(PREFIX)))
    assert {entry["location"] for entry, _ in listed_objects(manifest)} == {"primary"}
    assert manifest["backfill"]["objects"] == 8 and manifest["backfill"]["backupKept"] is False
    for p in manifest["participants"]:
        text = primary.get_bytes(p["playlist"]).decode()
        assert [ln for ln in text.splitlines() if ln.startswith("seg_")] == [segment_name(n) for n in range(4)]
        assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert not list(Path(tmp_path).glob(".reel-backfill-*")), "temporary copies are removed"
    # a second pass finds everything in place: nothing copied (the Job may be run again)
    again = backfill_pass(primary, backup, PREFIX, keep=False, segment_seconds=4, workdir=tmp_path)
    assert again.copied == 0 and again.deleted == 0


def test_keep_leaves_the_backup_copies(stores, tmp_path):
    primary, backup = stores
    backed_up_recording(primary, backup)
    before = backup.list_keys(PREFIX)
    report = backfill_pass(primary, backup, PREFIX, keep=True, segment_seconds=4, workdir=tmp_path)
    assert report.copied == 8 and report.deleted == 0 and backup.list_keys(PREFIX) == before


def test_a_corrupt_backup_copy_is_an_integrity_mismatch_and_nothing_is_deleted(stores, tmp_path):
    primary, backup = stores
    data = backed_up_recording(primary, backup)
    bad = next(k for k in sorted(data) if k.endswith("seg_00002.ts"))
    backup.put_bytes(bad, b"x" + data[bad][1:])
    before = backup.list_keys(PREFIX)
    with pytest.raises(BackfillError) as err:
        backfill_pass(primary, backup, PREFIX, keep=False, segment_seconds=4, workdir=tmp_path)
    assert err.value.reason == FailureReason.INTEGRITY_MISMATCH and bad in err.value.message
    assert backup.list_keys(PREFIX) == before
    assert json.loads(backup.get_bytes(manifest_key(PREFIX)))["stoppedAt"]  # primary's manifest not rewritten
    with pytest.raises(StoreError):
        primary.get_bytes(manifest_key(PREFIX))


def test_integrity_check_names_size_and_checksum_differences(stores):
    primary, _ = stores
    primary.put_bytes("a/x.ts", b"hello")
    good = Expected("a/x.ts", 5, hashlib.sha256(b"hello").hexdigest())
    assert check_object(primary, good) is None
    assert "bytes stored" in check_object(primary, Expected("a/x.ts", 6, good.sha256)).why
    assert "sha256" in check_object(primary, Expected("a/x.ts", 5, "0" * 64)).why
    assert check_object(primary, Expected("a/y.ts", 5, good.sha256)).why == "missing"


def test_the_recorders_close_fails_with_integrity_mismatch_when_a_stored_object_changed(tmp_path):
    """A stored segment altered behind the uploader's back (a store that lost or mangled it) is never Completed."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (tmp_path / "primary").mkdir()
    primary = LocalStore(tmp_path / "primary", name="primary")
    corrupt_on_put = {}

    class Mangling(LocalStore):
        def put_file(self, key, path, content_type=None, *, sha256=None):
            super().put_file(key, path, content_type, sha256=sha256)
            if key.endswith("seg_00001.ts"):
                super().put_bytes(key, b"mangled")
                corrupt_on_put[key] = True

    up = Uploader(Mangling(tmp_path / "primary", name="primary"), progress_interval=0.1, retry_max=0.1)
    up.start()
    for n in range(3):
        body = bytes([n]) * 1000
        path = spool / f"seg_{n}.ts"
        path.write_bytes(body)
        up.segment_closed(f"rec/a/seg_{n:05d}.ts", path, size=len(body), sha256=hashlib.sha256(body).hexdigest())
    result = up.close(timeout=20)
    assert corrupt_on_put and result.status == "failed"
    assert result.reason == FailureReason.INTEGRITY_MISMATCH and result.mismatched == ("rec/a/seg_00001.ts",)
    assert "rec/a/seg_00001.ts" in result.message and "1 of 3 stored object(s)" in result.message
    assert up.result is result and primary.exists("rec/a/seg_00000.ts")


def test_the_program_retries_store_errors_until_its_deadline_then_gives_up_with_backfill_timeout(stores, tmp_path):
    primary, backup = stores
    backed_up_recording(primary, backup)
    now = [1_000.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    def down(args, session):
        raise StoreError("primary store s3://rec", "cannot connect (EndpointConnectionError)")

    session = SimpleNamespace(spec=SimpleNamespace(backup_storage=SimpleNamespace(keep=False),
                                                   recording=SimpleNamespace(segment_seconds=4)))
    args = SimpleNamespace(manifest=manifest_key(PREFIX), until="1970-01-01T00:19:40Z", workdir=str(tmp_path))
    code, result = program.run(session, args, open_stores=down, sleep=sleep, clock=lambda: now[0])
    assert code == program.EXIT_OUT_OF_TIME and result["reason"] == FailureReason.BACKFILL_TIMEOUT
    assert result["phase"] == Phase.BACKED_UP and "cannot connect" in result["message"]
    assert slept[:3] == [2.0, 4.0, 8.0] and now[0] <= 1_180.0
    # the same program with the stores back: done, and what it did
    code, result = program.run(session, args, open_stores=lambda a, s: (primary, backup), sleep=sleep,
                               clock=lambda: 1_000.0)
    assert code == program.EXIT_DONE and result["phase"] == Phase.COMPLETED
    assert result["objects"] == 8 and result["backupDeleted"] is True and result["completedAt"]


def test_prefix_of_a_manifest_key():
    assert prefix_of(manifest_key(PREFIX)) == PREFIX
    with pytest.raises(ValueError):
        prefix_of("rec/index.m3u8")
