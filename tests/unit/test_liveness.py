"""The recorder's liveness endpoint (reel_recorder/liveness.py): the loop's beat, what /healthz answers, and
REEL_LIVENESS_PORT."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request

import pytest

from reel_recorder import cli
from reel_recorder.liveness import Liveness
from reel_recorder.settings import Settings, SettingsError


def get(port: int, path: str = "/healthz") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def served():
    started: list[Liveness] = []

    def serve(liveness: Liveness) -> Liveness:
        started.append(liveness.serve(0))
        return liveness

    yield serve
    for liveness in started:
        liveness.close()


def test_healthz_answers_from_the_age_of_the_mark(served):
    now = [100.0]
    liveness = served(Liveness(stale_after=10, clock=lambda: now[0]))
    assert get(liveness.port) == (200, "ok\n")
    now[0] = 110.0
    assert get(liveness.port)[0] == 200  # 10 s: still fine
    now[0] = 117.4
    assert get(liveness.port) == (503, "the recorder's event loop has not run for 17 s\n")
    assert get(liveness.port, "/healthz?verbose=1")[0] == 503
    assert get(liveness.port, "/metrics")[0] == 404
    liveness.last_beat = now[0]  # the loop marked itself again
    assert get(liveness.port) == (200, "ok\n")


def test_the_beat_goes_on_while_the_loop_awaits_a_thread_and_stops_when_the_loop_is_blocked():
    """Uploading awaits Uploader.close in a worker thread for minutes: not a failure. A blocked loop is."""
    liveness = Liveness(stale_after=0.5)

    def watch(seconds: float) -> list[bool]:  # the reader's view, from another thread
        seen, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            seen.append(liveness.alive())
            time.sleep(0.02)
        return seen

    async def scenario():
        liveness.start_beat(every=0.05)
        await asyncio.sleep(0.1)
        assert all(await asyncio.to_thread(watch, 1.2))  # longer than stale_after: the loop turns meanwhile
        time.sleep(0.8)  # the loop's own thread blocked: a wedged loop
        assert not liveness.alive() and liveness.age() >= 0.7
        await asyncio.sleep(0.1)
        assert liveness.alive()

    asyncio.run(scenario())


def test_the_endpoint_listens_on_ipv4_on_every_address(served):
    liveness = served(Liveness())
    with socket.create_connection(("127.0.0.1", liveness.port), timeout=5):
        pass


def test_liveness_port_setting():
    assert Settings.from_env({}).liveness_port is None  # on its own: no endpoint
    assert Settings.from_env({"REEL_LIVENESS_PORT": "8086"}).liveness_port == 8086
    for bad in ("0", "65536", "http", "-1", "80.5"):
        with pytest.raises(SettingsError, match="REEL_LIVENESS_PORT"):
            Settings.from_env({"REEL_LIVENESS_PORT": bad})


def test_a_port_that_cannot_be_bound_leaves_the_recording_without_the_endpoint(caplog):
    assert cli.start_liveness(Settings()) is None
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        assert cli.start_liveness(Settings(liveness_port=busy.getsockname()[1])) is None
    assert "cannot serve the liveness endpoint" in caplog.text
    liveness = cli.start_liveness(Settings(liveness_port=_free_port()))
    try:
        assert liveness is not None and get(liveness.port)[0] == 200
    finally:
        liveness.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
