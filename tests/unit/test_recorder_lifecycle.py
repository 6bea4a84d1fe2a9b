"""The Recorder's orchestration (phases, stop reasons, presence, pausing, failures) against a fake room and a
fake ingest, with the real catalog and uploader writing into a local folder. The media path and Janus itself
are tested in tests/integration/."""

from __future__ import annotations

import asyncio
import json

from tests.support.fake_room import SERVER, FakeRoom, make_recorder, publisher, run, until

from reel_api.vocabulary import Phase, StopReason
from reel_recorder import errors
from reel_recorder.errors import RecorderError
from reel_recorder.storage import LocalStore


def stored_manifest(tmp_path, recorder) -> dict:
    return json.loads((tmp_path / "out" / recorder.catalog.manifest_key).read_text())


def test_a_recording_goes_through_every_phase_and_stops_on_request(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, reports, _ = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: ("update", 1, ["audio", "video"]) in ingest.calls)
        stop.set()

    status = run(recorder, script)
    assert reports.phases() == [Phase.STARTING, Phase.RECORDING, Phase.UPLOADING]
    assert reports.events()[:3] == ["starting", "joined", "participants"] and "stopped" in reports.events()
    assert status["phase"] == Phase.COMPLETED and status["stopReason"] == StopReason.REQUESTED
    assert room.calls == ["connect", "join reel-recorder pin=1234", "close"]
    assert ingest.calls[-1] == ("close",)
    [alice] = status["participants"]
    assert alice["display"] == "alice" and alice["leftAt"] is not None and status["activeParticipants"] == 0
    manifest = stored_manifest(tmp_path, recorder)
    assert manifest["stopReason"] == StopReason.REQUESTED and manifest["recordingId"] == status["recordingId"]
    assert [p["display"] for p in manifest["participants"]] == ["alice"]


def test_an_empty_room_ends_with_no_users(tmp_path):
    recorder, ingest, _, _ = make_recorder(tmp_path, FakeRoom(), maxIdleSeconds=0.5)
    status = run(recorder)
    assert status["phase"] == Phase.COMPLETED and status["stopReason"] == StopReason.NO_USERS
    assert not [c for c in ingest.calls if c[0] == "update"]


def test_max_duration_ends_a_recording_with_people_in_it(tmp_path):
    recorder, _, _, _ = make_recorder(tmp_path, FakeRoom([publisher(1, "alice")]), maxDurationSeconds=0.5)
    status = run(recorder)
    assert status["phase"] == Phase.COMPLETED and status["stopReason"] == StopReason.MAX_DURATION


def test_who_leaves_and_returns_stays_one_participant_with_two_runs(tmp_path):
    room = FakeRoom([publisher(1, "alice"), publisher(2, "bob", video=False)])
    recorder, ingest, _, _ = make_recorder(tmp_path, room, recording={"unsubscribe": ["bob"]})

    async def script(stop):
        await until(lambda: ("update", 1, ["audio", "video"]) in ingest.calls)
        room.events.put_nowait({"videoroom": "event", "unpublished": 1})
        await until(lambda: ("remove", 1) in ingest.calls)
        room.events.put_nowait({"videoroom": "event", "publishers": [publisher(3, "alice")]})
        await until(lambda: ("update", 3, ["audio", "video"]) in ingest.calls)
        stop.set()

    status = run(recorder, script)
    assert [c[1] for c in ingest.calls if c[0] == "update"] == [1, 3]  # bob is never recorded
    [alice] = recorder.manifest.participants
    assert alice.ids == [1, 3] and len(alice.runs) == 2 and all(r["leftAt"] for r in alice.runs)
    assert status["phase"] == Phase.COMPLETED


def test_pausing_ends_every_ingest_and_resuming_starts_them_again(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, reports, control = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: ("update", 1, ["audio", "video"]) in ingest.calls)
        control.set(True)
        await until(lambda: recorder.phase == Phase.PAUSED)
        assert ("close",) in ingest.calls and recorder.participants.active_count() == 0
        control.set(False)
        await until(lambda: [c[0] for c in ingest.calls].count("update") == 2)
        stop.set()

    status = run(recorder, script)
    assert reports.phases() == [Phase.STARTING, Phase.RECORDING, Phase.PAUSED, Phase.RECORDING, Phase.UPLOADING]
    assert "paused" in reports.events() and "resumed" in reports.events()
    manifest = stored_manifest(tmp_path, recorder)
    assert len(manifest["pauses"]) == 1 and manifest["pauses"][0]["resumedAt"]
    assert len(manifest["participants"][0]["joins"]) == 2
    assert status["phase"] == Phase.COMPLETED


def test_paused_from_the_start_records_nobody_but_follows_presence(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, reports, _ = make_recorder(tmp_path, room, paused=True, maxIdleSeconds=0.3)

    async def script(stop):
        await until(lambda: recorder.phase == Phase.PAUSED)
        await asyncio.sleep(0.8)  # past maxIdleSeconds: someone publishes, so the session goes on
        assert recorder.phase == Phase.PAUSED  # not ended by NoUsers
        stop.set()

    status = run(recorder, script)
    assert status["stopReason"] == StopReason.REQUESTED
    assert not [c for c in ingest.calls if c[0] == "update"]
    assert reports.phases()[:2] == [Phase.STARTING, Phase.PAUSED]


def test_a_media_failure_ends_the_recording_with_its_own_reason(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: ingest.calls)
        ingest.errors.append(RecorderError(errors.CODEC_UNSUPPORTED, "alice publishes VP8"))

    status = run(recorder, script)
    assert status["phase"] == Phase.FAILED and status["stopReason"] == StopReason.ERROR
    assert status["reason"] == errors.CODEC_UNSUPPORTED and "VP8" in status["message"]
    assert ingest.calls[-1] == ("close",) and room.calls[-1] == "close"
    assert stored_manifest(tmp_path, recorder)["stopReason"] == StopReason.ERROR


def test_losing_the_room_fails_with_the_server_named(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: ingest.calls)
        room.closed.set()

    status = run(recorder, script)
    assert status["phase"] == Phase.FAILED and status["reason"] == errors.JANUS_ERROR
    assert SERVER in status["message"]


def test_an_unreachable_room_fails_before_any_ingest(tmp_path):
    room = FakeRoom(connect_error=RecorderError(errors.JANUS_UNREACHABLE, f"cannot reach {SERVER}"))
    built = []
    recorder, _, _, _ = make_recorder(tmp_path, room)
    recorder.make_ingest = lambda: built.append(1)
    status = run(recorder)
    assert status["phase"] == Phase.FAILED and status["reason"] == errors.JANUS_UNREACHABLE
    assert not built and room.calls == ["connect", "close"]


def test_an_unusable_store_fails_before_joining(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, _, reports, _ = make_recorder(tmp_path, room, store=LocalStore(tmp_path / "missing", name="primary"))
    status = run(recorder)
    assert status["phase"] == Phase.FAILED and status["reason"] == errors.STORAGE_FAILED
    assert "primary" in status["message"]
    assert room.calls == [] and reports.seen == []


def test_progress_reports_name_the_playlists_and_the_manifest(tmp_path):
    room = FakeRoom([publisher(1, "alice"), publisher(2, "bob")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: len([c for c in ingest.calls if c[0] == "update"]) == 2)
        stop.set()

    status = run(recorder, script)
    prefix = recorder.prefix
    assert status["manifest"] == f"{prefix}manifest.json"
    assert sorted(status["playlists"]) == sorted(p["playlist"] for p in status["participants"])
    assert all(pl.startswith(prefix) and pl.endswith("/index.m3u8") for pl in status["playlists"])
