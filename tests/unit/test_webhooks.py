"""Webhooks as pure functions: the signature (Standard Webhooks), events derived from status transitions, the
journal that survives a restart, retry/backoff; and the delivery queue's order and bounds with a stand-in sender
(tests/integration/test_webhook_receiver.py sends to a real HTTP receiver)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime, timedelta

from tests.support.webhooks import FAILED_STATUSES, NORMAL_STATUSES, MemoryKube, finished, session_body, wait_until

from reel_api.vocabulary import ConditionReason, Phase, WebhookEvent
from reel_operator.settings import Settings
from reel_operator.webhooks import journal as jr
from reel_operator.webhooks import signing
from reel_operator.webhooks.delivery import Answer, Delivery
from reel_operator.webhooks.events import derive, envelope, prefix_of
from reel_operator.webhooks.retry import RetryPolicy, delivered, retry_after_seconds

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


# -- signing ---------------------------------------------------------------------------------------------------
def test_signature_is_standard_webhooks_v1():
    key, body = b"k3y", b'{"a":1}'
    sig = signing.sign(key, "msg_1", 1700000000, body)
    expected = base64.b64encode(hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()).decode()
    assert sig == f"v1,{expected}"
    head = signing.headers(key, "msg_1", 1700000000, body)
    assert head["webhook-id"] == "msg_1" and head["webhook-timestamp"] == "1700000000"
    assert signing.verify(key, head, body, now=1700000100)
    assert not signing.verify(key, head, body + b" ", now=1700000100)  # body changed
    assert not signing.verify(b"other", head, body, now=1700000100)  # wrong key
    assert not signing.verify(key, head, body, now=1700000000 + 301)  # a replay, too old
    assert not signing.verify(key, {**head, "webhook-id": "msg_2"}, body, now=1700000100)  # another id


def test_signing_key_forms():
    raw = b"\x00\x01secret"
    assert signing.signing_key(b"whsec_" + base64.b64encode(raw)) == raw
    assert signing.signing_key(b"plain-key\n") == b"plain-key"
    assert signing.signing_key(b"whsec_not base64!") == b"whsec_not base64!"


# -- retry -----------------------------------------------------------------------------------------------------
def test_backoff_doubles_up_to_the_cap_and_gives_up_after_the_bound():
    p = RetryPolicy(base=1, cap=30, give_up_after=900)
    assert [p.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert p.delay(1, retry_after=10) == 10 and p.delay(1, retry_after=999) == 30 and p.delay(5, retry_after=1) == 16
    assert not p.gives_up(100.0, 999.9) and p.gives_up(100.0, 1000.0)
    assert delivered(200) and delivered(204) and not delivered(302) and not delivered(500) and not delivered(None)
    assert retry_after_seconds("7") == 7 and retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") is None


# -- events from status transitions -----------------------------------------------------------------------------
def _run(statuses, start=T0, step=timedelta(seconds=2), progress_every=60.0):
    told, out, now = jr.Journal().told, [], start
    for status in statuses:
        events, told = derive(told, status, now, progress_every=progress_every)
        out += events
        now += step
    return out, told


def _types(events):
    return [str(e[0]) for e in events]


def test_normal_session_events_in_order():
    events, _ = _run(NORMAL_STATUSES)
    assert _types(events) == [
        WebhookEvent.STARTED, WebhookEvent.PARTICIPANT_JOINED, WebhookEvent.UPLOAD_PROGRESS,
        WebhookEvent.PARTICIPANT_JOINED, WebhookEvent.PARTICIPANT_SKIPPED, WebhookEvent.PAUSED,
        WebhookEvent.UNPAUSED, WebhookEvent.INTERRUPTED, WebhookEvent.RESUMED, WebhookEvent.PARTICIPANT_LEFT,
        WebhookEvent.PARTICIPANT_LEFT, WebhookEvent.STOPPED, WebhookEvent.UPLOADED, WebhookEvent.COMPLETED]
    stopped = next(d for t, d in events if t == WebhookEvent.STOPPED)
    assert stopped["stopReason"] == "Requested"
    skipped = next(d for t, d in events if t == WebhookEvent.PARTICIPANT_SKIPPED)
    assert skipped["streams"][0]["reason"] == "CodecUnsupported" and skipped["participant"]["id"] == 2
    completed = events[-1][1]
    assert completed["manifest"].endswith("manifest.json") and completed["playlists"]


def test_progress_at_most_once_per_interval():
    statuses = [{"phase": Phase.RECORDING, "startedAt": "t",
                 "upload": {"segments": n, "pendingSegments": 1, "recordedBytes": n * 1000, "storedBytes": n * 900}}
                for n in range(1, 200)]  # a report every 2 s for ~6.6 min
    events, _ = _run(statuses, progress_every=60.0)
    progress = [e for e in events if e[0] == WebhookEvent.UPLOAD_PROGRESS]
    assert 6 <= len(progress) <= 7, len(progress)


def test_a_jump_still_tells_everything():
    """Two statuses far apart (reports merged, or the operator was down): joined and left both told, once."""
    first, last = NORMAL_STATUSES[0], NORMAL_STATUSES[-1]
    events, told = _run([first, last])
    types = _types(events)
    assert types.count(WebhookEvent.PARTICIPANT_JOINED) == 2 and types.count(WebhookEvent.PARTICIPANT_LEFT) == 2
    assert types[0] == WebhookEvent.STARTED and types[-2:] == [WebhookEvent.UPLOADED, WebhookEvent.COMPLETED]
    again, _ = derive(told, last, T0 + timedelta(hours=1))
    assert again == []  # nothing twice


def test_backed_up_then_backfilled():
    base = {"phase": Phase.RECORDING, "startedAt": "t", "manifest": "p/manifest.json"}
    backed = {**base, "phase": Phase.BACKED_UP, "stopReason": "Requested", "upload": {"location": "mixed"},
              "conditions": finished(Phase.BACKED_UP)}
    jumped, _ = _run([{**backed, "upload": {"segments": 3, "location": "mixed"}}])  # never seen Recording
    assert _types(jumped) == [WebhookEvent.STARTED, WebhookEvent.STOPPED, WebhookEvent.BACKED_UP]
    done = {**backed, "phase": Phase.COMPLETED, "conditions": finished(Phase.COMPLETED)}
    not_yet = {**backed, "phase": Phase.COMPLETED}  # the backfill's phase, before the operator's conditions
    events, _ = _run([base, backed, not_yet, done])
    assert _types(events) == [WebhookEvent.STARTED, WebhookEvent.STOPPED, WebhookEvent.BACKED_UP,
                              WebhookEvent.UPLOADED, WebhookEvent.COMPLETED]


def test_failed_before_start_and_after_start():
    events, _ = _run(FAILED_STATUSES)
    assert _types(events) == [WebhookEvent.FAILED]
    # as seen on kind: the recorder reports startedAt and an empty upload before it finds the room missing
    early = [{"phase": Phase.STARTING, "startedAt": "t", "upload": {"segments": 0, "recordedBytes": 0}},
             {**FAILED_STATUSES[-1], "startedAt": "t", "upload": {"segments": 0, "recordedBytes": 0}}]
    assert _types(_run(early)[0]) == [WebhookEvent.FAILED]
    assert events[0][1]["reason"] == "RoomNotFound" and "no room" in events[0][1]["message"]
    lost = [{"phase": Phase.RECORDING, "startedAt": "t"},
            {"phase": Phase.FAILED, "startedAt": "t", "stopReason": "Error", "message": "gone",
             "conditions": finished(Phase.FAILED, "JanusLost")}]
    events, _ = _run(lost)
    assert _types(events) == [WebhookEvent.STARTED, WebhookEvent.STOPPED, WebhookEvent.FAILED]
    assert events[-1][1]["reason"] == "JanusLost"


def test_envelope_carries_session_recording_prefix_sequence_time():
    status = NORMAL_STATUSES[-1]
    env = envelope({"namespace": "media", "name": "s1", "uid": "u-1"}, status, 7,
                   (WebhookEvent.COMPLETED, {"x": 1}), T0)
    assert env["id"] == "u-1.7" and env["sequence"] == 7 and env["type"] == "recording.completed"
    assert env["session"] == {"namespace": "media", "name": "s1", "uid": "u-1"}
    assert env["recordingId"] == status["recordingId"] and env["prefix"] == prefix_of(status) == "2026/rec1/"
    assert env["time"] == "2026-12-01T10:00:00.000Z" and env["data"] == {"x": 1}


# -- the journal -------------------------------------------------------------------------------------------------
def test_journal_round_trip_and_bound():
    j = jr.Journal(seq=3, told={"started": True}, pending=[{"id": "u.3", "type": "recording.started"}], delivered=2)
    back = jr.decode({"annotations": {jr.ANNOTATION: j.encode()}})
    assert back == j
    assert jr.decode({"annotations": {jr.ANNOTATION: "not json"}}) is None and jr.decode({}) is None
    big = jr.Journal(seq=2000, pending=[{"id": f"u.{i}", "type": WebhookEvent.UPLOAD_PROGRESS, "data": "x" * 500}
                                        for i in range(1000)] + [{"id": "u.last", "type": "recording.completed"}])
    text = big.encode()
    assert len(text) <= jr.MAX_BYTES and "u.last" in text


# -- the delivery queue, with a stand-in sender ------------------------------------------------------------------
def _settings(**kw):
    return Settings(**{"webhook_backoff_seconds": 0.05, "webhook_backoff_max_seconds": 0.2,
                       "webhook_retry_seconds": 5.0, "webhook_workers": 3, "denied_cidrs": (), **kw})


def test_each_sessions_events_arrive_in_order_and_a_failing_receiver_delays_only_its_own():
    got: dict[str, list[int]] = {}
    lock = threading.Lock()

    def send(url, head, body, timeout):
        event = json.loads(body)
        if "bad" in url:
            return Answer(500, None, "HTTP 500")
        time.sleep(0.005)
        with lock:
            got.setdefault(event["session"]["name"], []).append(event["sequence"])
        return Answer(200)

    kube = MemoryKube(secret=b"k")
    d = Delivery(kube, _settings(), send=send, resolve=lambda h, p: ["10.0.0.1"]).start()
    try:
        for name in ("a", "b", "bad"):
            url = "http://bad.example/" if name == "bad" else "http://ok.example/"
            for status in NORMAL_STATUSES:
                d.observe(session_body(name, status, url=url, kube=kube))
        wait_until(lambda: len(got.get("a", [])) == 14 and len(got.get("b", [])) == 14, 10)
        assert got["a"] == list(range(1, 15)) and got["b"] == list(range(1, 15))
        assert d.pending() == 14  # the failing receiver's: still queued, in order, none lost yet
        journal = jr.decode(kube.sessions["bad"]["metadata"])
        assert [e["sequence"] for e in journal.pending] == list(range(1, 15))  # persisted before sending
    finally:
        d.stop()


def test_dropped_after_the_bound_with_a_warning_event_then_the_next_goes():
    calls, posted = [], []

    def send(url, head, body, timeout):
        seq = json.loads(body)["sequence"]
        calls.append(seq)
        return Answer(500, None, "HTTP 500") if seq == 1 else Answer(200)

    kube = MemoryKube(secret=b"k")
    d = Delivery(kube, _settings(webhook_retry_seconds=0.5), send=send, resolve=lambda h, p: ["10.0.0.1"],
                 post_event=lambda body, type_, reason, message: posted.append((type_, reason, message))).start()
    try:
        for status in NORMAL_STATUSES[:2]:
            d.observe(session_body("s", status, kube=kube))
        wait_until(lambda: 2 in calls, 10)
        assert calls.count(1) >= 3 and calls.index(2) > calls.index(1)  # retried, then dropped, then the next
        reasons = [r for _, r, _ in posted]
        assert reasons == [ConditionReason.WEBHOOK_FAILING, ConditionReason.WEBHOOK_DROPPED], posted
        wait_until(lambda: jr.decode(kube.sessions["s"]["metadata"]).dropped == 1, 5)
    finally:
        d.stop()


def test_a_denied_url_or_a_missing_secret_is_a_failed_attempt():
    posted = []
    kube = MemoryKube(secret=None)
    d = Delivery(kube, Settings(webhook_backoff_seconds=10), send=lambda *a: Answer(200),
                 resolve=lambda h, p: ["10.0.0.1"], post_event=lambda *a: posted.append(a)).start()
    try:
        d.observe(session_body("s", NORMAL_STATUSES[1], kube=kube))
        wait_until(lambda: posted, 5)
        assert "cannot read the signing key" in posted[0][3]
        d.observe(session_body("t", NORMAL_STATUSES[1], url="http://169.254.169.254/x", kube=kube))
        wait_until(lambda: len(posted) == 2, 5)
        assert "denied address" in posted[1][3]
    finally:
        d.stop()


def test_restart_sends_pending_again_with_the_same_ids_and_derives_the_rest():
    sent: list[str] = []
    kube = MemoryKube(secret=b"k")
    first = Delivery(kube, _settings(), send=lambda *a: Answer(503, None, "down"), resolve=lambda h, p: ["10.0.0.1"])
    for status in NORMAL_STATUSES[:3]:
        first.observe(session_body("s", status, kube=kube))  # not started: nothing sent, all journaled
    ids_before = [e["id"] for e in jr.decode(kube.sessions["s"]["metadata"]).pending]
    # a new operator process: it knows only the journal in the annotation
    second = Delivery(kube, _settings(), send=lambda url, head, body, t: sent.append(json.loads(body)["id"]) or
                      Answer(200), resolve=lambda h, p: ["10.0.0.1"]).start()
    try:
        for status in NORMAL_STATUSES[3:]:
            second.observe(session_body("s", status, kube=kube))
        wait_until(lambda: len(sent) == 14, 10)
        assert sent[:len(ids_before)] == ids_before
        assert sent == [f"uid-s.{n}" for n in range(1, 15)]
    finally:
        second.stop()


def test_a_session_with_a_webhook_is_recorded_the_same():
    """The recorder's session view knows spec.notify (and ignores it): such a session does not fail to start."""
    import yaml
    from tests.support.recorder_proc import session_manifest

    from reel_recorder import session as view

    manifest = session_manifest("ws://janus:8188", 7)
    manifest["spec"]["notify"] = {"webhook": {"url": "https://h.example/x", "secretRef": {"name": "h", "key": "k"}}}
    s = view.session_from_json(json.dumps(view.validated_manifest(yaml.safe_dump(manifest))))
    assert s.spec.notify["webhook"]["url"] == "https://h.example/x" and s.spec.room.id == 7


def test_a_failed_session_whose_detailed_reason_never_comes_is_told_after_a_while(monkeypatch):
    from reel_operator.webhooks import delivery

    monkeypatch.setattr(delivery, "FINAL_SETTLE_SECONDS", 0.3)
    got = []
    kube = MemoryKube(secret=b"k")
    d = Delivery(kube, _settings(), send=lambda url, head, body, t: got.append(json.loads(body)) or Answer(200),
                 resolve=lambda h, p: ["10.0.0.1"]).start()
    try:
        for status in FAILED_STATUSES[:-1]:  # Finished, but Ready's reason is still the stop reason Error
            d.observe(session_body("s", status, kube=kube))
        time.sleep(0.1)
        assert got == []  # held back for the detail
        wait_until(lambda: got, 5, "the failed event")
        assert [e["type"] for e in got] == [WebhookEvent.FAILED] and got[0]["data"]["reason"] == "Error"
    finally:
        d.stop()
