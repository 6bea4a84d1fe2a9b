"""The recorder's /metrics: fed by the same reports as the status, served over HTTP by prometheus-client."""

from __future__ import annotations

import socket
import urllib.request

from tests.support.metrics import values

from reel_recorder.metrics import RecorderMetrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reports_become_metrics_and_upload_latencies_a_histogram():
    m = RecorderMetrics()
    latencies: dict[str, float] = {}
    m.watch_uploads(latencies)
    port = _free_port()
    server = m.serve(port, addr="127.0.0.1")
    try:
        m.report("participants", {"recordingId": "r1", "phase": "Recording", "activeParticipants": 2, "participants": [
            {"id": 1, "joinedAt": "t", "droppedFrames": 3, "packetsLost": 7},
            {"id": 2, "joinedAt": "t", "skipped": [{"kind": "video"}]}, {"id": 3}],
            "composite": {"frames": 100, "droppedFrames": 4, "latePictures": 2},
            "room": {"state": "Connected", "reconnects": 1}})
        latencies.update({"a": 0.3, "b": 1.5})
        m.report("upload", {"upload": {"segments": 5, "pendingSegments": 1, "recordedBytes": 5000,
                                       "storedBytes": 4000}})
        latencies["c"] = 20.0
        m.report("upload", {"upload": {"segments": 6, "pendingSegments": 1, "recordedBytes": 6000, "storedBytes": 5000},
                            "spool": {"usedBytes": 1000, "limitBytes": 10_000, "droppedSegments": 0}})
        got = values(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
    finally:
        server.shutdown()
        server.server_close()
    assert got["reel_recorder_participants_active"] == 2
    assert got["reel_recorder_participants_recorded"] == 2 and got["reel_recorder_participants_skipped"] == 1
    assert got["reel_recorder_recorded_bytes_total"] == 6000 and got["reel_recorder_stored_bytes_total"] == 5000
    assert got["reel_recorder_segments_total"] == 6 and got["reel_recorder_segments_pending"] == 1
    assert got["reel_recorder_upload_seconds_count"] == 3 and got["reel_recorder_upload_seconds_sum"] == 21.8
    assert got['reel_recorder_upload_seconds_bucket{le="2.0"}'] == 2
    assert got['reel_recorder_frames_dropped_total{participant="1"}'] == 3
    assert got['reel_recorder_packets_lost_total{participant="1"}'] == 7
    assert got["reel_recorder_composite_frames_dropped_total"] == 4 and got["reel_recorder_room_reconnects_total"] == 1
    assert got["reel_recorder_composite_pictures_late_total"] == 2
    assert got["reel_recorder_spool_used_bytes"] == 1000
    assert got['reel_recorder_recording_info{phase="Recording",recording_id="r1"}'] == 1
    assert "process_resident_memory_bytes" in got


def test_the_example_dashboard_uses_only_metrics_that_exist():
    """examples/grafana-dashboard.json: every reel_* metric it queries is one the operator or the recorder serves."""
    import json
    import re
    from pathlib import Path

    from prometheus_client import generate_latest

    from reel_operator.metrics import Metrics

    m = RecorderMetrics()
    m.report("x", {"recordingId": "r", "activeParticipants": 1, "participants": [
        {"id": 1, "joinedAt": "t", "droppedFrames": 1, "packetsLost": 1}],
        "upload": {"segments": 1, "pendingSegments": 0, "recordedBytes": 1, "storedBytes": 1},
        "composite": {"frames": 1, "droppedFrames": 0}})
    m.upload_seconds.observe(1)
    operator = Metrics()
    operator.webhook_deliveries.labels("delivered").inc()
    operator.finished.labels("Completed", "Requested").inc()
    operator.start_seconds.observe(1)
    served = {line.split("{")[0].split(" ")[0] for registry in (m.registry, operator.registry)
              for line in generate_latest(registry).decode().splitlines() if line and not line.startswith("#")}
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "examples" / "grafana-dashboard.json").read_text())
    used = {name for p in dashboard["panels"] for t in p.get("targets", [])
            for name in re.findall(r"\b((?:reel|process)_[a-z_]+)\b", t["expr"])}
    assert used and used <= served, sorted(used - served)
