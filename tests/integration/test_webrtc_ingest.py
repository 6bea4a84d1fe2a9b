"""The WebRTC ingest (spec.recording.ingest webrtc / auto without forwarding credentials) against a real Janus.

The recorder's core tests run for both ingests (test_recorder.py, test_av_alignment.py: ``INGESTS``); here is
what only the WebRTC ingest has: ``auto`` choosing it when no room secret or admin key is given, and a
participant whose connection (ICE/DTLS) cannot come up skipped with reason ConnectFailed within a bounded time
while the others are recorded all the same.
"""

from __future__ import annotations

import signal
import time

from tests.support.analyze import read_participant, recording_folders

CONNECT_SECONDS = 4  # REEL_WEBRTC_CONNECT_SECONDS for these tests (the default is 10)
STALL_SECONDS = 10  # the media watchdog's (recorder_image/reel_recorder/watchdog.py)


def _skipped(event: dict, display: str) -> list[dict]:
    for p in event["status"].get("participants", []):
        if p["display"] == display:
            return p.get("skipped", [])
    return []


def test_a_participant_whose_connection_cannot_come_up_is_skipped_and_the_others_recorded(
        record, room, publisher, test_network):
    """No forwarding credentials and ingest auto: the recorder subscribes. Then bob's media stops (his publisher
    frozen with SIGSTOP; Janus still lists him) and no new UDP flow can start in the test network (iptables
    conntrack NEW dropped: the established flows, alice's subscription among them, go on). The media watchdog
    subscribes to bob again after 10 s; that subscription's ICE cannot connect: bob is skipped with reason
    ConnectFailed within REEL_WEBRTC_CONNECT_SECONDS (+ the watchdog's second), alice is recorded throughout."""
    # Connection tracking starts in a namespace with its first rule that needs it: flows older than that would
    # look NEW to the rule below. This one (a no-op) makes every flow of the test tracked from its start.
    track = ["OUTPUT", "-p", "udp", "-m", "conntrack", "--ctstate", "INVALID", "-m", "comment", "--comment",
             "reel-test-track", "-j", "RETURN"]
    rule = ["OUTPUT", "-p", "udp", "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
            "reel-test-no-new-udp", "-j", "DROP"]
    test_network.run(["iptables", "-w", "-A", *track])
    try:
        run = record(room, recording={"maxIdleSeconds": 60}, forwarding_credentials=False,
                     env={"REEL_WEBRTC_CONNECT_SECONDS": str(CONNECT_SECONDS)})
        run.wait_event("joined", timeout=30)
        alice = publisher(room, display="alice", duration=60)
        bob = publisher(room, display="bob", duration=60)
        for p in (alice, bob):
            p.wait_event("published", timeout=60)
        run.wait_event("participants", timeout=30,
                       predicate=lambda e: e["status"].get("activeParticipants") == 2)
        time.sleep(3)
        test_network.run(["iptables", "-w", "-I", *rule])
        bob.proc.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        event = run.wait_event("participants", timeout=STALL_SECONDS + CONNECT_SECONDS + 20,
                               predicate=lambda e: _skipped(e, "bob"))
        took = time.monotonic() - frozen
        time.sleep(3)  # alice goes on being recorded
        run.terminate()
        status = run.wait(60)
    finally:
        test_network.run(["iptables", "-w", "-D", *rule], check=False)
        test_network.run(["iptables", "-w", "-D", *track], check=False)
    assert "ingest: webrtc (spec.recording.ingest: auto)" in run.stderr_path.read_text()
    skipped = _skipped(event, "bob")
    assert {s["reason"] for s in skipped} == {"ConnectFailed"}, skipped
    assert {s["kind"] for s in skipped} == {"audio", "video"}, skipped
    assert "did not connect within 4 s" in skipped[0]["message"] and "ICE" in skipped[0]["message"], skipped
    # bounded: the stall (10 s), the new subscription's connect timeout, the watchdog's once-a-second look
    assert STALL_SECONDS + CONNECT_SECONDS - 1 <= took <= STALL_SECONDS + CONNECT_SECONDS + 6, took
    assert status["phase"] == "Completed" and status["stopReason"] == "Requested", status
    bob_status, = [p for p in status["participants"] if p["display"] == "bob"]
    assert bob_status["stalls"] == 1 and bob_status["skipped"] == skipped, bob_status
    folders = recording_folders(run.output)
    alice_folder, = [f for name, f in folders.items() if name.startswith("alice")]
    info, decoded = read_participant(alice_folder)
    assert decoded.decode_errors == 0, decoded.decode_messages
    recorded = sum(d for _, d, _ in info.entries)
    assert recorded >= took + 3 + 2, (recorded, took)  # from her start through bob's failure to the stop
    assert not any(d for _, _, d in info.entries), info.entries  # one run: no gap while bob failed


def test_video_only_subscription_maps_janus_mids_to_the_publishers(record, room, publisher):
    """streamTypes video: the subscription asks for the publisher's video (its mid 1) only, which Janus's offer
    numbers 0: the recorder must find the stream by the publisher's mid (Janus's feed_mid)."""
    run = record(room, recording={"streamTypes": "video", "ingest": "webrtc"})
    run.wait_event("joined", timeout=30)
    p = publisher(room, display="vera", duration=8)
    sent = p.wait(90)
    status = run.wait(60)
    assert status["phase"] == "Completed" and status["stopReason"] == "NoUsers", status
    folder, = recording_folders(run.output).values()
    _info, decoded = read_participant(folder)
    assert decoded.decode_errors == 0 and decoded.audio_samples == 0, decoded
    assert decoded.video_frames >= sent["video_frames"] - 0.3 * 30 - 0.01 * sent["video_frames"], (
        decoded.video_frames, sent["video_frames"])


def test_an_offer_aiortc_cannot_take_skips_that_participant_only(record, room, publisher, janus, test_network):
    """A publisher whose stream Janus offers in a way aiortc refuses (here a remote publisher's H.264, which Janus
    offers without packetization-mode 1) is skipped CodecUnsupported with what to do; the recording goes on and
    records the others (it failed whole before: an aiortc OperationError out of the subscription)."""
    run = record(room, recording={"ingest": "webrtc", "maxIdleSeconds": 60})
    run.wait_event("joined", timeout=30)
    remote = janus.videoroom_request({"request": "add_remote_publisher", "room": room.id, "display": "relay",
                                      "iface": test_network.addr, "streams": [
                                          {"type": "video", "mindex": 0, "mid": "0", "codec": "h264"}]})
    try:
        run.wait_event("participants", timeout=30, predicate=lambda e: any(
            p.get("display") == "relay" and p.get("skipped") for p in e["status"]["participants"]))
        p = publisher(room, display="vera", duration=6)
        p.wait(90)
    finally:
        janus.videoroom_request({"request": "remove_remote_publisher", "room": room.id, "id": remote["id"]})
    run.terminate()
    status = run.wait(60)
    assert status["phase"] == "Completed", status
    by_name = {p["display"]: p for p in status["participants"]}
    [skipped] = by_name["relay"]["skipped"]
    assert skipped["reason"] == "CodecUnsupported" and "use ingest forward" in skipped["message"], skipped
    assert "skipped" not in by_name["vera"]
    folder, = recording_folders(run.output).values()
    _info, decoded = read_participant(folder)
    assert decoded.decode_errors == 0 and decoded.video_frames > 0 and decoded.audio_samples > 0, decoded
