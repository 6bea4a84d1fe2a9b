"""Uploader logic against LocalStores (real directories); failures injected by a wrapping store.

The S3 behaviour (MinIO, outages, HTTP errors) is tested in tests/integration/storage/.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from pathlib import Path

import pytest
from tests.support.synthetic import SyntheticRecording, manifest_segments, playlist_entries
from tests.support.waiting import wait_for

from reel_recorder.layout import segment_name
from reel_recorder.storage import LocalStore, Store, StoreError, Uploader


class SwitchableStore(Store):
    """A real LocalStore whose requests can be made to fail at runtime (transient or config errors).

    Records every playlist it stores together with whether each listed segment existed at that moment.
    """

    def __init__(self, inner: LocalStore) -> None:
        super().__init__(inner.name, inner.key_prefix)
        self.inner = inner
        self.mode: str | None = None
        self.requests = 0
        self.reads: list[str] = []  # keys asked for with get_bytes (stat and read_into default to it)
        self.playlist_log: list[tuple[str, list[str], bool]] = []
        self._lock = threading.Lock()

    def describe(self):
        return self.inner.describe()

    def _gate(self):
        with self._lock:
            self.requests += 1
        if self.mode == "transient":
            raise self.error("server error (503)", kind="transient", code="503")
        if self.mode == "config":
            raise self.error("access denied (InvalidAccessKeyId): check the credentials", kind="config",
                             code="InvalidAccessKeyId")

    def check(self):
        self._gate()
        self.inner.check()

    def put_file(self, key, path, content_type=None, *, sha256=None):
        self._gate()
        self.inner.put_file(key, path, content_type, sha256=sha256)

    def put_bytes(self, key, data, content_type=None):
        self._gate()
        if key.endswith(".m3u8"):
            folder = key.rsplit("/", 1)[0]
            names = playlist_entries(data.decode())
            all_there = all(self.inner.exists(f"{folder}/{n}") for n in names)
            self.playlist_log.append((key, names, all_there))
        self.inner.put_bytes(key, data, content_type)

    def get_bytes(self, key):
        self.reads.append(key)
        self._gate()
        return self.inner.get_bytes(key)

    def exists(self, key):
        self._gate()
        return self.inner.exists(key)

    def list_keys(self, prefix):
        self._gate()
        return self.inner.list_keys(prefix)


@pytest.fixture
def dirs(tmp_path):
    for d in ("spool", "primary", "backup"):
        (tmp_path / d).mkdir()
    return tmp_path


def stores(dirs, backup=True):
    p = SwitchableStore(LocalStore(dirs / "primary", name="primary"))
    b = SwitchableStore(LocalStore(dirs / "backup", name="backup")) if backup else None
    return p, b


def assert_complete(root: Path, rec: SyntheticRecording, ended=True):
    for seg in rec.segments.values():
        data = (root / seg.key).read_bytes()
        assert hashlib.sha256(data).hexdigest() == seg.sha256, seg.key
    for name, p in rec.participants.items():
        text = (root / rec.playlist_key(name)).read_text()
        assert playlist_entries(text) == [s.name for s in p.segments]
        assert text.rstrip().endswith("#EXT-X-ENDLIST") == ended
    manifest = json.loads((root / rec.manifest_key).read_text())
    listed = {s["key"]: s["sha256"] for s in manifest_segments(manifest)}
    assert listed == {k: s.sha256 for k, s in rec.segments.items()}
    return manifest


def assert_playlists_never_list_missing_segments(store: SwitchableStore):
    assert store.playlist_log, "no playlist was stored"
    bad = [(k, names) for k, names, ok in store.playlist_log if not ok]
    assert not bad, f"playlists listed segments not yet stored: {bad[:3]}"
    # and each playlist only ever grows at its end
    last: dict[str, list[str]] = {}
    for key, names, _ in store.playlist_log:
        prev = last.get(key, [])
        assert names[: len(prev)] == prev, f"{key} changed in the middle: {prev} -> {names}"
        last[key] = names


def test_everything_arrives_in_the_primary(dirs):
    primary, backup = stores(dirs)
    seen = []
    up = Uploader(primary, backup, progress_interval=0.2, on_progress=seen.append, manifest_interval=0.0)
    up.start()
    rec = SyntheticRecording(dirs / "spool", participants=("alice", "bob", "carol"))
    for _ in range(10):
        for p in rec.participants:
            rec.close_segment(up, p)
    rec.end(up)
    result = up.close(timeout=20)
    assert result.status == "uploaded", result.message
    assert result.ok and not result.missing and not result.backup_only
    manifest = assert_complete(dirs / "primary", rec)
    assert manifest["stoppedAt"] is not None
    assert {s["location"] for s in manifest_segments(manifest)} == {"primary"}
    assert_playlists_never_list_missing_segments(primary)
    assert not list((dirs / "backup").iterdir()), "the backup was not needed"
    assert not [p for p in (dirs / "spool").rglob("*") if p.is_file()], "spool files are deleted once stored"
    p = result.progress
    assert (p.segments, p.pending_segments, p.progress) == (30, 0, 1.0)
    assert (p.location, p.backed_up) == ("primary", False)
    assert p.recorded_bytes == p.stored_bytes == 30 * rec.segment_bytes
    assert seen and seen[-1] == p
    assert len(up.latencies) == 30


def test_progress_reported_periodically_without_changes(dirs):
    primary, _ = stores(dirs, backup=False)
    calls = []
    up = Uploader(primary, progress_interval=0.1, on_progress=lambda p: calls.append(time.monotonic()))
    up.start()
    wait_for(lambda: len(calls) >= 4, timeout=5, what="periodic progress")
    up.close(timeout=5)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert max(gaps[:3]) < 1.0


def test_failover_to_backup_and_backfill(dirs):
    primary, backup = stores(dirs)
    up = Uploader(primary, backup, failover_after=0.5, backfill_deadline=30, retry_max=0.2,
                  progress_interval=0.1, manifest_interval=0.0)
    up.start()
    rec = SyntheticRecording(dirs / "spool", participants=("alice", "bob"))
    for p in rec.participants:
        rec.close_segment(up, p)
    wait_for(lambda: up.progress().primary_segments == 2, what="first segments in the primary")

    primary.mode = "transient"  # the primary goes down
    for p in rec.participants:
        rec.close_segment(up, p)
    wait_for(lambda: up.progress().backup_only_segments == 2, what="failover to the backup")
    prog = up.progress()
    assert prog.backed_up and prog.location == "mixed" and prog.pending_segments == 0
    assert "503" in prog.last_error
    # stored in the backup, so the spool files are gone; nothing was lost
    assert not [p for p in (dirs / "spool").rglob("*.ts")]
    for _ in range(3):
        for p in rec.participants:
            rec.close_segment(up, p)
    wait_for(lambda: up.progress().backup_only_segments == 8, what="more segments in the backup")
    # the backup's playlists list what the backup holds
    bpl = (dirs / "backup" / rec.playlist_key("alice")).read_text()
    assert playlist_entries(bpl) == [segment_name(i) for i in range(1, 5)]
    # the primary's playlist stopped growing at the last segment it holds
    assert playlist_entries((dirs / "primary" / rec.playlist_key("alice")).read_text()) == [segment_name(0)]

    primary.mode = None  # the primary is back: backfill while recording
    wait_for(lambda: up.progress().backup_only_segments == 0, what="backfill")
    rec.close_segment(up, "alice")
    rec.end(up)
    result = up.close(timeout=20)
    assert result.status == "uploaded", result.message
    manifest = assert_complete(dirs / "primary", rec)
    assert {s["location"] for s in manifest_segments(manifest)} == {"primary"}
    assert result.progress.backed_up  # it was backed up for a while
    assert_playlists_never_list_missing_segments(primary)


def test_primary_down_for_the_whole_session_ends_backed_up(dirs):
    primary, backup = stores(dirs)
    primary.mode = "transient"
    up = Uploader(primary, backup, failover_after=0.3, backfill_deadline=0.5, retry_max=0.1)
    up.start()
    rec = SyntheticRecording(dirs / "spool", participants=("alice",))
    for _ in range(3):
        rec.close_segment(up, "alice")
    rec.end(up)
    t0 = time.monotonic()
    result = up.close(timeout=10)
    assert time.monotonic() - t0 < 5
    assert result.status == "backed_up", result.message
    assert set(result.backup_only) == set(rec.segments)
    assert "backup store file://" in result.message and "primary store" in result.message
    manifest = assert_complete(dirs / "backup", rec)
    assert {s["location"] for s in manifest_segments(manifest)} == {"backup"}
    assert not [p for p in (dirs / "spool").rglob("*.ts")]


def test_a_primary_down_at_close_is_not_asked_by_the_integrity_check(dirs):
    """The primary stored the first segment, then went down for good: close() gives up its final documents after
    two failures and does not spend its budget asking it about that segment either (counted unverified)."""
    primary, backup = stores(dirs)
    up = Uploader(primary, backup, failover_after=0.2, backfill_deadline=0.3, retry_max=0.1)
    up.start()
    rec = SyntheticRecording(dirs / "spool", participants=("alice",))
    first = rec.close_segment(up, "alice")
    wait_for(lambda: up.progress().primary_segments == 1, what="first segment in the primary")
    primary.mode = "transient"
    later = [rec.close_segment(up, "alice") for _ in range(2)]
    rec.end(up)
    result = up.close(timeout=10)
    assert result.status == "backed_up", result.message
    assert result.unverified == 1 and not result.mismatched
    # only the integrity check reads a segment the primary holds (the backfill asks about those it lacks)
    assert first not in primary.reads, "the integrity check asked a primary that was down at close"
    assert set(later) <= set(backup.reads)  # the backup's segments were checked


def test_no_backup_and_primary_down_keeps_spool_files(dirs):
    primary, _ = stores(dirs, backup=False)
    primary.mode = "transient"
    up = Uploader(primary, failover_after=0.2, retry_max=0.1)
    up.start()
    rec = SyntheticRecording(dirs / "spool", participants=("alice",))
    keys = [rec.close_segment(up, "alice") for _ in range(2)]
    result = up.close(timeout=1.0)
    assert result.status == "failed"
    assert set(result.missing) == set(keys)
    assert "could not be stored" in result.message and "503" in result.message
    assert len(list((dirs / "spool").rglob("*.ts"))) == 2, "unstored segments must stay in the spool"
    assert up.fatal_error is None  # transient, not a configuration error


def test_primary_recovers_before_failover(dirs):
    primary, backup = stores(dirs)
    primary.mode = "transient"
    up = Uploader(primary, backup, failover_after=30, retry_max=0.05)
    up.start()
    rec = SyntheticRecording(dirs / "spool", participants=("alice",))
    rec.close_segment(up, "alice")
    wait_for(lambda: primary.requests >= 3, what="retries")
    primary.mode = None
    rec.end(up)
    result = up.close(timeout=10)
    assert result.status == "uploaded"
    assert not result.progress.backed_up
    assert not list((dirs / "backup").iterdir())


def test_wrong_credentials_on_primary_fails_over_at_once(dirs):
    primary, backup = stores(dirs)
    primary.mode = "config"
    up = Uploader(primary, backup, failover_after=3600)
    up.start()
    rec = SyntheticRecording(dirs / "spool", participants=("alice",))
    rec.close_segment(up, "alice")
    wait_for(lambda: up.progress().backup_only_segments == 1, what="immediate failover on a config error")
    assert up.fatal_error is None
    up.close(timeout=1)


def test_config_error_on_both_stores_is_fatal(dirs):
    primary, backup = stores(dirs)
    primary.mode = backup.mode = "config"
    up = Uploader(primary, backup)
    up.start()
    rec = SyntheticRecording(dirs / "spool", participants=("alice",))
    rec.close_segment(up, "alice")
    wait_for(lambda: up.fatal_error is not None, what="fatal error")
    msg = str(up.fatal_error)
    assert "primary store file://" in msg and "backup store file://" in msg and "InvalidAccessKeyId" in msg
    result = up.close(timeout=5)
    assert result.status == "failed" and "InvalidAccessKeyId" in result.message
    assert len(list((dirs / "spool").rglob("*.ts"))) == 1


def test_preflight(dirs):
    primary, backup = stores(dirs)
    primary.mode = "config"
    up = Uploader(primary, backup)
    problems = up.preflight()  # the backup works: not fatal, but reported
    assert [e.store for e in problems] == [primary.label]
    backup.mode = "config"
    with pytest.raises(StoreError) as ei:
        Uploader(primary, backup).preflight()
    assert "primary store" in str(ei.value) and "backup store" in str(ei.value)
    with pytest.raises(StoreError):
        Uploader(LocalStore(dirs / "missing")).preflight()


def test_hostile_key_is_refused_and_reported(dirs):
    primary, backup = stores(dirs)
    up = Uploader(primary, backup)
    up.start()
    evil = dirs / "spool" / "evil.ts"
    evil.write_bytes(b"evil")
    up.segment_closed("../../evil.ts", evil, size=4, sha256=hashlib.sha256(b"evil").hexdigest())
    result = up.close(timeout=5)
    assert result.status == "failed" and result.missing == ("../../evil.ts",)
    assert "refused object key" in result.message
    assert evil.exists(), "a segment that could not be stored stays in the spool"
    assert not (dirs / "evil.ts").exists() and not (dirs.parent / "evil.ts").exists()
    assert result.progress.failed_segments == 1


def test_segment_closed_never_blocks_on_a_slow_store(dirs):
    primary, _ = stores(dirs, backup=False)
    release = threading.Event()
    orig = primary.put_file

    def slow_put(*a, **kw):
        release.wait(10)
        orig(*a, **kw)

    primary.put_file = slow_put
    up = Uploader(primary)
    up.start()
    rec = SyntheticRecording(dirs / "spool", participants=("alice",))
    t0 = time.monotonic()
    for _ in range(20):
        rec.close_segment(up, "alice")
    assert time.monotonic() - t0 < 1.0
    assert up.progress().pending_segments == 20
    release.set()
    rec.end(up)
    assert up.close(timeout=10).status == "uploaded"


def test_manifest_is_rate_limited_while_recording(dirs):
    primary, _ = stores(dirs, backup=False)
    uploads = []
    orig = primary.put_bytes

    def put_bytes(key, data, ct=None):
        if key.endswith("manifest.json"):
            uploads.append(key)
        orig(key, data, ct)

    primary.put_bytes = put_bytes
    up = Uploader(primary, manifest_interval=3600)
    up.start()
    rec = SyntheticRecording(dirs / "spool", participants=("alice",))
    for _ in range(5):
        rec.close_segment(up, "alice")
    wait_for(lambda: up.progress().primary_segments == 5, what="segments")
    assert len(uploads) == 1  # the first one, then at most every manifest_interval
    rec.end(up)
    assert up.close(timeout=5).status == "uploaded"
    assert len(uploads) == 2  # and the final one
    assert_complete(dirs / "primary", rec)


def test_close_twice_and_after_close(dirs):
    primary, _ = stores(dirs, backup=False)
    up = Uploader(primary).start()
    assert up.close(timeout=1).status == "uploaded"
    with pytest.raises(RuntimeError):
        up.segment_closed("a.ts", dirs / "x", size=1, sha256="00")


def test_progress_as_status_matches_the_api_model():
    from reel_api.models import UploadStatus
    from reel_recorder.storage import UploadProgress

    empty = UploadProgress()
    assert empty.as_status() == {"segments": 0, "pendingSegments": 0, "recordedBytes": 0, "storedBytes": 0,
                                 "progress": 0}
    half = UploadProgress(segments=4, pending_segments=2, recorded_bytes=400, stored_bytes=199, progress=0.4975,
                          location="mixed", primary_segments=1, backup_only_segments=1)
    st = UploadStatus.model_validate(half.as_status())
    assert (st.progress, st.location, st.pending_segments) == (49, "mixed", 2)
    done = UploadProgress(segments=4, recorded_bytes=400, stored_bytes=400, primary_segments=4)
    assert UploadStatus.model_validate(done.as_status()).progress == 100
