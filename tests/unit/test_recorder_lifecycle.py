"""The Recorder's orchestration (phases, stop reasons, presence, pausing, failures) against a fake room and a
fake ingest, with the real catalog and uploader writing into a local folder. The media path and Janus itself
are tested in tests/integration/."""

from __future__ import annotations

import asyncio
import json
import time

from tests.support.fake_room import SERVER, FakeRoom, make_recorder, publisher, run, until

from reel_api.vocabulary import Phase, RoomState, StopReason
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


def test_who_rejoins_with_their_janus_id_stays_one_participant_with_two_runs(tmp_path):
    room = FakeRoom([publisher(1, "alice"), publisher(2, "bob", video=False)])
    recorder, ingest, _, _ = make_recorder(tmp_path, room, recording={"unsubscribe": ["bob"]})

    async def script(stop):
        await until(lambda: ("update", 1, ["audio", "video"]) in ingest.calls)
        room.events.put_nowait({"videoroom": "event", "unpublished": 1})
        await until(lambda: ("remove", 1) in ingest.calls)
        room.events.put_nowait({"videoroom": "event", "publishers": [publisher(1, "alice")]})
        await until(lambda: [c for c in ingest.calls if c[0] == "update"] == [("update", 1, ["audio", "video"])] * 2)
        stop.set()

    status = run(recorder, script)
    assert [c[1] for c in ingest.calls if c[0] == "update"] == [1, 1]  # bob is never recorded
    [alice] = recorder.manifest.participants
    assert alice.ids == [1] and len(alice.runs) == 2 and all(r["leftAt"] for r in alice.runs)
    assert status["phase"] == Phase.COMPLETED


def test_two_people_with_one_name_are_two_participants_with_two_folders(tmp_path):
    """Keyed by Janus id: the same display name at the same time, or after the first left, is someone else."""
    room = FakeRoom([publisher(1, "alex"), publisher(2, "alex")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: {c[1] for c in ingest.calls if c[0] == "update"} == {1, 2})
        room.events.put_nowait({"videoroom": "event", "leaving": 1})
        await until(lambda: ("remove", 1) in ingest.calls)
        room.events.put_nowait({"videoroom": "event", "publishers": [publisher(3, "alex")]})
        await until(lambda: ("update", 3, ["audio", "video"]) in ingest.calls)
        stop.set()

    status = run(recorder, script)
    records = recorder.manifest.participants
    assert [r.ids for r in records] == [[1], [2], [3]] and {r.display for r in records} == {"alex"}
    assert len({r.folder for r in records}) == 3 and all(len(r.runs) == 1 for r in records)
    assert len({p["playlist"] for p in status["participants"]}) == 3


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


def test_losing_the_room_with_no_time_to_reconnect_fails_with_the_server_named(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room, reconnectSeconds=0)

    async def script(stop):
        await until(lambda: ingest.calls)
        room.drop("the connection closed: no close frame received")

    status = run(recorder, script)
    assert status["phase"] == Phase.FAILED and status["reason"] == errors.JANUS_LOST
    assert SERVER in status["message"] and "no close frame received" in status["message"]
    assert room.calls.count("connect") == 1  # 0 s: no attempt


# -- a lost connection to Janus (room/reconnect.py) ------------------------------------------------------------

def _updates(ingest, pub_id) -> int:
    return len([c for c in ingest.calls if c[:2] == ("update", pub_id)])


def test_a_lost_room_is_rejoined_and_everyone_recorded_again_in_their_own_folder(tmp_path):
    room = FakeRoom([publisher(1, "alice"), publisher(2, "bob")])
    recorder, ingest, reports, _ = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: _updates(ingest, 1) == _updates(ingest, 2) == 1)
        room.reconnect_error = RecorderError(errors.ROOM_NOT_FOUND, "room 1234 does not exist (yet)")
        room.drop()
        await until(lambda: recorder.status()["room"]["state"] == RoomState.RECONNECTING)
        assert ("close",) in ingest.calls and recorder.participants.active_count() == 0  # every run ended
        await until(lambda: room.calls.count("connect") >= 3)  # RoomNotFound is retried (the app recreates it)
        room.publishers = [publisher(1, "alice"), publisher(2, "bob", video=False)]
        room.reconnect_error = None
        await until(lambda: _updates(ingest, 1) == _updates(ingest, 2) == 2)
        stop.set()

    status = run(recorder, script)
    assert status["phase"] == Phase.COMPLETED and status["stopReason"] == StopReason.REQUESTED
    assert status["room"]["state"] == RoomState.CONNECTED and status["room"]["reconnects"] == 1
    assert "reconnected" in status["room"]["message"] and SERVER in status["room"]["message"]
    assert room.calls[-3:] == ["connect", "join reel-recorder pin=1234", "close"]  # same display and pin
    assert ("update", 2, ["audio"]) in ingest.calls  # what bob publishes now
    records = recorder.manifest.participants
    assert [len(r.runs) for r in records] == [2, 2] and len({r.folder for r in records}) == 2  # one folder each
    manifest = stored_manifest(tmp_path, recorder)
    [gap] = manifest["roomGaps"]
    assert gap["lostAt"] <= gap["reconnectedAt"] and "cut by the test" in gap["error"]
    assert all(len(p["joins"]) == 2 for p in manifest["participants"])
    assert "room" in reports.events()
    states = [s["room"]["state"] for e, s in reports.seen if e == "room"]
    assert states == [RoomState.RECONNECTING, RoomState.CONNECTED]


def test_a_room_not_regained_within_reconnect_seconds_fails_janus_lost(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room, reconnectSeconds=1.2)

    async def script(stop):
        await until(lambda: ingest.calls)
        room.reconnect_error = RecorderError(errors.JANUS_UNREACHABLE, f"cannot reach the Janus server at {SERVER}")
        room.drop()

    t0 = time.monotonic()
    status = run(recorder, script)
    assert status["phase"] == Phase.FAILED and status["reason"] == errors.JANUS_LOST
    assert SERVER in status["message"] and "reconnectSeconds (1.2 s)" in status["message"]
    assert "last error: cannot reach" in status["message"]
    assert 1.2 <= time.monotonic() - t0 < 5
    assert room.calls.count("connect") == 1 + 2  # attempts at 0.5 s and at the deadline (1.2 s)
    [gap] = stored_manifest(tmp_path, recorder)["roomGaps"]
    assert gap["reconnectedAt"] is None


def test_credentials_refused_while_rejoining_end_the_recording_at_once(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room)  # reconnectSeconds: 60

    async def script(stop):
        await until(lambda: ingest.calls)
        room.reconnect_error = RecorderError(errors.ROOM_UNAUTHORIZED, "room 1234 refused to join: wrong pin")
        room.drop()

    status = run(recorder, script)
    assert status["phase"] == Phase.FAILED and status["reason"] == errors.ROOM_UNAUTHORIZED
    assert room.calls.count("connect") == 2


def test_a_stop_while_reconnecting_ends_the_recording_as_requested(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: ingest.calls)
        room.reconnect_error = RecorderError(errors.JANUS_UNREACHABLE, "cannot reach")
        room.drop()
        await until(lambda: room.calls.count("connect") >= 2)
        stop.set()

    status = run(recorder, script)
    assert status["phase"] == Phase.COMPLETED and status["stopReason"] == StopReason.REQUESTED
    assert status["room"]["state"] == RoomState.RECONNECTING
    [alice] = stored_manifest(tmp_path, recorder)["participants"]
    assert len(alice["joins"]) == 1 and alice["joins"][0]["leftAt"]


def test_max_duration_ends_a_recording_while_reconnecting(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room, maxDurationSeconds=1)

    async def script(stop):
        await until(lambda: ingest.calls)
        room.reconnect_error = RecorderError(errors.JANUS_UNREACHABLE, "cannot reach")
        room.drop()

    status = run(recorder, script)
    assert status["phase"] == Phase.COMPLETED and status["stopReason"] == StopReason.MAX_DURATION


def test_the_gap_does_not_count_as_idle_time(tmp_path):
    room = FakeRoom()  # nobody: idle from the start
    recorder, _, _, _ = make_recorder(tmp_path, room, maxIdleSeconds=1)
    ended: list[float] = []

    async def script(stop):
        await asyncio.sleep(0.5)
        room.reconnect_error = RecorderError(errors.JANUS_UNREACHABLE, "cannot reach")
        room.drop()
        await asyncio.sleep(1.5)  # well past maxIdleSeconds, but without the room
        assert recorder.phase == Phase.RECORDING
        room.reconnect_error = None
        t = time.monotonic()
        await until(lambda: recorder.phase != Phase.RECORDING)
        ended.append(time.monotonic() - t)

    status = run(recorder, script)
    assert status["stopReason"] == StopReason.NO_USERS
    assert 0.2 < ended[0] < 2.0  # the idle second's rest, after the rejoin (up to a 1 s backoff first)


def test_a_pause_during_the_gap_is_taken_and_the_rejoin_records_nobody_until_resumed(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, _, control = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: ingest.calls)
        room.reconnect_error = RecorderError(errors.JANUS_UNREACHABLE, "cannot reach")
        room.drop()
        control.set(True)
        await until(lambda: recorder.phase == Phase.PAUSED)
        room.reconnect_error = None
        await until(lambda: recorder.status()["room"]["state"] == RoomState.CONNECTED)
        await asyncio.sleep(0.3)
        assert _updates(ingest, 1) == 1
        control.set(False)
        await until(lambda: _updates(ingest, 1) == 2)
        stop.set()

    status = run(recorder, script)
    assert status["phase"] == Phase.COMPLETED
    manifest = stored_manifest(tmp_path, recorder)
    assert len(manifest["pauses"]) == 1 and len(manifest["roomGaps"]) == 1


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
