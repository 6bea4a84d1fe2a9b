"""The operator's Prometheus metrics (``REEL_METRICS_PORT``), fed by the watch events kopf hands us.

Gauges describe what exists now (sessions by phase, recorder pods); counters and the start-latency histogram
count what this operator process saw happen. A session first seen in a later phase (an operator restart)
is counted in the gauges, not as a transition, so restarts never count a recording twice.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from reel_api import Phase

from . import status as st

_UNSEEN = object()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str], Any] = {}
        self._pods: set[tuple[str, str]] = set()
        self.transitions = Counter(
            "reel_session_phase_transitions", "Sessions that entered a phase, seen by this operator.", ["phase"],
            registry=self.registry)
        self.finished = Counter(
            "reel_sessions_finished", "Sessions that ended, by final phase and stop reason.",
            ["phase", "stop_reason"], registry=self.registry)
        self.start_seconds = Histogram(
            "reel_session_start_seconds", "Time from a session's creation to its phase Recording.",
            buckets=(0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300), registry=self.registry)
        # Webhooks (webhooks/delivery.py): every attempt's outcome, events waiting, event -> accepted.
        self.webhook_deliveries = Counter(
            "reel_webhook_deliveries", "Webhook attempts by outcome: delivered (2xx), failed (will be retried), "
            "dropped (not delivered within the retry bound).", ["outcome"], registry=self.registry)
        self.webhook_pending = Gauge(
            "reel_webhook_pending_events", "Webhook events derived but not delivered (nor dropped) yet.",
            registry=self.registry)
        self.webhook_latency = Histogram(
            "reel_webhook_delivery_seconds", "Time from a webhook event's creation to its receiver accepting it.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900), registry=self.registry)
        self.registry.register(_Current(self))
        ProcessCollector(registry=self.registry)

    def session(self, namespace: str, name: str, body: Mapping[str, Any] | None) -> None:
        """A watch event of a session; ``body`` None when it was deleted."""
        key = (namespace, name)
        with self._lock:
            if body is None:
                self._phases.pop(key, None)
                return
            status = body.get("status") or {}
            phase = status.get("phase")
            old = self._phases.get(key, _UNSEEN)
            self._phases[key] = phase
        if old is _UNSEEN or phase is None or phase == old:
            return
        self.transitions.labels(phase).inc()
        if phase == Phase.RECORDING:
            created = st.parse_time((body.get("metadata") or {}).get("creationTimestamp"))
            if created is not None and old in (None, Phase.PENDING, Phase.STARTING):
                self.start_seconds.observe(max(0.0, (st.now_utc() - created).total_seconds()))
        if st.is_terminal(phase):
            self.finished.labels(phase, status.get("stopReason") or "").inc()

    def pod(self, namespace: str, name: str, *, gone: bool) -> None:
        with self._lock:
            (self._pods.discard if gone else self._pods.add)((namespace, name))

    def snapshot(self) -> tuple[Tally, int]:
        with self._lock:
            return Tally(p for p in self._phases.values() if p), len(self._pods)

    def serve(self, port: int, addr: str = "0.0.0.0"):
        """Serve /metrics on ``addr:port`` from a daemon thread; returns the server (``shutdown()`` ends it)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server


class _Current:
    """Gauges computed at scrape time from what the watches have shown."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        phases, pods = self.metrics.snapshot()
        sessions = GaugeMetricFamily("reel_sessions", "RecordingSessions by phase.", labels=["phase"])
        for phase in [*(p.value for p in Phase), *sorted(set(phases) - set(Phase))]:
            sessions.add_metric([phase], phases.get(phase, 0))
        yield sessions
        yield GaugeMetricFamily("reel_recorder_pods", "Recorder pods that exist.", value=pods)

