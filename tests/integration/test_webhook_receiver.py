"""Webhook delivery to a real HTTP receiver (http.server on 127.0.0.1, in this process) that verifies every
request's Standard Webhooks signature: the events of a normal, a backed-up and a failed session arrive in
sequence, and a receiver that answers 500 for a while (REEL_TEST_WEBHOOK_OUTAGE_SECONDS, default 20; the kind
e2e test holds a 60 s outage during a real recording) gets every event afterwards, in order, while the watch
side (what kopf's handler calls) never waits for it.

The operator's delivery (webhooks/delivery.py) with real HTTP, real signing and a stand-in for the two
Kubernetes calls it makes (the journal annotation, the Secret read). Loopback is a denied endpoint for sessions,
so these tests use a policy without denied addresses; the policy itself is tests/unit/test_endpoint_policy.py's.
"""

from __future__ import annotations

import os
import time

from tests.support.webhooks import (
    FAILED_STATUSES,
    NORMAL_STATUSES,
    MemoryKube,
    Receiver,
    finished,
    session_body,
    wait_until,
)

from reel_api.vocabulary import Phase, WebhookEvent
from reel_operator.settings import Settings
from reel_operator.webhooks import journal as jr
from reel_operator.webhooks.delivery import Delivery

KEY = b"whsec-test-key-0123456789"
OUTAGE = float(os.environ.get("REEL_TEST_WEBHOOK_OUTAGE_SECONDS", "20"))


def _delivery(kube, **kw) -> Delivery:
    settings = Settings(denied_cidrs=(), denied_hosts=(), webhook_backoff_seconds=0.2,
                        webhook_backoff_max_seconds=2.0, **kw)
    return Delivery(kube, settings).start()


def _types(events):
    return [e["type"] for e in events]


def _feed(d: Delivery, kube: MemoryKube, name: str, statuses, url: str, pause: float = 0.05) -> list[float]:
    """Each status as a watch event; returns how long each observe() took (what a kopf handler waits)."""
    took = []
    for status in statuses:
        t0 = time.monotonic()
        d.observe(session_body(name, status, url=url, kube=kube))
        took.append(time.monotonic() - t0)
        time.sleep(pause)
    return took


def test_normal_backed_up_and_failed_sessions_arrive_signed_and_in_sequence():
    kube = MemoryKube(secret=KEY)
    backed_up = [{"phase": Phase.STARTING},
                 {"phase": Phase.RECORDING, "recordingId": "r2", "manifest": "p2/manifest.json", "startedAt": "t"},
                 {"phase": Phase.BACKED_UP, "recordingId": "r2", "manifest": "p2/manifest.json", "startedAt": "t",
                  "stopReason": "Requested", "upload": {"location": "mixed"}, "conditions": finished(Phase.BACKED_UP)}]
    with Receiver(KEY) as rx:
        d = _delivery(kube)
        try:
            _feed(d, kube, "normal", NORMAL_STATUSES, rx.url)
            _feed(d, kube, "backed", backed_up, rx.url)
            _feed(d, kube, "failed", FAILED_STATUSES, rx.url)
            wait_until(lambda: len(rx.events) == 14 + 3 + 1, 20, "every event")
        finally:
            d.stop()
    assert rx.bad_signatures == 0 and rx.attempts == len(rx.events)
    by = {n: [e for e in rx.events if e["session"]["name"] == n] for n in ("normal", "backed", "failed")}
    for events in by.values():
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert _types(by["normal"]) == [
        "recording.started", "participant.joined", "upload.progress", "participant.joined", "participant.skipped",
        "recording.paused", "recording.unpaused", "recording.interrupted", "recording.resumed", "participant.left",
        "participant.left", "recording.stopped", "recording.uploaded", "recording.completed"]
    assert _types(by["backed"]) == [WebhookEvent.STARTED, WebhookEvent.STOPPED, WebhookEvent.BACKED_UP]
    assert _types(by["failed"]) == [WebhookEvent.FAILED]
    failed = by["failed"][0]
    assert failed["data"]["reason"] == "RoomNotFound" and failed["data"]["message"]
    done = by["normal"][-1]
    assert done["session"] == {"namespace": "media", "name": "normal", "uid": "uid-normal"}
    assert done["recordingId"] == "rec1" and done["prefix"] == "2026/rec1/" and done["time"].endswith("Z")
    assert jr.decode(kube.sessions["normal"]["metadata"]).pending == []  # the journal says: all delivered


def test_a_receiver_down_for_a_while_gets_every_event_afterwards_without_holding_up_the_watch():
    kube = MemoryKube(secret=KEY)
    with Receiver(KEY) as rx:
        rx.failing.set()
        d = _delivery(kube)
        try:
            t0 = time.monotonic()
            took = _feed(d, kube, "s", NORMAL_STATUSES, rx.url, pause=OUTAGE / len(NORMAL_STATUSES) / 2)
            assert max(took) < 0.5, took  # the handler's side: derive + journal write, no waiting for the receiver
            wait_until(lambda: rx.attempts >= 3, OUTAGE, "attempts during the outage")
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - t0)))
            refused = rx.attempts
            assert not rx.events and refused >= 3
            assert [e["sequence"] for e in jr.decode(kube.sessions["s"]["metadata"]).pending] == list(range(1, 15))
            rx.failing.clear()
            wait_until(lambda: len(rx.unique()) == 14, 30, "every event after the outage")
        finally:
            d.stop()
    assert [e["sequence"] for e in rx.unique()] == list(range(1, 15))
    assert rx.bad_signatures == 0
    print(f"\noutage {OUTAGE:.0f} s: {refused} attempts refused, then 14 events delivered in order")
