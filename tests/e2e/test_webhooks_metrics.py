"""Webhooks and metrics end to end on kind (issue 19): the operator in its pod sends a session's events to an HTTP
receiver in this test process (reached from the cluster at this host's address on the kind network), signed
with the key of a Secret; the receiver checks every signature.

- a recording with two participants while the receiver answers 500 for the first minute
  (REEL_E2E_WEBHOOK_OUTAGE_SECONDS, default 60): the recording is not affected (Recording throughout,
  Completed, everything stored), the operator posts a Warning Event WebhookFailing and counts failed attempts,
  and after the outage the receiver gets every event once, in sequence: started, the participants, upload
  progress, stopped, uploaded, completed. Meanwhile the recorder pod's /metrics (through the API server's pod
  proxy) show the participants and bytes recorded and stored moving, and upload latencies observed;
- a session whose room does not exist (recording.failed, RoomNotFound) and one whose primary store is down
  (recording.backedUp), at once.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import subprocess
import time

from tests.support.metrics import values
from tests.support.webhooks import Receiver

from .kit import secret, session_spec, wait_for

TERMINAL = {"Completed", "BackedUp", "Failed"}
KEY = "whsec_" + "ZTJlLXdlYmhvb2stc2lnbmluZy1rZXktMTIzNDU2"  # base64 of e2e-webhook-signing-key-123456
OUTAGE = float(os.environ.get("REEL_E2E_WEBHOOK_OUTAGE_SECONDS", "60"))
VALUES = {"webhooks": {"enabled": True, "progressSeconds": 15}, "metrics": {"enabled": True}}


def _host_address(kit) -> str:
    """This host's address on the network of the kind node (the podman/docker bridge): pods reach it there."""
    node = kit.core.list_node().items[0]
    node_ip = ipaddress.ip_address(next(a.address for a in node.status.addresses if a.type == "InternalIP"))
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    for cidr in re.findall(r"inet (\S+)", out):
        iface = ipaddress.ip_interface(cidr)
        if node_ip in iface.network and iface.ip != node_ip:
            return str(iface.ip)
    raise AssertionError(f"no address of this host on the node's network ({node_ip})")


def _with_webhook(spec: dict, url: str) -> dict:
    return {**spec, "notify": {"webhook": {"url": url, "secretRef": {"name": "hook", "key": "signing-key"}}}}


def _scrape(kit, ns: str, pod: str, port: int) -> dict[str, float]:
    """A pod's /metrics through the API server's pod proxy: {'name{labels}': value}."""
    return values(kit.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy/metrics").stdout)


def _events(kit, ns: str, name: str, reason: str) -> list:
    return [e for e in kit.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
            if e.reason == reason]


def _operator_pod(kit, ns: str) -> str:
    return kit.kubectl("get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=operator", "-o",
                       "jsonpath={.items[0].metadata.name}").stdout.strip()


def test_a_recording_told_through_a_receiver_outage_and_its_metrics_move(env):
    kit, ns = env.kit, env.ns
    kit.helm_install("reel", ns, values=VALUES)
    kit.apply(ns, secret("hook", {"signing-key": KEY}))
    with Receiver(base64.b64decode(KEY[6:]), host="0.0.0.0") as rx:
        url = rx.url.replace("0.0.0.0", _host_address(kit))
        rx.failing.set()
        t0 = time.monotonic()
        kit.create_session(ns, "told", _with_webhook(session_spec(env.server, 1001, endpoint=env.endpoint), url))
        for who in ("alice", "bob"):
            kit.wait_published(ns, kit.start_publisher(ns, who, 1001))
        wait_for(lambda: (kit.session(ns, "told").get("status") or {}).get("activeParticipants") == 2, 120,
                 "two participants recorded")

        # the recorder's metrics move while it records
        pod = kit.recorder_pods(ns, "told")[0].metadata.name
        first = wait_for(lambda: (m := _scrape(kit, ns, pod, 9102)).get("reel_recorder_recorded_bytes_total") and m,
                         60, "a first segment in the recorder's metrics")
        time.sleep(10)
        second = _scrape(kit, ns, pod, 9102)
        assert second["reel_recorder_participants_active"] == 2, second
        assert second["reel_recorder_participants_recorded"] == 2
        assert second["reel_recorder_recorded_bytes_total"] > first["reel_recorder_recorded_bytes_total"] > 0
        assert second["reel_recorder_stored_bytes_total"] > first["reel_recorder_stored_bytes_total"]
        assert second["reel_recorder_segments_total"] > first["reel_recorder_segments_total"]
        assert "reel_recorder_segments_pending" in second and "process_resident_memory_bytes" in second
        assert second["reel_recorder_upload_seconds_count"] >= second["reel_recorder_segments_total"] - \
            second["reel_recorder_segments_pending"] - 2 > 0
        grew = second["reel_recorder_recorded_bytes_total"] - first["reel_recorder_recorded_bytes_total"]
        mean = second["reel_recorder_upload_seconds_sum"] / second["reel_recorder_upload_seconds_count"]
        print(f"\nrecorder metrics over 10 s: {grew:.0f} B recorded; upload latency mean {mean:.2f} s")

        # the outage: nothing accepted, the recording goes on, the failure is visible
        wait_for(lambda: _events(kit, ns, "told", "WebhookFailing"), 60, "a WebhookFailing Event")
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - t0)))
        assert not rx.events and rx.attempts >= 3 and rx.bad_signatures == 0, (rx.attempts, rx.bad_signatures)
        status = kit.session(ns, "told")["status"]
        assert status["phase"] == "Recording" and status["activeParticipants"] == 2, status
        refused = rx.attempts
        rx.failing.clear()
        print(f"receiver down {time.monotonic() - t0:.0f} s: {refused} attempts refused")
        wait_for(lambda: any(e["type"] == "upload.progress" for e in rx.events), 90, "events after the outage")

        kit.stop_session(ns, "told")
        obj = kit.wait_phase(ns, "told", TERMINAL, 240)
        assert obj["status"]["phase"] == "Completed" and obj["status"]["upload"]["progress"] == 100, obj["status"]
        wait_for(lambda: any(e["type"] == "recording.completed" for e in rx.events), 120, "recording.completed")
        metrics = _scrape(kit, ns, _operator_pod(kit, ns), 9090)

    events = rx.unique()
    types = [e["type"] for e in events]
    assert rx.bad_signatures == 0
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1)), types
    assert types[0] == "recording.started" and types[-2:] == ["recording.uploaded", "recording.completed"], types
    assert types.index("recording.started") < types.index("recording.stopped") < types.index("recording.uploaded")
    assert types.count("participant.joined") == 2 and "upload.progress" in types, types
    stopped = next(e for e in events if e["type"] == "recording.stopped")
    assert stopped["data"]["stopReason"] == "Requested"
    done = events[-1]
    assert done["session"]["name"] == "told" and done["session"]["namespace"] == ns and done["session"]["uid"]
    assert done["recordingId"] == obj["status"]["recordingId"]
    assert done["prefix"] + "manifest.json" == obj["status"]["manifest"] == done["data"]["manifest"]
    assert metrics['reel_webhook_deliveries_total{outcome="failed"}'] >= 1
    assert metrics['reel_webhook_deliveries_total{outcome="delivered"}'] >= len(events)
    assert metrics["reel_webhook_pending_events"] == 0
    print(f"{len(events)} events, in order: {', '.join(types)}")


def test_a_failed_and_a_backed_up_session_are_told(env):
    kit, ns = env.kit, env.ns
    kit.helm_install("reel", ns, values=VALUES)
    kit.apply(ns, secret("hook", {"signing-key": KEY}))
    kit.apply(ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s3-down"},
                   "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 9000}]}})
    kit.create_bucket(ns, "backup")
    with Receiver(base64.b64decode(KEY[6:]), host="0.0.0.0") as rx:
        url = rx.url.replace("0.0.0.0", _host_address(kit))
        kit.create_session(ns, "no-room", _with_webhook(session_spec(env.server, 4242, endpoint=env.endpoint), url))
        backup = {"bucket": "backup", "endpoint": env.endpoint, "credentialsSecretRef": {"name": "s3"}}
        spec = session_spec(env.server, 1004, endpoint=f"http://s3-down.{ns}.svc.cluster.local:9000", backup=backup)
        kit.create_session(ns, "backed", _with_webhook(spec, url))
        kit.wait_published(ns, kit.start_publisher(ns, "dave", 1004, None, "--no-video"))
        wait_for(lambda: (kit.session(ns, "backed").get("status") or {}).get("upload", {}).get("location")
                 == "backup", 180, "segments stored in the backup")
        kit.stop_session(ns, "backed")
        assert kit.wait_phase(ns, "backed", TERMINAL, 600)["status"]["phase"] == "BackedUp"
        assert kit.wait_phase(ns, "no-room", TERMINAL, 120)["status"]["phase"] == "Failed"
        wait_for(lambda: {"recording.failed", "recording.backedUp"} <= {e["type"] for e in rx.events}, 120,
                 "recording.failed and recording.backedUp")
    assert rx.bad_signatures == 0
    by = {n: [e for e in rx.unique() if e["session"]["name"] == n] for n in ("no-room", "backed")}
    for events in by.values():
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    failed = by["no-room"]
    assert [e["type"] for e in failed] == ["recording.failed"], failed
    assert failed[0]["data"]["reason"] == "RoomNotFound" and "4242" in failed[0]["data"]["message"]
    types = [e["type"] for e in by["backed"]]
    assert types[0] == "recording.started" and types[-1] == "recording.backedUp" and "recording.stopped" in types
    assert by["backed"][-1]["data"]["upload"]["location"] in ("backup", "mixed")
