"""A fault in one participant never costs the others: what cannot be recorded of someone is skipped and listed
(outputs.plan_streams, ForwardFailed, the media watchdog); the session fails only when nobody can be recorded;
the operator shows it as the Degraded condition with a Warning Event."""

from __future__ import annotations

from tests.support.fake_room import FakeRoom, make_recorder, publisher, run, until

from reel_api.vocabulary import ConditionReason, ConditionStatus, ConditionType, Phase, RoomState, SkipReason
from reel_operator import status as st
from reel_operator.room_faults import room_event, skipped_event
from reel_recorder import errors
from reel_recorder.ingest.forward import ForwardFailed
from reel_recorder.outputs import plan_streams
from reel_recorder.room.presence import PublishedStream
from reel_recorder.watchdog import REFORWARD, SKIP, MediaWatchdog

OPUS = PublishedStream(mid="0", kind="audio", codec="opus")
H264 = PublishedStream(mid="1", kind="video", codec="h264")
VP8 = PublishedStream(mid="1", kind="video", codec="vp8")
PCMU = PublishedStream(mid="0", kind="audio", codec="pcmu")


def vp8_publisher(pub_id, display, audio=True) -> dict:
    pub = publisher(pub_id, display, audio=audio)
    pub["streams"][-1]["codec"] = "vp8"
    return pub


# -- which streams go where (pure) -------------------------------------------------------------------------------

def test_individual_mode_records_what_hls_can_carry_and_skips_the_rest_with_what_to_do():
    plan = plan_streams([OPUS, VP8], "individual")
    assert plan.forward == [OPUS] and plan.own == {"audio"}
    [skip] = plan.skipped
    assert skip["kind"] == "video" and skip["codec"] == "vp8" and skip["reason"] == SkipReason.CODEC_UNSUPPORTED
    assert "videocodec=h264" in skip["message"] and "mode: composite" in skip["message"]
    assert plan_streams([OPUS, H264], "individual").skipped == []
    assert [s["kind"] for s in plan_streams([PCMU, H264], "individual").skipped] == ["audio"]


def test_the_composite_takes_vp8_and_mode_both_keeps_it_out_of_their_own_folder():
    composite = plan_streams([OPUS, VP8], "composite")
    assert composite.forward == [OPUS, VP8] and composite.own == frozenset() and composite.skipped == []
    both = plan_streams([OPUS, VP8], "both")
    assert both.forward == [OPUS, VP8] and both.own == {"audio"}
    [skip] = both.skipped
    assert skip["kind"] == "video" and "composite only" in skip["message"]
    assert plan_streams([OPUS, H264], "both").own == {"audio", "video"}


# -- the media watchdog (pure) ------------------------------------------------------------------------------------

def test_the_watchdog_forwards_a_stalled_participant_again_once():
    dog = MediaWatchdog(stall_seconds=10)
    assert dog.observe(1, {"audio": 5, "video": 5}, 0) is None
    assert dog.observe(1, {"audio": 9, "video": 9}, 1) is None
    assert dog.observe(1, {"audio": 9, "video": 9}, 10.5) is None  # 9.5 s without a packet
    assert dog.observe(1, {"audio": 9, "video": 9}, 11.5) == REFORWARD
    dog.reforwarded(1, {"audio": 0, "video": 0}, 11.5)
    assert dog.observe(1, {"audio": 0, "video": 0}, 30) is None  # it had media once: muted, not skipped
    assert dog.observe(1, {"audio": 0, "video": 0}, 60) is None  # and not forwarded again and again


def test_one_quiet_stream_is_enough_and_media_coming_again_resets_it():
    dog = MediaWatchdog(stall_seconds=10)
    dog.observe(1, {"audio": 1, "video": 1}, 0)
    for t in range(1, 10):
        assert dog.observe(1, {"audio": 1 + t, "video": 1}, t) is None
    assert dog.observe(1, {"audio": 20, "video": 1}, 11) == REFORWARD  # video quiet for 11 s
    dog.reforwarded(1, {"audio": 0, "video": 0}, 11)
    assert dog.observe(1, {"audio": 3, "video": 3}, 12) is None
    dog.forget(1)
    assert dog.observe(1, {"audio": 0}, 100) is None  # a new run starts over


def test_a_camera_off_from_the_start_is_not_forwarded_again_but_judged_once_it_has_sent():
    dog = MediaWatchdog(stall_seconds=10)
    dog.observe(1, {"audio": 0, "video": 0}, 0)
    for t in range(1, 30):  # the sound comes, the picture never: nothing to do
        assert dog.observe(1, {"audio": 50 * t, "video": 0}, t) is None
    for t in range(30, 35):  # the camera is switched on
        assert dog.observe(1, {"audio": 50 * t, "video": 30 * (t - 29)}, t) is None
    for t in range(35, 44):  # and its picture stops (its last frames at 34 s) while the sound goes on
        assert dog.observe(1, {"audio": 50 * t, "video": 150}, t) is None
    assert dog.observe(1, {"audio": 50 * 45, "video": 150}, 45) == REFORWARD


def test_a_participant_whose_media_never_comes_is_skipped_after_the_second_try():
    dog = MediaWatchdog(stall_seconds=10)
    dog.observe(7, {"video": 0}, 0)
    assert dog.observe(7, {"video": 0}, 10) == REFORWARD
    dog.reforwarded(7, {"video": 0}, 10)
    assert dog.observe(7, {"video": 0}, 15) is None
    assert dog.observe(7, {"video": 0}, 20) == SKIP
    assert dog.observe(7, {"video": 0}, 30) is None  # said once


# -- the recorder: the others go on --------------------------------------------------------------------------------

def test_a_vp8_participant_in_an_h264_room_loses_only_their_video(tmp_path):
    room = FakeRoom([publisher(1, "alice"), publisher(2, "bob")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room)

    async def script(stop):
        await until(lambda: {c[1] for c in ingest.calls if c[0] == "update"} == {1, 2})
        room.events.put_nowait({"videoroom": "event", "publishers": [vp8_publisher(3, "carol")]})
        await until(lambda: ("update", 3, ["audio"]) in ingest.calls)
        stop.set()

    status = run(recorder, script)
    assert status["phase"] == Phase.COMPLETED
    carol = next(p for p in status["participants"] if p["display"] == "carol")
    [skip] = carol["skipped"]
    assert skip["kind"] == "video" and skip["reason"] == SkipReason.CODEC_UNSUPPORTED and carol["playlist"]
    assert all("skipped" not in p for p in status["participants"] if p["display"] != "carol")
    manifest = next(p for p in recorder.manifest.participants if p.display == "carol")
    assert manifest.skipped == [skip]


def test_a_room_where_nobody_can_be_recorded_fails_with_codec_unsupported(tmp_path):
    room = FakeRoom([vp8_publisher(1, "alice", audio=False)])
    recorder, ingest, _, _ = make_recorder(tmp_path, room, maxIdleSeconds=0.5)
    status = run(recorder)
    assert status["phase"] == Phase.FAILED and status["reason"] == errors.CODEC_UNSUPPORTED, status
    assert "nobody could be recorded" in status["message"] and "videocodec=h264" in status["message"]
    assert not [c for c in ingest.calls if c[0] == "update"]
    [alice] = status["participants"]
    assert alice["playlist"] is None and alice["skipped"][0]["codec"] == "vp8"


def test_forwarding_refused_for_one_participant_skips_them_only(tmp_path):
    room = FakeRoom([publisher(1, "alice"), publisher(2, "bob")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room)
    ingest.refuse[2] = ForwardFailed("Janus did not forward the media of 'bob' (2): boom (Janus error 499)",
                                     gone=False)

    async def script(stop):
        await until(lambda: ("update", 2, ["audio", "video"]) in ingest.calls and ("update", 1, ["audio", "video"])
                    in ingest.calls)
        await until(lambda: recorder.participants.active_count() == 1)
        stop.set()

    status = run(recorder, script)
    assert status["phase"] == Phase.COMPLETED
    bob = next(p for p in recorder.manifest.participants if p.display == "bob")
    assert bob.runs == [] and {s["reason"] for s in bob.skipped} == {SkipReason.FORWARD_FAILED}
    alice = next(p for p in recorder.manifest.participants if p.display == "alice")
    assert len(alice.runs) == 1 and not alice.skipped


def test_a_publisher_who_left_while_we_asked_is_not_skipped(tmp_path):
    room = FakeRoom([publisher(1, "alice")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room, maxIdleSeconds=0.3)
    ingest.refuse[1] = ForwardFailed("'alice' left, or Janus is gone", gone=True)
    status = run(recorder)
    assert status["stopReason"] == "NoUsers" and status["phase"] == Phase.COMPLETED
    [alice] = recorder.manifest.participants
    assert alice.runs == [] and alice.skipped == []


def test_the_watchdog_forwards_a_silent_participant_again_then_skips_them(tmp_path):
    room = FakeRoom([publisher(1, "alice"), publisher(2, "bob")])
    recorder, ingest, _, _ = make_recorder(tmp_path, room)
    recorder.outputs.watchdog.stall_seconds = 1.2
    ingest.silent.add(2)

    async def script(stop):
        await until(lambda: any(s.get("reason") == SkipReason.NO_MEDIA
                                for p in recorder.manifest.participants for s in p.skipped), timeout=15)
        stop.set()

    status = run(recorder, script)
    updates = [c[1] for c in ingest.calls if c[0] == "update"]
    assert updates.count(2) == 2 and updates.count(1) == 1  # bob forwarded twice, alice left alone
    bob = next(p for p in status["participants"] if p["display"] == "bob")
    assert bob["stalls"] == 1 and bob["skipped"][0]["reason"] == SkipReason.NO_MEDIA
    assert status["activeParticipants"] == 0 or all(p["display"] != "bob" or p["leftAt"]
                                                    for p in status["participants"])


# -- the operator: Degraded and its Event -------------------------------------------------------------------------

def _status_with(skipped, conditions=()):
    return {"phase": Phase.RECORDING, "activeParticipants": 1, "conditions": list(conditions),
            "participants": [{"id": 1, "display": "alice"},
                             {"id": 3, "display": "carol", **({"skipped": skipped} if skipped else {})}]}


def test_degraded_names_who_is_not_recorded_and_warns_once():
    skip = [{"kind": "video", "codec": "vp8", "reason": SkipReason.CODEC_UNSUPPORTED, "message": "..."}]
    assert ConditionType.DEGRADED not in {c["type"] for c in st.desired_conditions(_status_with(None))}
    patch = st.status_patch(_status_with(None), {"participants": _status_with(skip)["participants"]},
                            generation=1, now=st.now_utc())
    degraded = next(c for c in patch["conditions"] if c["type"] == ConditionType.DEGRADED)
    assert degraded["status"] == ConditionStatus.TRUE and degraded["reason"] == ConditionReason.PARTICIPANT_SKIPPED
    assert "'carol' (3): video vp8 (CodecUnsupported)" in degraded["message"]
    kind, reason, message = skipped_event(_status_with(None), patch)
    assert (kind, reason) == ("Warning", ConditionReason.PARTICIPANT_SKIPPED) and "carol" in message
    after = _status_with(skip, patch["conditions"])
    assert skipped_event(after, {"conditions": patch["conditions"]}) is None  # nothing new: no second Warning
    cleared = st.status_patch(after, {"participants": _status_with(None)["participants"]}, generation=1,
                              now=st.now_utc())
    degraded = next(c for c in cleared["conditions"] if c["type"] == ConditionType.DEGRADED)
    assert degraded["status"] == ConditionStatus.FALSE and degraded["reason"] == ConditionReason.ALL_RECORDED


def test_a_lost_janus_connection_shows_as_reconnecting_then_reconnected():
    recording = {"phase": Phase.RECORDING, "activeParticipants": 0, "participants": [],
                 "room": {"state": RoomState.CONNECTED, "reconnects": 0}}
    before = st.status_patch({}, recording, generation=1, now=st.now_utc())["conditions"]
    lost = {**recording, "conditions": before,
            "room": {"state": RoomState.RECONNECTING, "message": "ws://janus:8188: connection reset"}}
    patch = st.status_patch(lost, {}, generation=1, now=st.now_utc())
    conds = {c["type"]: c for c in patch["conditions"]}
    for kind in (ConditionType.RECORDING, ConditionType.READY):
        assert conds[kind]["status"] == ConditionStatus.FALSE and conds[kind]["reason"] == RoomState.RECONNECTING
        assert "connection reset" in conds[kind]["message"]
    kind, reason, message = room_event(lost, patch)
    assert (kind, reason) == ("Warning", RoomState.RECONNECTING) and "ws://janus:8188" in message
    back = {**lost, "conditions": patch["conditions"], "room": {"state": RoomState.CONNECTED, "reconnects": 1}}
    patch = st.status_patch(back, {}, generation=1, now=st.now_utc())
    conds = {c["type"]: c for c in patch["conditions"]}
    assert conds[ConditionType.READY]["status"] == ConditionStatus.TRUE
    kind, reason, message = room_event(back, patch)
    assert (kind, reason) == ("Normal", ConditionReason.RECONNECTED) and "reconnect 1" in message
    assert room_event(back, {}) is None
