"""Issue 17 on kind: a session with ``ingest: webrtc`` and no room credentials Secret at all records two
participants. The room has a secret (the Janus pod's rooms do), so forwarding without it would be refused
(ForwardUnauthorized): a recording proves the recorder subscribed over WebRTC, pod to pod."""

from __future__ import annotations

from .kit import session_spec
from .test_e2e import TERMINAL, _check_recording, _record_alice_and_bob


def test_webrtc_ingest_without_room_credentials_records_two_participants(env, tmp_path):
    kit, ns = env.kit, env.ns
    spec = session_spec(env.server, 1001, endpoint=env.endpoint, recording={"ingest": "webrtc"})
    del spec["room"]["credentialsSecretRef"]
    rss = _record_alice_and_bob(env, "subscribed", spec)
    kit.stop_session(ns, "subscribed")
    status = kit.wait_phase(ns, "subscribed", TERMINAL, 240)["status"]
    assert status["phase"] == "Completed" and status["stopReason"] == "Requested", status
    assert all(not p.get("skipped") for p in status["participants"]), status["participants"]
    assert status["upload"]["progress"] == 100 and status["upload"]["pendingSegments"] == 0
    with kit.s3(ns) as s3:
        manifest = _check_recording(env, s3, status, 2, tmp_path)
    for p in manifest["participants"]:
        recorded = sum(s["duration"] for s in p["segments"])
        assert recorded > 10, (p["display"], recorded)  # the 12 s between both recorded and the stop, nearly all
    print(f"ingest webrtc: recorder RSS with 2 participants and S3: {int(rss) / 1024:.1f} MiB" if rss else
          "(RSS not readable)")
