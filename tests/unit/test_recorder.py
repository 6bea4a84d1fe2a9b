"""The Recorder's orchestration (phases, stop reasons, presence, pausing, failures) against a fake room and a
fake ingest, with the real catalog and uploader writing into a local folder. The media path and Janus itself
are tested in tests/integration/."""

from __future__ import annotations

import asyncio
import json

import yaml
from tests.support.recorder_proc import session_manifest

from reel_api.vocabulary import Phase, StopReason
from reel_recorder import errors
from reel_recorder.control import PauseControl
from reel_recorder.errors import RecorderError
from reel_recorder.recorder import Recorder
from reel_recorder.session import session_from_manifest, validated_manifest
from reel_recorder.storage import LocalStore, Uploader

SERVER = "ws://janus.test:8188"


def publisher(pub_id, display, audio=True, video=True) -> dict:
    streams = []
    if audio:
        streams.append({"type": "audio", "mid": "0", "codec": "opus"})
    if video:
        streams.append({"type": "video", "mid": "1", "codec": "h264"})
    return {"id": pub_id, "display": display, "streams": streams}


class FakeRoom:
    def __init__(self, publishers=(), connect_error: Exception | None = None):
        self.url = SERVER
        self.events: asyncio.Queue = asyncio.Queue()
        self.closed = asyncio.Event()
        self.publishers = list(publishers)
        self.connect_error = connect_error
        self.calls: list[str] = []

    async def connect(self) -> None:
        self.calls.append("connect")
        if self.connect_error:
            raise self.connect_error

    async def join(self, display, pin=None) -> dict:
        self.calls.append(f"join {display} pin={pin}")
        return {"id": 99, "publishers": self.publishers}

    async def close(self) -> None:
        self.calls.append("close")


class FakeIngest:
    def __init__(self):
        self.calls: list[tuple] = []
        self.errors: list[BaseException] = []

    async def update(self, pub, streams, sink) -> None:
        self.calls.append(("update", pub.id, sorted(s.kind for s in streams)))

    async def remove(self, pub_id) -> None:
        self.calls.append(("remove", pub_id))

    async def close(self) -> None:
        self.calls.append(("close",))

    def failures(self):
        return list(self.errors)


class Reports:
    def __init__(self):
        self.seen: list[tuple[str, dict]] = []

    def report(self, event: str, status: dict) -> None:
        self.seen.append((event, status))

    def phases(self) -> list[str]:
        out = []
        for _, status in self.seen:
            if "phase" in status and (not out or out[-1] != status["phase"]):
                out.append(status["phase"])
        return out

    def events(self) -> list[str]:
        return [event for event, _ in self.seen if event != "upload"]


def make_recorder(tmp_path, room, *, recording=None, paused=False, store=None, resume=None, read_back=None,
                  stop_cause=None, **overrides):
    manifest = validated_manifest(yaml.safe_dump(session_manifest(SERVER, 1234, recording=recording, paused=paused)))
    manifest["spec"]["recording"].update(overrides)  # below the API's minimums, to keep the tests short
    session = session_from_manifest(manifest)
    if store is None:
        (tmp_path / "out").mkdir(parents=True)
        store = LocalStore(tmp_path / "out", name="primary")
    uploader = Uploader(store, progress_interval=0.05)
    ingest = FakeIngest()
    reports = Reports()
    control = PauseControl(paused)
    recorder = Recorder(session, room=room, make_ingest=lambda: ingest, uploader=uploader, spool=tmp_path / "spool",
                        progress=reports, pin="1234", control=control, upload_timeout=10, resume=resume,
                        read_back=read_back, stop_cause=stop_cause)
    return recorder, ingest, reports, control


def run(recorder, script=None) -> dict:
    """Run the recorder until it returns; ``script(stop)`` drives it meanwhile (in a thread-free coroutine)."""
    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(recorder.run(stop))
        if script is not None:
            await script(stop)
        return await asyncio.wait_for(task, 30)

    return asyncio.run(main())


async def until(predicate, timeout=5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


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
