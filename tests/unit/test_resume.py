"""Resuming a recording after its recorder was lost: reading back what the stores hold (resume.read_back), and
the Recorder continuing it (numbering, discontinuity, the interruption in the manifest), with real LocalStores,
the real catalog and uploader; the room and the ingest are the fakes of tests/support/fake_room.py."""

from __future__ import annotations

import hashlib
import json

from tests.support.fake_room import FakeRoom, make_recorder, publisher, run, until
from tests.support.synthetic import SyntheticRecording, manifest_segments, playlist_entries

from reel_api.vocabulary import ConditionReason, Phase, StopReason
from reel_recorder.layout import segment_name
from reel_recorder.output.playlist import parse_playlist
from reel_recorder.resume import ResumeRequest, read_back
from reel_recorder.storage import LocalStore, Uploader

PREFIX = "2026-11-30/1234_101500_01JREC/"


def earlier_run(tmp_path, *, segments=4, extra_unlisted=True, lose=(2,)):
    """What a recorder killed mid-recording leaves: segments and playlists stored, the manifest a little behind
    (one segment it does not list yet), and a segment the manifest lists that never reached the store."""
    out = tmp_path / "out"
    out.mkdir()
    store = LocalStore(out, name="primary")
    rec = SyntheticRecording(tmp_path / "old-spool", prefix=PREFIX, participants=("alice",), segment_bytes=5000,
                             segment_seconds=2.0)
    up = Uploader(store, manifest_interval=0.0).start()
    for _ in range(segments):
        rec.close_segment(up, "alice")
    up.close(10)  # everything stored, manifest and playlist included (no ENDLIST: the recording never ended)
    folder = rec.participants["alice"].folder
    for i in lose:  # in the manifest, not in the store: was in the dead recorder's spool
        (out / rec.key("alice", segment_name(i))).unlink()
    if extra_unlisted:  # stored and listed after the last manifest upload
        data = b"\x47" * 3000
        store.put_bytes(rec.key("alice", segment_name(segments)), data)
        pl = (out / rec.playlist_key("alice")).read_text() + f"#EXTINF:1.500,\n{segment_name(segments)}\n"
        store.put_bytes(rec.playlist_key("alice"), pl.encode())
    return store, rec, folder


def test_read_back_lists_what_is_stored_and_names_what_is_lost(tmp_path):
    store, rec, folder = earlier_run(tmp_path)
    prev = read_back(store, None, PREFIX)
    [alice] = prev.participants
    names = [s.name for s in alice.segments]
    # every listed segment the store holds, in order; the missing one is lost, the one after it starts after a
    # discontinuity; the one stored after the last manifest is there too
    assert names == [segment_name(i) for i in (0, 1, 3, 4)]
    assert [s.discontinuity for s in alice.segments] == [False, False, True, False]
    # lost: the one the manifest lists, and the one alice was being recorded into when the recorder died
    assert prev.lost == [rec.key("alice", segment_name(2)), rec.key("alice", segment_name(5))]
    assert prev.next_index[folder] == 6  # after every number seen: stored, listed, lost or open
    assert {s.key for s in prev.stored} == {rec.key("alice", n) for n in names}
    assert all(s.in_primary and not s.in_backup for s in prev.stored)
    assert prev.manifest.recording_id == "synthetic" and alice.display == "alice"


def test_a_segment_listed_after_the_last_manifest_is_read_back_with_its_checksum(tmp_path):
    store, rec, folder = earlier_run(tmp_path, lose=())
    prev = read_back(store, None, PREFIX)
    [alice] = prev.participants
    assert [s.name for s in alice.segments] == [segment_name(i) for i in range(5)]
    extra = alice.segments[-1]
    assert extra.bytes == 3000 and extra.sha256 == hashlib.sha256(b"\x47" * 3000).hexdigest()
    assert extra.duration == 1.5 and extra.start == 8.0  # after the four 2 s segments
    assert prev.lost == [rec.key("alice", segment_name(5))] and prev.next_index[folder] == 6  # 5 was open


def _ts_segment(start: float, seconds: float) -> bytes:
    """A real MPEG-TS segment of AAC audio on the recording's timeline, as output/writer.py writes them."""
    import io

    import av
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts", options={"mpegts_copyts": "1"}) as c:
        stream = c.add_stream("aac", rate=48000, layout="mono")
        pts = round(start * 48000)
        for _ in range(int(seconds * 48000 / 1024)):
            frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            frame.planes[0].update(bytes(frame.planes[0].buffer_size))
            frame.sample_rate, frame.pts = 48000, pts
            pts += 1024
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return buf.getvalue()


def test_a_segment_stored_but_never_listed_is_taken_over_with_its_own_times(tmp_path):
    """The recorder died between storing a segment and re-publishing the playlist: the segment is kept, placed
    by its own timestamps; one neither listed nor readable is left out (numbering still skips it)."""
    store, rec, folder = earlier_run(tmp_path, extra_unlisted=False, lose=())
    data = _ts_segment(8.0, 2.0)
    store.put_bytes(rec.key("alice", segment_name(4)), data)
    store.put_bytes(rec.key("alice", segment_name(5)), b"not a segment")
    prev = read_back(store, None, PREFIX)
    [alice] = prev.participants
    assert [s.name for s in alice.segments] == [segment_name(i) for i in range(5)]
    unlisted = alice.segments[-1]
    assert abs(unlisted.start - 8.0) < 0.05 and abs(unlisted.duration - 2.0) < 0.1, unlisted
    assert unlisted.sha256 == hashlib.sha256(data).hexdigest() and not unlisted.discontinuity
    assert rec.key("alice", segment_name(4)) in {s.key for s in prev.stored}
    assert prev.next_index[folder] == 7 and prev.lost == [rec.key("alice", segment_name(6))]


def test_a_participant_who_had_left_or_a_paused_recording_lost_no_open_segment(tmp_path):
    store, _, folder = earlier_run(tmp_path, extra_unlisted=False, lose=())
    manifest_path = tmp_path / "out" / PREFIX / "manifest.json"
    doc = json.loads(manifest_path.read_text())
    doc["participants"][0]["joins"][-1]["leftAt"] = "2026-11-30T10:15:10.000Z"
    manifest_path.write_text(json.dumps(doc))
    prev = read_back(store, None, PREFIX)
    assert prev.lost == [] and prev.next_index[folder] == 4
    doc["participants"][0]["joins"][-1]["leftAt"] = None
    doc["pauses"] = [{"pausedAt": "2026-11-30T10:15:10.000Z", "resumedAt": None}]
    manifest_path.write_text(json.dumps(doc))
    prev = read_back(store, None, PREFIX)
    assert prev.lost == [] and prev.next_index[folder] == 4


def test_the_recorder_continues_the_recording_after_a_discontinuity(tmp_path):
    store, rec, folder = earlier_run(tmp_path)
    room = FakeRoom([publisher(1, "alice")])
    resume = ResumeRequest(prefix=PREFIX, recording_id="synthetic", reason="PodDeleted",
                           interrupted_at="2026-11-30T10:15:20.000Z")
    recorder, ingest, _, _ = make_recorder(tmp_path, room, store=store, resume=resume,
                                                 read_back=lambda: read_back(store, None, PREFIX))

    async def script(stop):
        await until(lambda: ingest.calls)
        stop.set()

    status = run(recorder, script)
    assert status["phase"] == Phase.COMPLETED and status["recordingId"] == "synthetic"
    assert recorder.prefix == PREFIX and status["manifest"] == PREFIX + "manifest.json"
    part = next(iter(recorder.participants))
    assert part.record.folder == folder and part.writer is not None and part.writer._index == 6
    manifest = json.loads((tmp_path / "out" / PREFIX / "manifest.json").read_text())
    [interruption] = manifest["interruptions"]
    assert interruption["reason"] == "PodDeleted" and interruption["interruptedAt"] == "2026-11-30T10:15:20.000Z"
    assert interruption["lostSegments"] == [rec.key("alice", segment_name(2)), rec.key("alice", segment_name(5))]
    assert interruption["resumedAt"]
    assert [s["name"] for s in manifest_segments(manifest)] == [segment_name(i) for i in (0, 1, 3, 4)]
    assert all(s["location"] == "primary" for s in manifest_segments(manifest))
    [p] = manifest["participants"]
    assert len(p["joins"]) == 2 and all(j["leftAt"] for j in p["joins"])  # the earlier run closed at the gap
    assert manifest["stopReason"] == StopReason.REQUESTED
    playlist = (tmp_path / "out" / rec.playlist_key("alice")).read_text()
    assert playlist_entries(playlist) == [segment_name(i) for i in (0, 1, 3, 4)] and "#EXT-X-ENDLIST" in playlist
    assert f"{segment_name(1)}\n#EXT-X-DISCONTINUITY\n" in playlist
    assert status["upload"]["segments"] == 4 and status["upload"]["pendingSegments"] == 0


def test_a_stop_nobody_asked_for_leaves_the_recording_open_for_a_replacement(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, reports, _ = make_recorder(tmp_path, room, stop_cause=lambda: None)

    async def script(stop):
        await until(lambda: ingest.calls)
        stop.set()  # SIGTERM from a drain: the session has neither spec.stop nor a deletion

    status = run(recorder, script)
    assert status["interrupted"] is True and status["reason"] == ConditionReason.INTERRUPTED
    assert status["phase"] == Phase.RECORDING and "stopReason" not in status
    assert Phase.STOPPING not in reports.phases() and Phase.UPLOADING not in reports.phases()
    manifest = json.loads((tmp_path / "out" / recorder.catalog.manifest_key).read_text())
    assert manifest["stoppedAt"] is None and manifest["stopReason"] is None


def test_a_requested_or_deleting_stop_ends_the_recording(tmp_path):
    for cause in (StopReason.REQUESTED, StopReason.DELETED):
        room = FakeRoom([publisher(1, "alice")])
        recorder, ingest, _, _ = make_recorder(tmp_path / cause, room, stop_cause=lambda c=cause: c)

        async def script(stop, ingest=ingest):
            await until(lambda: ingest.calls)
            stop.set()

        status = run(recorder, script)
        assert status["phase"] == Phase.COMPLETED and status["stopReason"] == cause


def test_playlists_read_back_keep_their_discontinuities():
    text = "#EXTM3U\n#EXTINF:2.000,\nseg_00000.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.500,\nseg_00003.ts\n#EXT-X-ENDLIST\n"
    assert parse_playlist(text) == [("seg_00000.ts", 2.0, False), ("seg_00003.ts", 1.5, True)]
