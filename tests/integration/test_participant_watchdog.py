"""The media watchdog against a real Janus: a forwarder stopped behind the recorder's back (what a Janus admin, a
buggy plugin or a Janus-side timeout does) is noticed and set up again; the others are not touched."""

from __future__ import annotations

import json
import time

import pytest
from tests.support.analyze import read_participant, recording_folders

pytestmark = pytest.mark.integration


def _forwarders(janus, room) -> dict[int, list[dict]]:
    """publisher id -> its forwarders (listforwarders, with the room's secret)."""
    return {p["publisher_id"]: p.get("forwarders") or [] for p in janus.list_forwarders(room.id, secret=room.secret)}


def test_a_forwarder_stopped_behind_the_recorders_back_is_set_up_again(record, room, publisher, janus):
    run = record(room, recording={"maxIdleSeconds": 5})
    run.wait_event("joined", timeout=30)
    alice = publisher(room, display="alice", duration=30)
    bob = publisher(room, display="bob", duration=30)
    alice_id = alice.wait_event("published", timeout=60)["id"]
    bob.wait_event("published", timeout=60)
    deadline = time.monotonic() + 30
    while len(_forwarders(janus, room).get(alice_id, [])) < 2:
        assert time.monotonic() < deadline, _forwarders(janus, room)
        time.sleep(0.2)
    time.sleep(5)  # a few segments first
    cut = time.monotonic()
    for f in _forwarders(janus, room)[alice_id]:
        janus.stop_rtp_forward(room.id, alice_id, f["stream_id"], secret=room.secret)
    deadline = time.monotonic() + 30
    while not _forwarders(janus, room).get(alice_id):
        assert time.monotonic() < deadline, "the recorder did not forward alice again"
        time.sleep(0.2)
    noticed = time.monotonic() - cut
    alice.wait(90)
    bob.wait(90)
    status = run.wait(60)
    assert status["phase"] == "Completed", status
    by_name = {p["display"]: p for p in status["participants"]}
    assert by_name["alice"].get("stalls") == 1 and "stalls" not in by_name["bob"], by_name
    assert "skipped" not in by_name["alice"]
    outputs = {name.split("_")[0]: read_participant(folder) for name, folder in recording_folders(run.output).items()}
    info, decoded = outputs["alice"]
    disc = [i for i, (_, _, d) in enumerate(info.entries) if d]
    assert len(disc) == 1, info.entries  # the playlist continues after one discontinuity
    assert decoded.decode_errors == 0
    alice_seconds = sum(d for _, d, _ in info.entries)
    bob_info, bob_decoded = outputs["bob"]
    bob_seconds = sum(d for _, d, _ in bob_info.entries)
    assert [d for _, _, d in bob_info.entries].count(True) == 0 and bob_decoded.decode_errors == 0
    missing = bob_seconds - alice_seconds
    assert 9 < noticed < 14 and 8 < missing < 14, (noticed, alice_seconds, bob_seconds)
    manifest = json.loads(next(run.output.rglob("manifest.json")).read_text())
    assert [len(p["joins"]) for p in manifest["participants"] if p["display"] == "alice"] == [2]
    print(f"forwarder stopped: forwarded again after {noticed:.1f} s; alice {alice_seconds:.1f} s recorded, "
          f"bob {bob_seconds:.1f} s: {missing:.1f} s of alice missing")
