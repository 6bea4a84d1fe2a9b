"""A lost connection to a real Janus (room/reconnect.py): Janus killed and restarted mid-recording, the WebSocket cut
by a relay in the middle, and Janus gone for longer than reconnectSeconds.

Each test prints its figures (gap in media seconds, frames lost, reconnect time) with ``-s``.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from tests.harness.janus import Janus
from tests.harness.tcpcut import TcpCut
from tests.support.analyze import read_participant, recording_folders
from tests.support.ingests import INGESTS

FPS = 30


@pytest.fixture
def own_janus(test_network, janus, tmp_path):
    """A Janus of this test's own (other ports) that it may kill and restart; same admin key as ``janus`` (the
    ``record`` fixture hands that one to the recorder)."""
    j = Janus(test_network, tmp_path / "own-janus", admin_key=janus.admin_key, http_port=8091, ws_port=8191,
              admin_port=7091, rtp_port_range="23000-23999")
    j.start()
    yield j
    j.stop()


def _kill(j: Janus) -> float:
    """Janus crashes (SIGKILL): its sockets close at once, its rooms and forwarders are gone."""
    t = time.time()
    j.proc.kill()
    j.proc.wait(10)
    j.stop()
    return t


def _room_events(run, state: str, n: int = 1, timeout: float = 60.0) -> dict:
    return run.wait_event("room", timeout, lambda e: e["status"]["room"]["state"] == state
                          and (state != "Connected" or e["status"]["room"]["reconnects"] >= n))


def _recording(run, active: int, reconnects: int = 0, timeout: float = 60.0) -> dict:
    return run.wait_event("participants", timeout, lambda e: e["status"]["activeParticipants"] == active
                          and e["status"]["room"]["state"] == "Connected"
                          and e["status"]["room"]["reconnects"] >= reconnects)


def _gap_seconds(manifest: dict) -> float:
    """The one roomGaps entry's length: the loss seen to the room joined again."""
    [gap] = manifest["roomGaps"]
    lost, back = (datetime.fromisoformat(gap[k].replace("Z", "+00:00")) for k in ("lostAt", "reconnectedAt"))
    return (back - lost).total_seconds()


def _exit_frames(p) -> int:
    p.proc.wait(30)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(e["event"] == "exit" for e in p.events):
        time.sleep(0.05)
    return next(e for e in p.events if e["event"] == "exit")["video_frames"]


def _iso_s(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _manifest(run) -> dict:
    return json.loads(next(run.output.rglob("manifest.json")).read_text())


def _gaps(manifest: dict) -> dict[str, float]:
    """Per participant: media seconds missing at the discontinuity (its segment's start - the previous one's end)."""
    out = {}
    for p in manifest["participants"]:
        segs = p["segments"]
        for prev, seg in itertools.pairwise(segs):
            if seg["discontinuity"]:
                out[p["display"]] = round(seg["start"] - (prev["start"] + prev["duration"]), 2)
    return out


def _outputs(run) -> dict[str, tuple]:
    return {name.rsplit("_", 1)[0]: read_participant(folder) for name, folder in recording_folders(run.output).items()}


def _one_discontinuity_each(outputs: dict, who: set[str]) -> None:
    assert set(outputs) == who, list(outputs)
    for name, (info, decoded) in outputs.items():
        disc = [i for i, (_, _, d) in enumerate(info.entries) if d]
        assert len(disc) == 1 and 0 < disc[0] < len(info.entries), (name, info.entries)
        assert info.ended and decoded.decode_errors == 0, (name, decoded.decode_errors)


@INGESTS
def test_janus_killed_and_restarted_mid_recording(record, own_janus, publisher, ingest):
    j, rid = own_janus, 7701
    j.create_room(rid)
    run = record(None, room_id=rid, server=j.ws_url, recording={"reconnectSeconds": 30, "maxIdleSeconds": 5,
                                                                  **ingest})
    run.wait_event("joined", timeout=30)
    first = {name: publisher(rid, display=name, id=pid, ws=j.ws_url) for name, pid in (("alice", 501), ("bob", 502))}
    _recording(run, 2)
    time.sleep(6)
    killed = _kill(j)
    lost = _room_events(run, "Reconnecting")
    time.sleep(2)  # Janus is down: the recorder's attempts fail (connection refused)
    j.start()
    restarted = time.time()
    j.create_room(rid)  # as the application does: rooms created through the API die with Janus
    second = {name: publisher(rid, display=name, id=pid, ws=j.ws_url, duration=8)
              for name, pid in (("alice", 501), ("bob", 502))}
    _room_events(run, "Connected")
    _recording(run, 2, reconnects=1)
    sent = {name: _exit_frames(first[name]) + second[name].wait(90)["video_frames"] for name in first}
    status = run.wait(90)

    assert status["phase"] == "Completed" and status["stopReason"] == "NoUsers", status
    assert status["room"]["state"] == "Connected" and status["room"]["reconnects"] == 1
    outputs = _outputs(run)
    _one_discontinuity_each(outputs, {"alice", "bob"})
    manifest = _manifest(run)
    [gap] = manifest["roomGaps"]
    assert gap["reconnectedAt"] and gap["error"]
    assert all(len(p["joins"]) == 2 and p["ids"] == [p["ids"][0]] for p in manifest["participants"])
    gaps = _gaps(manifest)
    lost_frames = {name: sent[name] - outputs[name][1].video_frames for name in sent}
    print(f"\nJanus restart: loss seen {_iso_s(lost['status']['room']['since']) - killed:.2f} s after the kill, "
          f"rejoined {_gap_seconds(manifest):.2f} s after the loss; Janus down {restarted - killed:.1f} s; "
          f"media gap per participant {gaps} s; frames sent {sent}, recorded "
          f"{ {n: o[1].video_frames for n, o in outputs.items()} }, lost {lost_frames}")
    for name in sent:
        # the recording misses what Janus could not forward (down, then the publishers' rejoin) and a keyframe's wait
        assert 0 < gaps[name] < 15, gaps
        assert 0 <= lost_frames[name] <= (gaps[name] + 2) * FPS, lost_frames


def test_websocket_cut_in_the_middle(record, janus, room, publisher, test_network):
    with TcpCut(test_network.host_addr, janus.host, janus.ws_port) as relay:
        run = record(room, server=relay.url(), recording={"reconnectSeconds": 20},
                     extra_args=["--janus-media-address", janus.host])
        run.wait_event("joined", timeout=30)
        alice = publisher(room, display="alice", duration=16)
        _recording(run, 1)
        time.sleep(5)
        assert relay.cut() == 1
        _room_events(run, "Connected")
        _recording(run, 1, reconnects=1)
        time.sleep(1.0)
        # the forwarders of the lost session were stopped: one per stream, not two (ingest/forward.py _reclaim)
        forwarders = [f for p in janus.list_forwarders(room.id) for f in p.get("forwarders") or p.get("streams") or []]
        sent = alice.wait(90)["video_frames"]
        status = run.wait(60)
    assert status["phase"] == "Completed" and status["room"]["reconnects"] == 1, status
    assert len(forwarders) == 2, forwarders
    outputs = _outputs(run)
    _one_discontinuity_each(outputs, {"alice"})
    manifest = _manifest(run)
    gaps = _gaps(manifest)
    lost_frames = sent - outputs["alice"][1].video_frames
    print(f"\nWebSocket cut: rejoined {_gap_seconds(manifest):.2f} s after the loss; media gap "
          f"{gaps} s; frames sent {sent}, recorded {outputs['alice'][1].video_frames}, lost {lost_frames}")
    # Janus keeps forwarding a publisher's media while our session is gone (the forwarders are theirs), and the old
    # run reads it until its readers stop: the media gap is about nothing; the discontinuity is at the new run
    assert -0.1 < gaps["alice"] < 5 and 0 <= lost_frames <= (max(gaps["alice"], 0) + 1) * FPS, (gaps, lost_frames)


def test_janus_gone_longer_than_reconnect_seconds_fails_janus_lost(record, own_janus, publisher):
    j, rid = own_janus, 7702
    j.create_room(rid)
    run = record(None, room_id=rid, server=j.ws_url, recording={"reconnectSeconds": 3})
    run.wait_event("joined", timeout=30)
    publisher(rid, display="carol", ws=j.ws_url)
    _recording(run, 1)
    time.sleep(4)
    killed = _kill(j)
    status = run.wait(60)
    took = time.time() - killed - (time.monotonic() - run.ended)  # from the kill to the recorder's exit
    assert status["phase"] == "Failed" and status["reason"] == "JanusLost", status
    assert j.ws_url in status["message"] and "reconnectSeconds (3 s)" in status["message"], status["message"]
    print(f"\nJanus gone: Failed/JanusLost {took:.1f} s after the kill; message: {status['message']}")
    assert 3 <= took < 15
    (info, decoded), = _outputs(run).values()  # what was recorded before the loss is stored, playlist ended
    assert info.ended and decoded.video_frames > 2 * FPS
    [gap] = _manifest(run)["roomGaps"]
    assert gap["reconnectedAt"] is None
    assert Path(run.output).is_dir()
