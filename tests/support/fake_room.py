"""Fakes for the Recorder's orchestration tests: a room and an ingest that record what they are asked, a progress
sink that keeps every report, and a Recorder built on them with the real catalog and uploader."""

from __future__ import annotations

import asyncio

import yaml
from tests.support.recorder_proc import session_manifest

from reel_recorder.control import PauseControl
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
        self.reconnect_error: Exception | None = None  # raised by every connect after the first while set
        self.error: str | None = None
        self.calls: list[str] = []

    async def connect(self) -> None:
        self.calls.append("connect")
        if self.connect_error:
            raise self.connect_error
        if self.reconnect_error and self.calls.count("connect") > 1:
            raise self.reconnect_error
        self.closed.clear()

    def drop(self, error: str = "the connection closed: cut by the test") -> None:
        """The connection is lost, as JanusRoom's reader sees it (a dropped WebSocket, Janus gone)."""
        self.error = error
        self.closed.set()

    async def join(self, display, pin=None) -> dict:
        self.calls.append(f"join {display} pin={pin}")
        return {"id": 99, "publishers": self.publishers}

    async def close(self) -> None:
        self.calls.append("close")


class FakeIngest:
    """Media flows for every forwarded stream (its packet count grows at each look) unless the publisher id is
    in ``silent``; ``refuse`` maps publisher ids to the ForwardFailed their forwarding raises; ``fail_later``
    holds (publisher id, ForwardFailed) that ``take_failed`` hands over (the WebRTC ingest's failed connections)."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.errors: list[BaseException] = []
        self.refuse: dict[object, BaseException] = {}
        self.silent: set[object] = set()
        self.forwarded: dict[object, dict[str, int]] = {}
        self.fail_later: list[tuple[object, BaseException]] = []

    async def update(self, pub, streams, sink, counts=None) -> None:
        self.calls.append(("update", pub.id, sorted(s.kind for s in streams)))
        if pub.id in self.refuse:
            raise self.refuse[pub.id]
        self.forwarded[pub.id] = {s.kind: 0 for s in streams}

    def packets_of(self, pub_id) -> dict[str, int]:
        counts = self.forwarded.get(pub_id, {})
        if pub_id not in self.silent:
            for kind in counts:
                counts[kind] += 1
        return dict(counts)

    async def remove(self, pub_id) -> None:
        self.calls.append(("remove", pub_id))
        self.forwarded.pop(pub_id, None)

    async def close(self) -> None:
        self.calls.append(("close",))
        self.forwarded.clear()

    def failures(self):
        return list(self.errors)

    def take_failed(self):
        failed, self.fail_later = self.fail_later, []
        return failed


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
                  stop_cause=None, spool_budget=None, generation=None, **overrides):
    """``generation``: the session's metadata.generation (as the operator passes it in REEL_SESSION)."""
    source = session_manifest(SERVER, 1234, recording=recording, paused=paused)
    if generation is not None:
        source["metadata"]["generation"] = generation
    manifest = validated_manifest(yaml.safe_dump(source))
    manifest["spec"]["recording"].update(overrides)  # below the API's minimums, to keep the tests short
    session = session_from_manifest(manifest)
    if store is None:
        (tmp_path / "out").mkdir(parents=True)
        store = LocalStore(tmp_path / "out", name="primary")
    uploader = Uploader(store, progress_interval=0.05)
    ingest = FakeIngest()
    reports = Reports()
    control = PauseControl(paused, session.generation)
    recorder = Recorder(session, room=room, make_ingest=lambda: ingest, uploader=uploader, spool=tmp_path / "spool",
                        progress=reports, pin="1234", control=control, upload_timeout=10, resume=resume,
                        read_back=read_back, stop_cause=stop_cause, spool_budget=spool_budget)
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
