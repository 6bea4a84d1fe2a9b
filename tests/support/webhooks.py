"""Test helpers for webhooks: statuses of typical sessions, an in-memory stand-in for the few Kubernetes calls
the delivery makes, and a real HTTP receiver that checks Standard Webhooks signatures."""

from __future__ import annotations

import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reel_api.vocabulary import Phase
from reel_operator.webhooks import signing

_P1 = {"id": 1, "display": "alice", "joinedAt": "2026-12-01T10:00:01Z", "playlist": "2026/rec1/alice_1/index.m3u8"}
_P2 = {"id": 2, "display": "bob", "joinedAt": "2026-12-01T10:00:05Z", "playlist": "2026/rec1/bob_2/index.m3u8",
       "skipped": [{"kind": "video", "codec": "vp8", "reason": "CodecUnsupported", "message": "use h264"}]}
_UP = {"segments": 3, "pendingSegments": 1, "recordedBytes": 3000, "storedBytes": 2000, "progress": 66}
_BASE = {"recordingId": "rec1", "manifest": "2026/rec1/manifest.json", "startedAt": "2026-12-01T10:00:00Z"}


def finished(phase: str, ready_reason: str | None = None) -> list[dict[str, Any]]:
    """The conditions the operator writes for a final phase (Finished True; Ready with the FailureReason)."""
    ok = phase != Phase.FAILED
    return [{"type": "Ready", "status": "True" if ok else "False", "reason": ready_reason or phase},
            {"type": "Finished", "status": "True", "reason": phase}]


#: A session recorded, paused, interrupted, stopped and completed, as the watch shows it.
NORMAL_STATUSES: list[dict[str, Any]] = [
    {"phase": Phase.STARTING},
    {**_BASE, "phase": Phase.RECORDING, "participants": [_P1]},
    {**_BASE, "phase": Phase.RECORDING, "participants": [_P1], "upload": _UP},
    {**_BASE, "phase": Phase.RECORDING, "participants": [_P1, _P2], "upload": _UP},
    {**_BASE, "phase": Phase.PAUSED, "participants": [_P1, _P2], "upload": _UP},
    {**_BASE, "phase": Phase.RECORDING, "participants": [_P1, _P2], "upload": _UP},
    {**_BASE, "phase": Phase.RECORDING, "participants": [_P1, _P2], "upload": _UP,
     "interruption": {"since": "2026-12-01T10:01:00Z", "reason": "PodDeleted", "message": "resuming (1 of 3)"}},
    {**_BASE, "phase": Phase.RECORDING, "participants": [_P1, _P2], "upload": _UP},
    {**_BASE, "phase": Phase.STOPPING, "stopReason": "Requested", "upload": _UP,
     "participants": [{**_P1, "leftAt": "2026-12-01T10:02:00Z"}, {**_P2, "leftAt": "2026-12-01T10:02:00Z"}]},
    {**_BASE, "phase": Phase.COMPLETED, "stopReason": "Requested", "playlists": [_P1["playlist"], _P2["playlist"]],
     "conditions": finished(Phase.COMPLETED),
     "upload": {**_UP, "pendingSegments": 0, "storedBytes": 3000, "progress": 100},
     "participants": [{**_P1, "leftAt": "2026-12-01T10:02:00Z"}, {**_P2, "leftAt": "2026-12-01T10:02:00Z"}]},
]

#: A session whose room does not exist.
FAILED_STATUSES: list[dict[str, Any]] = [
    {"phase": Phase.STARTING},
    # the recorder's own report comes first, with the conditions of before; then the operator's
    {"phase": Phase.FAILED, "stopReason": "Error", "message": "no room 1234 on ws://janus:8188",
     "conditions": [{"type": "Ready", "status": "False", "reason": "Starting"}]},
    {"phase": Phase.FAILED, "stopReason": "Error", "message": "no room 1234 on ws://janus:8188",
     "conditions": finished(Phase.FAILED, "Error")},  # the operator's first: the detail comes from the pod's end
    {"phase": Phase.FAILED, "stopReason": "Error", "message": "no room 1234 on ws://janus:8188",
     "conditions": finished(Phase.FAILED, "RoomNotFound")},
]


class MemoryKube:
    """The session patches and the Secret read the delivery makes, in memory."""

    def __init__(self, secret: bytes | None):
        self.secret = secret
        self.sessions: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def patch_session(self, namespace, name, patch):
        with self.lock:
            obj = self.sessions.get(name)
            if obj is None:
                return None
            ann = obj["metadata"].setdefault("annotations", {})
            for k, v in patch["metadata"]["annotations"].items():
                if v is None:
                    ann.pop(k, None)
                else:
                    ann[k] = v
            return copy.deepcopy(obj)

    def read_secret_key(self, namespace, name, key):
        return self.secret


def session_body(name: str, status: dict[str, Any], *, url: str = "http://hooks.example/reel",
                 kube: MemoryKube | None = None, namespace: str = "media") -> dict[str, Any]:
    """A session with spec.notify.webhook and ``status``; kept in ``kube`` (its annotations as written)."""
    body = {"metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}", "annotations": {}},
            "spec": {"notify": {"webhook": {"url": url, "secretRef": {"name": "hook", "key": "key"}}}},
            "status": copy.deepcopy(status)}
    if kube is not None:
        with kube.lock:
            old = kube.sessions.get(name)
            if old is not None:
                body["metadata"]["annotations"] = copy.deepcopy(old["metadata"].get("annotations") or {})
            kube.sessions[name] = body
        body = copy.deepcopy(body)
    return body


def wait_until(check, timeout: float, what: str = "the condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Receiver:
    """A real HTTP server on 127.0.0.1 (or ``host``) that checks each request's signature and keeps the events;
    it answers 500 while ``failing`` is set (an outage), 200 otherwise."""

    def __init__(self, key: bytes, host: str = "127.0.0.1", port: int = 0):
        self.key = key
        self.events: list[dict[str, Any]] = []
        self.attempts = 0
        self.bad_signatures = 0
        self.failing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                head = {k.lower(): v for k, v in self.headers.items()}
                receiver.attempts += 1
                if not signing.verify(receiver.key, head, body, now=time.time()):
                    receiver.bad_signatures += 1
                    code = 401
                elif receiver.failing.is_set():
                    code = 500
                else:
                    event = json.loads(body)
                    assert event["id"] == head["webhook-id"]
                    receiver.events.append(event)
                    code = 200
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/reel"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def unique(self) -> list[dict[str, Any]]:
        """The events by id, once each (what a receiver that drops replays keeps), in arrival order."""
        seen, out = set(), []
        for e in self.events:
            if e["id"] not in seen:
                seen.add(e["id"])
                out.append(e)
        return out
