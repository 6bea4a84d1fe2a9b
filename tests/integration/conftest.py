"""Integration fixtures: a private network namespace, a real Janus inside it, rooms and synthetic publishers.

Every test in tests/integration is marked ``integration``; those using ``test_network``/``janus`` (directly
or through other fixtures) are skipped, with the reason, when not running as root or when Janus is missing.

Fixtures:
- ``test_network`` (session): :class:`tests.harness.netns.TestNetwork` (``.ns``, ``.addr``, ``.host_addr``,
  ``.popen``, ``.run``, ``.add_udp_loss``, ``.udp_drop_counts``).
- ``janus`` (session): :class:`tests.harness.janus.Janus` running in ``test_network`` (``.ws_url``,
  ``.admin_key``, ``.create_room``, ``.list_participants``, ``.rtp_forward``, ...).  Checked alive after every
  test.
- ``make_room`` (function): ``make_room(**create_room_kwargs) -> Room``; rooms are destroyed after the test.
- ``room`` (function): ``make_room()`` with the defaults (H.264 + Opus, fir_freq 2, notify_joining).
- ``publisher`` (function): ``publisher(room, display="alice", duration=10, vfr=True, ...) ->
  PublisherProcess``; flags as in ``python -m tests.harness.publisher --help`` (``ws=`` overrides the
  Janus URL).  Killed at teardown.
- ``wait_for_publishers(janus, room_id, n, timeout=30, exact=False)``: poll ``listparticipants`` until ``n``
  participants publish; returns them.
- ``record`` (function): ``record(room, recording={...}, ...) -> RecorderRun``: a ``reel-recorder`` process in
  ``test_network`` recording ``room`` into a folder (``run.output``); killed at teardown, described on failure.
  ``forwarding_credentials=False``: neither the admin key nor the room secret is given (the pin still is).
- ``INGESTS`` (tests.support.ingests): parametrises a recorder test over ``spec.recording.ingest`` forward|webrtc.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness.janus import Janus, janus_available  # noqa: E402
from tests.harness.netns import TestNetwork  # noqa: E402
from tests.harness.procs import PublisherProcess, publisher_argv  # noqa: E402
from tests.support.recorder_proc import RecorderRun, session_manifest  # noqa: E402

_HERE = Path(__file__).resolve().parent


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "integration tests need root (they create network namespaces)"
    if not janus_available():
        return "janus is not installed (Debian package 'janus')"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
            if reason and {"test_network", "janus"} & set(getattr(item, "fixturenames", ())):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def test_network():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with TestNetwork() as net:
        yield net


@pytest.fixture(scope="session")
def janus(test_network, tmp_path_factory):
    j = Janus(test_network, tmp_path_factory.mktemp("janus"))
    j.start()
    yield j
    j.stop()


@pytest.fixture(autouse=True)
def _janus_still_alive(request):
    """The test during which the shared Janus died fails (with Janus's log); the next test that needs Janus gets a
    fresh one, so that one crash (Janus 1.1.2 has segfaulted once in its request pool after a full suite's worth
    of sessions) is reported where it happened instead of failing every test after it."""
    if "janus" in request.fixturenames:
        j = request.getfixturevalue("janus")
        if not j.alive():
            j.stop()
            j.start()
    yield
    if "janus" in request.fixturenames:
        j = request.getfixturevalue("janus")
        if not j.alive():
            pytest.fail(f"Janus died during the test\n{j.log_tail()}")


@dataclass
class Room:
    id: int
    janus: Janus
    secret: str | None = None
    pin: str | None = None
    videocodec: str = "h264"
    audiocodec: str = "opus"


_room_ids = itertools.count(int(time.time()) % 100_000 * 100 + 1000)


@pytest.fixture
def make_room(janus):
    created: list[Room] = []

    def _make(room_id: int | None = None, **kw) -> Room:
        rid = room_id if room_id is not None else next(_room_ids)
        janus.create_room(rid, **kw)
        r = Room(rid, janus, kw.get("secret"), kw.get("pin"), kw.get("videocodec", "h264"),
                 kw.get("audiocodec", "opus"))
        created.append(r)
        return r

    yield _make
    for r in created:
        try:
            if janus.alive():
                janus.destroy_room(r.id, secret=r.secret)
        except Exception as e:  # the test may have destroyed it itself
            if "No such room" not in str(e):
                raise


@pytest.fixture
def room(make_room) -> Room:
    return make_room()


@pytest.fixture
def publisher(test_network, janus, tmp_path):
    procs: list[PublisherProcess] = []
    names = itertools.count()

    def _start(room: Room | int, **opts) -> PublisherProcess:
        rid = room.id if isinstance(room, Room) else room
        if isinstance(room, Room) and room.pin is not None:
            opts.setdefault("pin", room.pin)
        opts.setdefault("display", f"pub{len(procs)}")
        name = f"{opts['display']}-{next(names)}"
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]
        ws = opts.pop("ws", janus.ws_url)
        p = PublisherProcess(test_network, publisher_argv(ws, rid, **opts),
                             tmp_path / f"publisher-{safe}.log", name)
        procs.append(p)
        return p

    yield _start
    for p in procs:
        p.kill()


def wait_for_publishers(janus: Janus, room_id: int, n: int, timeout: float = 30.0,
                        exact: bool = False) -> list[dict]:
    """Poll ``listparticipants`` until at least (or, with ``exact``, exactly) ``n`` participants publish."""
    return janus.wait_for_publishers(room_id, n, timeout, exact)


@pytest.fixture
def wait_publishers(janus):
    """``wait_publishers(room, n, timeout=30, exact=False)`` bound to the session's Janus."""
    def _wait(room: Room | int, n: int, timeout: float = 30.0, exact: bool = False) -> list[dict]:
        rid = room.id if isinstance(room, Room) else room
        return wait_for_publishers(janus, rid, n, timeout, exact)
    return _wait


@pytest.fixture
def record(test_network, janus, tmp_path, request):
    runs: list[RecorderRun] = []

    def _start(room, *, recording: dict | None = None, env: dict | None = None, server: str | None = None,
               room_id=None, display: str | None = None, name: str = "test", paused: bool = False,
               output: Path | None = None, extra_args: list[str] | None = None,
               forwarding_credentials: bool = True) -> RecorderRun:
        rec = {"maxIdleSeconds": 5, "segmentSeconds": 2, **(recording or {})}
        manifest = session_manifest(server or janus.ws_url, room_id if room_id is not None else room.id,
                                    recording=rec, display=display, name=name, paused=paused)
        creds = {"REEL_ROOM_ADMIN_KEY": janus.admin_key} if forwarding_credentials else {}
        if getattr(room, "secret", None) and forwarding_credentials:
            creds["REEL_ROOM_SECRET"] = room.secret
        if getattr(room, "pin", None):
            creds["REEL_ROOM_PIN"] = room.pin
        args = (["--output", str(output)] if output else []) + (extra_args or [])
        run = RecorderRun(test_network.popen, manifest, tmp_path / f"rec{len(runs)}", env={**creds, **(env or {})},
                          output=output is None, extra_args=args)
        if output is not None:
            run.output = output
        runs.append(run)
        return run

    yield _start
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    for run in runs:
        if failed:
            print(run.describe())
        run.kill()
