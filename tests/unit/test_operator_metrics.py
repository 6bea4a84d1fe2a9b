"""The operator's Prometheus metrics, fed with watch events as kopf delivers them."""

from __future__ import annotations

import urllib.request
from datetime import timedelta

from tests.support.metrics import samples

from reel_operator import status as st
from reel_operator.metrics import Metrics


def _session(phase=None, reason=None, created_ago=2.0):
    created = (st.now_utc() - timedelta(seconds=created_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {k: v for k, v in {"phase": phase, "stopReason": reason}.items() if v}
    return {"metadata": {"creationTimestamp": created}, "status": status}


def _scrape(m: Metrics) -> dict[tuple[str, tuple], float]:
    from prometheus_client import generate_latest

    return samples(generate_latest(m.registry).decode())


def test_a_session_lifecycle_counts_transitions_start_latency_and_the_end():
    m = Metrics()
    for phase in (None, "Pending", "Starting", "Recording", "Recording", "Stopping", "Uploading"):
        m.session("ns", "a", _session(phase, created_ago=2.0))
    m.pod("ns", "reel-rec-a", gone=False)
    s = _scrape(m)
    assert s[("reel_sessions", (("phase", "Uploading"),))] == 1
    assert s[("reel_sessions", (("phase", "Recording"),))] == 0
    assert s[("reel_recorder_pods", ())] == 1
    assert s[("reel_session_phase_transitions_total", (("phase", "Recording"),))] == 1  # once, not per event
    assert s[("reel_session_start_seconds_count", ())] == 1
    assert 1.5 <= s[("reel_session_start_seconds_sum", ())] <= 10

    m.session("ns", "a", _session("Completed", "NoUsers"))
    m.pod("ns", "reel-rec-a", gone=True)
    s = _scrape(m)
    assert s[("reel_sessions_finished_total", (("phase", "Completed"), ("stop_reason", "NoUsers")))] == 1
    assert s[("reel_sessions", (("phase", "Completed"),))] == 1
    assert s[("reel_recorder_pods", ())] == 0

    m.session("ns", "a", None)  # deleted
    assert _scrape(m)[("reel_sessions", (("phase", "Completed"),))] == 0


def test_sessions_found_at_startup_are_gauged_not_counted_as_transitions():
    m = Metrics()
    m.session("ns", "old", _session("Completed", "Requested", created_ago=3600))
    m.session("ns", "busy", _session("Recording", created_ago=600))
    s = _scrape(m)
    assert s[("reel_sessions", (("phase", "Completed"),))] == 1
    assert s[("reel_sessions", (("phase", "Recording"),))] == 1
    assert not any(k[0] in ("reel_session_phase_transitions_total", "reel_sessions_finished_total") for k in s)
    assert s[("reel_session_start_seconds_count", ())] == 0


def test_served_over_http():
    m = Metrics()
    m.session("ns", "a", _session("Pending"))
    server = m.serve(0, addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5) as r:
            s = samples(r.read().decode())
    finally:
        server.shutdown()
        server.server_close()
    assert s[("reel_sessions", (("phase", "Pending"),))] == 1
    assert ("process_resident_memory_bytes", ()) in s
