"""Spec edits the recorder applies while recording (control.LIVE_FIELDS, spec.tag): the SpecPoller hands the
session's current spec to the PauseControl, the Recorder's loop reads the limits from it on every tick."""

from __future__ import annotations

import json
import time

from tests.support.fake_room import FakeRoom, make_recorder, publisher, run, until

from reel_api.vocabulary import Phase, StopReason
from reel_recorder.control import PauseControl, SpecPoller


def test_control_applies_the_live_limits_and_tag_and_keeps_the_rest(tmp_path):
    recorder, _, _, control = make_recorder(tmp_path, FakeRoom())
    spec = recorder.spec
    assert control.live(spec) == (spec.recording, spec.tag)  # nothing read yet: the session's own values
    control.apply({"recording": {"maxDurationSeconds": 60, "maxIdleSeconds": 120, "mode": "composite"},
                   "tag": "retro"})
    rec, tag = control.live(spec)
    assert (rec.max_duration_seconds, rec.max_idle_seconds, tag) == (60, 120, "retro")
    assert rec.mode == spec.recording.mode  # immutable fields are never taken from a later read
    assert control.live(spec)[0] is rec  # the same values: no new copy on every tick
    control.apply({"recording": {}})  # fields absent: the session's values, the tag removed
    assert control.live(spec) == (spec.recording, None)


def test_poller_hands_the_spec_to_the_control():
    control = PauseControl()
    poller = SpecPoller(lambda: {"spec": {"paused": True, "recording": {"maxDurationSeconds": 5}}}, control)
    poller.poll()
    assert control.paused is True and control._live["max_duration_seconds"] == 5


def test_max_duration_lowered_while_recording_ends_it(tmp_path):
    recorder, ingest, _, control = make_recorder(tmp_path, FakeRoom([publisher(1, "alice")]))

    async def script(stop):
        await until(lambda: ("update", 1, ["audio", "video"]) in ingest.calls)
        started = time.monotonic()
        control.apply({"recording": {"maxDurationSeconds": 1}, "tag": "cut short"})
        await until(lambda: recorder.phase != Phase.RECORDING, timeout=5)
        assert time.monotonic() - started < 3

    status = run(recorder, script)
    assert status["stopReason"] == StopReason.MAX_DURATION and "maxDurationSeconds (1 s)" in status["message"]
    manifest = json.loads((tmp_path / "out" / recorder.catalog.manifest_key).read_text())
    assert manifest["tag"] == "cut short"


def test_max_idle_raised_while_recording_keeps_an_empty_room_open(tmp_path):
    recorder, _, _, control = make_recorder(tmp_path, FakeRoom(), maxIdleSeconds=0.5)
    control.apply({"recording": {"maxIdleSeconds": 3}})

    async def script(stop):
        started = time.monotonic()
        await until(lambda: recorder.phase != Phase.RECORDING and time.monotonic() - started > 1, timeout=5)

    began = time.monotonic()
    status = run(recorder, script)
    assert status["stopReason"] == StopReason.NO_USERS and "3 s" in status["message"]
    assert time.monotonic() - began >= 2.5


def test_the_recorder_reports_the_generation_it_applied_once_its_loop_used_it(tmp_path):
    """status.appliedGeneration: the session's generation at start, then each generation the poller read, once the
    loop has run with its values (the operator moves observedGeneration only then: health.observed_generation)."""
    recorder, ingest, reports, control = make_recorder(tmp_path, FakeRoom([publisher(1, "alice")]), generation=3)
    assert control.generation == 3

    def applied():
        return [s.get("appliedGeneration") for _, s in reports.seen if "appliedGeneration" in s]

    async def script(stop):
        await until(lambda: ("update", 1, ["audio", "video"]) in ingest.calls)
        assert set(applied()) == {3}  # the spec it was started with
        control.apply({"recording": {"maxDurationSeconds": 600}}, 4)
        await until(lambda: applied()[-1] == 4)
        assert recorder.status()["appliedGeneration"] == 4
        control.apply({"recording": {"maxDurationSeconds": 1}}, 3)  # a late read of an older generation
        assert control.generation == 4 and control._live["max_duration_seconds"] == 600
        control.apply({"recording": {"maxDurationSeconds": 1}}, 5)
        await until(lambda: recorder.phase != Phase.RECORDING, timeout=5)

    status = run(recorder, script)
    assert status["stopReason"] == StopReason.MAX_DURATION  # generation 5's limit ended it
    assert applied()[-1] == 5 and sorted(set(applied())) == [3, 4, 5]
    events = [e for e, s in reports.seen if s.get("appliedGeneration") == 4]
    assert "spec" in events  # reported at once, not with the next periodic report


def test_poller_passes_the_generation_and_ignores_an_older_read():
    control = PauseControl(generation=2)
    bodies = [{"metadata": {"generation": 4}, "spec": {"paused": True}},
              {"metadata": {"generation": 3}, "spec": {"paused": False}}]
    poller = SpecPoller(lambda: bodies.pop(0), control)
    poller.poll()
    assert (control.generation, control.paused) == (4, True)
    poller.poll()  # older than what is held: nothing changes
    assert (control.generation, control.paused) == (4, True)
