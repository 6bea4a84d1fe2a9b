"""Liveness both ways, against the real Janus and the real recorder process: the recorder notices a dead Janus
connection (WebSocket pings: room/janus.py), and whoever probes the recorder notices a frozen one
(GET /healthz on REEL_LIVENESS_PORT: liveness.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import urllib.error
import urllib.request

import pytest
from tests.support.recorder_proc import RecorderRun, session_manifest

from reel_recorder.room.janus import JanusRoom

# Short keepalive values keep the test short; the mechanism is the one the recorder uses with its defaults.
PING_INTERVAL, PING_TIMEOUT, CLOSE_TIMEOUT = 1.0, 2.0, 1.0


@contextlib.contextmanager
def half_open(net, client_port: int):
    """Silently drop both directions of one TCP connection between the test process and Janus, inside Janus's
    network namespace: no FIN, no RST, as when a peer's host vanishes or a NAT forgets the flow."""
    rules = [["INPUT", "-p", "tcp", "-s", net.host_addr, "--sport", str(client_port)],
             ["OUTPUT", "-p", "tcp", "-d", net.host_addr, "--dport", str(client_port)]]
    rules = [[*r, "-m", "comment", "--comment", "reel-test-half-open", "-j", "DROP"] for r in rules]
    for r in rules:
        net.run(["iptables", "-w", "-A", *r])
    try:
        yield
    finally:
        for r in rules:
            net.run(["iptables", "-w", "-D", *r], check=False)


def test_janus_answers_pings_and_a_silently_dropped_connection_closes_the_room(janus, room, test_network):
    async def scenario() -> tuple[float, float]:
        r = JanusRoom(janus.ws_url, room.id, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT,
                      close_timeout=CLOSE_TIMEOUT)
        await r.connect()
        try:
            await r.join("reel-ping-test")
            await asyncio.sleep(3 * PING_INTERVAL + 0.5)
            # Janus (libwebsockets) answered every ping, and the connection stayed up across them
            assert not r.closed.is_set() and r._ws.latency > 0, r._ws.latency
            with half_open(test_network, r._ws.local_address[1]):
                t0 = time.monotonic()
                await asyncio.wait_for(r.closed.wait(), PING_INTERVAL + PING_TIMEOUT + CLOSE_TIMEOUT + 5)
                return time.monotonic() - t0, r._ws.latency
        finally:
            await r.close()

    took, latency = asyncio.run(scenario())
    print(f"pong latency {latency * 1000:.1f} ms; a dropped connection closed the room after {took:.1f} s "
          f"(ping every {PING_INTERVAL} s, timeout {PING_TIMEOUT} s, close timeout {CLOSE_TIMEOUT} s)")
    assert took <= PING_INTERVAL + PING_TIMEOUT + CLOSE_TIMEOUT + 1.0


def _healthz(url: str, timeout: float = 2.0) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError) as err:
        return type(getattr(err, "reason", err)).__name__


def test_the_recorders_liveness_endpoint_answers_while_it_runs_and_not_while_it_is_frozen(
        janus, room, test_network, tmp_path):
    port = 18086
    run = RecorderRun(test_network.popen, _manifest(janus, room), tmp_path / "rec",
                      env={"REEL_ROOM_ADMIN_KEY": janus.admin_key, "REEL_LIVENESS_PORT": str(port)})
    url = f"http://{test_network.addr}:{port}/healthz"
    try:
        run.wait_event("joined", timeout=30)
        assert _healthz(url) == 200
        os.kill(run.proc.pid, signal.SIGSTOP)  # the whole process: what a kubelet's probe must notice too
        try:
            assert _healthz(url, timeout=2.0) == "TimeoutError"
        finally:
            os.kill(run.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while _healthz(url) != 200:
            assert time.monotonic() < deadline, "the endpoint did not come back after SIGCONT"
            time.sleep(0.1)
        run.terminate()
        assert run.proc.wait(30) == 0, run.describe()
        assert run.wait_event("finished")["status"]["phase"] == "Completed"
    finally:
        run.kill()


def _manifest(janus, room) -> dict:
    return session_manifest(janus.ws_url, room.id, recording={"maxIdleSeconds": 60, "segmentSeconds": 2})


@pytest.fixture(autouse=True)
def _no_leftover_rules(test_network):
    yield
    out = test_network.run(["iptables", "-w", "-S"], check=False).stdout
    assert "reel-test-half-open" not in out
