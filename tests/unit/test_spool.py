"""The spool budget (storage/spool.py): sizes, the measurement, high/low water, what a full spool costs; the HLS
writer behind it (output/writer.py: nothing written while full, a new run after a discontinuity once it drains); the
Recorder reporting it (status.spool, manifest diskFull); the operator's DiskFull condition and Events."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from tests.support.analyze import decode_segments
from tests.support.fake_room import FakeRoom, make_recorder, publisher, run, until
from tests.support.packets import participant_media

from reel_api import RecordingSessionStatus
from reel_api.vocabulary import ConditionReason, ConditionStatus, ConditionType, Phase
from reel_operator import podspec
from reel_operator import status as st
from reel_operator.settings import Settings as OperatorSettings
from reel_recorder.output.playlist import Playlist, PlaylistEntry, parse_playlist
from reel_recorder.output.writer import ParticipantWriter
from reel_recorder.settings import Settings, SettingsError
from reel_recorder.storage.spool import SpoolBudget, disk_usage, episode_totals, parse_size

MIB = 2**20


# -- sizes and the measurement ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "0", "-1", "2Gi", "lots", "1.5"])
def test_the_recorder_takes_a_whole_number_of_bytes(text):
    assert parse_size(" 123 ") == 123
    with pytest.raises(ValueError):
        parse_size(text)


def test_the_limit_comes_from_the_environment_as_the_operator_sets_it():
    assert Settings.from_env({}).spool_limit is None
    assert Settings.from_env({"REEL_SPOOL_LIMIT": str(2 * 2**30)}).spool_limit == 2 * 2**30
    with pytest.raises(SettingsError, match="REEL_SPOOL_LIMIT"):
        Settings.from_env({"REEL_SPOOL_LIMIT": "two gigs"})
    pod = podspec.build_pod(_session(), OperatorSettings(spool_size_limit="3Gi"))
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    (spool,) = [v for v in pod["spec"]["volumes"] if v["name"] == "spool"]
    # one limit, both sides: the quantity for the kubelet, its bytes (the Kubernetes client's parser) for the recorder
    assert spool["emptyDir"]["sizeLimit"] == "3Gi" and env[podspec.SPOOL_LIMIT_ENV] == str(3 * 2**30)
    assert Settings.from_env({podspec.SPOOL_LIMIT_ENV: env[podspec.SPOOL_LIMIT_ENV]}).spool_limit == 3 * 2**30


def _session():
    from reel_api import load_session

    return load_session({"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
                         "metadata": {"name": "s", "namespace": "media", "uid": "u", "generation": 1},
                         "spec": {"room": {"server": "ws://janus:8188", "id": 1}, "storage": {"bucket": "recordings"}}})


def test_disk_usage_counts_every_file_below_the_spool_on_disk(tmp_path):
    (tmp_path / "alice_1").mkdir()
    (tmp_path / "alice_1" / "seg_00000.ts").write_bytes(os.urandom(100_000))
    (tmp_path / "alice_1" / "recording.mp4").write_bytes(os.urandom(50_000))
    (tmp_path / "bob_2" / "deeper").mkdir(parents=True)
    (tmp_path / "bob_2" / "deeper" / "x").write_bytes(os.urandom(10_000))
    used = disk_usage(tmp_path)
    assert 160_000 <= used <= 160_000 + 3 * 8192  # blocks: at most a few KiB more than the bytes
    assert disk_usage(tmp_path / "missing") == 0


# -- high and low water ----------------------------------------------------------------------------------------

class FakeDisk:
    def __init__(self):
        self.used = 0

    def __call__(self, _path) -> int:
        return self.used


def _budget(tmp_path, limit=1000):
    disk = FakeDisk()
    times = iter(f"2026-11-25T10:00:{s:02d}.000Z" for s in range(60))
    return SpoolBudget(tmp_path, limit, usage=disk, clock=lambda: next(times)), disk


def test_full_at_the_high_water_mark_and_again_free_below_the_low_one(tmp_path):
    budget, disk = _budget(tmp_path)
    assert budget.admit()
    for used, admitted in [(500, True), (899, True), (900, False), (1200, False), (800, False), (700, False),
                           (699, True), (850, True), (950, False), (100, True)]:
        disk.used = used
        state = budget.measure()
        assert budget.admit() is admitted and state.full is not admitted, used
        assert state.used == used and state.limit == 1000
    episodes = budget.snapshot().episodes
    assert [(e["since"], e["until"]) for e in episodes] == [
        ("2026-11-25T10:00:00.000Z", "2026-11-25T10:00:01.000Z"),
        ("2026-11-25T10:00:02.000Z", "2026-11-25T10:00:03.000Z")]


def test_what_a_full_spool_costs_is_counted_per_episode(tmp_path):
    budget, disk = _budget(tmp_path)
    disk.used = 950
    budget.measure()
    budget.dropped(segments=1, seconds=0.5)
    budget.dropped(segments=1, seconds=1.25)
    disk.used = 0
    budget.measure()
    disk.used = 990
    budget.measure()
    budget.dropped(segments=1, seconds=2.0)
    state = budget.finish()  # the recording ends while full: the episode ends with it
    assert [(e["droppedSegments"], e["droppedSeconds"]) for e in state.episodes] == [(2, 1.75), (1, 2.0)]
    assert state.episodes[-1]["until"] is not None and state.full
    assert state.as_status() == {"limitBytes": 1000, "usedBytes": 990, "full": True, "droppedSegments": 3,
                                 "droppedSeconds": 3.75}
    assert state.as_status(earlier=(4, 8.0))["droppedSegments"] == 7  # a resumed recording's earlier recorders
    assert episode_totals(state.episodes) == (3, 3.75)
    disk.used = 0
    assert not budget.measure().full and len(budget.measure().episodes) == 2  # drained after the end: no new one
    disk.used = 999
    assert not budget.measure().full  # no more media: nothing to gate, no new episode
    # a snapshot is a copy: the manifest's entries do not change under a render
    state.episodes[0]["droppedSegments"] = 99
    assert budget.snapshot().episodes[0]["droppedSegments"] == 2


def test_the_budget_never_deletes_anything(tmp_path):
    files = []
    for i in range(5):
        f = tmp_path / "alice_1" / f"seg_{i:05d}.ts"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(os.urandom(40_000))
        files.append(f)
    budget = SpoolBudget(tmp_path, 100_000)
    state = budget.measure()
    assert state.full and not budget.admit()
    assert all(f.exists() and f.stat().st_size == 40_000 for f in files)  # the oldest unstored data is kept


def test_bad_budgets_are_refused(tmp_path):
    with pytest.raises(ValueError):
        SpoolBudget(tmp_path, 0)
    with pytest.raises(ValueError):
        SpoolBudget(tmp_path, 100, high=0.5, low=0.6)


# -- the writer behind the gate --------------------------------------------------------------------------------


def test_a_full_spool_stops_new_segments_and_recording_resumes_after_a_discontinuity(tmp_path):
    budget, disk = _budget(tmp_path / "spool", limit=10 * MIB)
    segments = []
    writer = ParticipantWriter("alice_1", tmp_path / "spool", segment_seconds=2, on_segment=segments.append,
                               spool_gate=budget)
    measurements = [(4.5, 10 * MIB), (10.0, 0)]  # full at 4.5 s, drained at 10 s
    for kind, packet, t in participant_media(14):
        if measurements and t >= measurements[0][0]:
            disk.used = measurements.pop(0)[1]
            budget.measure()
        getattr(writer, kind)(packet, t)
    writer.close()

    starts = [(round(s.start, 2), round(s.start + s.duration, 2), s.discontinuity) for s in segments]
    before = [s for s in segments if s.start < 4.5]
    after = [s for s in segments if s.start >= 4.5]
    assert before and after, starts
    # the segment open when the spool filled ends there, and nothing more is written
    assert max(s.start + s.duration for s in before) == pytest.approx(4.5, abs=0.05), starts
    assert before[-1].duration < 1.0 and all(s.path.exists() for s in before)
    # the gate admits again at 10 s: the next run starts at the next keyframe, after a discontinuity
    assert after[0].discontinuity and 10.0 <= after[0].start <= 11.1, starts
    assert not any(s.discontinuity for s in segments[1:] if s is not after[0])
    assert [s.index for s in segments] == list(range(len(segments)))  # numbering goes on, no hole
    decoded = decode_segments([s.path for s in segments])
    assert decoded.decode_errors == 0
    # counted: 5.5 s of media (4.5 .. 10), a segment for each 2 s of it
    (episode,) = budget.snapshot().episodes
    assert episode["droppedSegments"] == 3, episode
    assert 5.0 <= episode["droppedSeconds"] <= 5.6, episode
    # the playlist: a discontinuity where recording resumed
    playlist = Playlist(target_duration=3)
    for s in segments:
        playlist.add(PlaylistEntry(uri=s.name, key=s.name, duration=s.duration, discontinuity=s.discontinuity))
    listed = parse_playlist(playlist.render())
    assert [disc for _, _, disc in listed].count(True) == 1


# -- the recorder reports it -----------------------------------------------------------------------------------

def test_the_recorder_reports_a_full_spool_and_lists_it_in_the_manifest(tmp_path):
    disk = FakeDisk()
    budget = SpoolBudget(tmp_path / "spool", 1000, usage=disk)
    room = FakeRoom([publisher(5, "alice")])
    recorder, _ingest, reports, _control = make_recorder(tmp_path, room, spool_budget=budget)

    def spool_reports():
        return [s["spool"]["full"] for e, s in reports.seen if e == "spool"]

    async def script(stop):
        await until(lambda: recorder.phase == Phase.RECORDING)
        disk.used = 950
        await until(lambda: spool_reports() == [True])
        budget.dropped(segments=2, seconds=3.5)  # a writer dropped media meanwhile
        disk.used = 100
        await until(lambda: spool_reports() == [True, False])
        disk.used = 990
        await until(lambda: spool_reports() == [True, False, True])
        stop.set()

    final = run(recorder, script)
    assert final["phase"] == Phase.COMPLETED, final
    assert final["spool"]["droppedSegments"] == 2 and final["spool"]["droppedSeconds"] == 3.5
    assert final["spool"]["limitBytes"] == 1000
    manifest = json.loads((tmp_path / "out" / final["manifest"]).read_text())
    first, second = manifest["diskFull"]
    assert (first["droppedSegments"], first["droppedSeconds"]) == (2, 3.5) and first["until"] is not None
    assert second["until"] is not None  # full when the recording stopped: the stretch ends with it
    assert RecordingSessionStatus.model_validate(final).spool.dropped_segments == 2  # the CRD's shape


def test_without_a_limit_nothing_is_measured_or_reported(tmp_path):
    room = FakeRoom([publisher(5, "alice")])
    recorder, _ingest, reports, _control = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: recorder.phase == Phase.RECORDING)
        await asyncio.sleep(0.3)
        stop.set()

    final = run(recorder, script)
    assert "spool" not in final and not [e for e, _ in reports.seen if e == "spool"]


# -- the operator: DiskFull condition and Events ---------------------------------------------------------------

def _disk_full(conditions):
    return next(c for c in conditions if c["type"] == ConditionType.DISK_FULL)


def test_disk_full_condition_and_events():
    now = st.now_utc()
    base = {"phase": Phase.RECORDING, "activeParticipants": 1}
    assert ConditionType.DISK_FULL not in {c["type"] for c in st.desired_conditions(base)}  # no spool reported

    ok = {**base, "spool": {"limitBytes": 2 * 2**30, "usedBytes": 10, "full": False}}
    patch = st.status_patch(base, ok, generation=1, now=now)
    cond = _disk_full(patch["conditions"])
    assert (cond["status"], cond["reason"], cond["message"]) == (ConditionStatus.FALSE,
                                                                 ConditionReason.SPOOL_AVAILABLE, "")
    assert st.disk_full_event(base, patch) is None  # nothing happened
    old = {**ok, "conditions": patch["conditions"]}

    full = {"spool": {**ok["spool"], "full": True, "usedBytes": 2 * 2**30 - 5}}
    patch = st.status_patch(old, full, generation=1, now=now)
    cond = _disk_full(patch["conditions"])
    assert (cond["status"], cond["reason"]) == (ConditionStatus.TRUE, ConditionReason.SPOOL_FULL)
    assert "2048 MiB" in cond["message"]
    kind, reason, message = st.disk_full_event(old, patch)
    assert (kind, reason) == (st.WARNING, ConditionType.DISK_FULL) and "nearly full" in message
    ready = next(c for c in patch["conditions"] if c["type"] == ConditionType.READY)
    assert ready["status"] == ConditionStatus.TRUE  # still recording what it can: Ready is not the place
    old = {**old, **full, "conditions": patch["conditions"]}

    # while full, new measurements and counts do not change the condition (no patch, no Event)
    more = {"spool": {**full["spool"], "usedBytes": 2 * 2**30 - 1, "droppedSegments": 3, "droppedSeconds": 6.0}}
    patch = st.status_patch(old, more, generation=1, now=now)
    assert "conditions" not in patch and st.disk_full_event(old, patch) is None
    old = {**old, **more}

    drained = {"spool": {**more["spool"], "full": False, "usedBytes": 10}}
    patch = st.status_patch(old, drained, generation=1, now=now)
    cond = _disk_full(patch["conditions"])
    assert (cond["status"], cond["reason"]) == (ConditionStatus.FALSE, ConditionReason.SPOOL_AVAILABLE)
    assert cond["message"] == "3 segment(s), 6 s of media were not recorded while the spool was full"
    kind, reason, message = st.disk_full_event(old, patch)
    assert (kind, reason) == (st.NORMAL, ConditionReason.SPOOL_AVAILABLE) and "6 s of media" in message


class _OneSession:
    """The API as update_status sees it, for one session (tests/unit/test_operator_handlers.py has the full one)."""

    def __init__(self, status):
        self.body = {"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
                     "metadata": {"name": "a", "namespace": "media", "uid": "u", "generation": 1,
                                  "resourceVersion": "1"}, "status": status}

    def get_session(self, ns, name):
        return json.loads(json.dumps(self.body))

    def patch_session_status(self, ns, name, patch, resource_version=None):
        self.body["status"] = {k: v for k, v in {**self.body["status"], **patch}.items() if v is not None}
        self.body["metadata"]["resourceVersion"] = str(int(self.body["metadata"]["resourceVersion"]) + 1)
        return self.body


def test_the_operator_turns_the_recorders_spool_reports_into_disk_full_and_events(monkeypatch):
    import kopf

    from reel_operator.handlers import common, session_events

    posted = []
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: posted.append((type, reason, message)))
    kube = _OneSession({"phase": Phase.RECORDING, "recordingId": "01J", "activeParticipants": 1})
    ctx = common.Context(kube=kube, settings=OperatorSettings())

    def recorder_reports(**spool):
        kube.body["status"]["spool"] = {"limitBytes": 2**30, "usedBytes": 1, "full": False, **spool}
        session_events.on_session_change(ctx, kube.get_session("media", "a"))
        return _disk_full(kube.body["status"]["conditions"])

    assert recorder_reports()["status"] == ConditionStatus.FALSE
    posted.clear()
    assert recorder_reports(full=True, usedBytes=2**30 - 9)["reason"] == ConditionReason.SPOOL_FULL
    assert [(t, r) for t, r, _ in posted] == [(st.WARNING, ConditionType.DISK_FULL)]
    recorder_reports(full=True, usedBytes=2**30 - 3, droppedSegments=2, droppedSeconds=4.0)  # no news: no Event
    assert len(posted) == 1
    cond = recorder_reports(usedBytes=100, droppedSegments=2, droppedSeconds=4.0)
    assert cond["status"] == ConditionStatus.FALSE and "2 segment(s), 4 s" in cond["message"]
    assert [(t, r) for t, r, _ in posted][1:] == [(st.NORMAL, ConditionReason.SPOOL_AVAILABLE)]
    assert kube.body["status"]["phase"] == Phase.RECORDING
