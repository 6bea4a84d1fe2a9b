"""The recorder's Prometheus metrics: served on ``REEL_METRICS_PORT`` (the operator sets 9102, container port
``metrics``), scraped from the recorder pod (chart ``metrics.recorderPodMonitor``).

Why scraped rather than reported through the operator: the numbers are per pod and change every second; a
scrape reads them when Prometheus wants them, at no cost to the API server, and a recorder that is wedged shows
as a failed scrape. The status the recorder patches stays what a person reads; these are for dashboards and
alerts (examples/grafana-dashboard.json).

``RecorderMetrics`` is a ProgressSink (progress.py): every report the recorder makes (participants, upload,
spool, composite, room) updates the numbers, so they say exactly what the status says, from the same source.
Upload latency (segment closed -> stored) comes from the uploader's ledger (``Uploader.latencies``), read at each
report. Counters that the media path does not keep yet are read from the participants' status when present
(``droppedFrames``, ``packetsLost`` per participant: the ingest's counters; see ``PARTICIPANT_COUNTERS``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger("reel.recorder")

#: Per-participant counters read from status.participants[] when the media path reports them:
#: status key -> (metric name without _total, help).
PARTICIPANT_COUNTERS = {
    "droppedFrames": ("reel_recorder_frames_dropped", "Frames of a participant not recorded (damaged or incomplete)."),
    "packetsLost": ("reel_recorder_packets_lost", "RTP packets of a participant that never arrived."),
}
UPLOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)


class RecorderMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {}
        self._latencies: Mapping[str, float] | None = None
        self._latencies_seen = 0
        self.upload_seconds = Histogram(
            "reel_recorder_upload_seconds", "Time from a segment's close to its first copy stored.",
            buckets=UPLOAD_BUCKETS, registry=self.registry)
        self.registry.register(_FromStatus(self))
        ProcessCollector(registry=self.registry)

    def watch_uploads(self, latencies: Mapping[str, float]) -> None:
        """The uploader's segment latencies (an insertion-ordered dict that only grows)."""
        self._latencies = latencies

    # ProgressSink
    def report(self, event: str, status: dict) -> None:
        with self._lock:
            self._status.update(status)
            self._take_latencies()

    def _take_latencies(self) -> None:
        if self._latencies is None:
            return
        for _ in range(3):  # the uploader's thread may add one while we copy
            try:
                values = list(self._latencies.values())
                break
            except RuntimeError:
                continue
        else:
            return
        for seconds in values[self._latencies_seen:]:
            self.upload_seconds.observe(seconds)
        self._latencies_seen = len(values)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._status)

    def serve(self, port: int, addr: str = "0.0.0.0"):
        """Serve /metrics from a daemon thread; returns the server."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server


def _counter(name: str, doc: str, value: float | None):
    if value is not None:
        yield CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float | None):
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=value)


class _FromStatus:
    """Metrics computed at scrape time from the latest report."""

    def __init__(self, metrics: RecorderMetrics):
        self.metrics = metrics

    def collect(self):
        s = self.metrics.snapshot()
        participants = s.get("participants") or []
        upload = s.get("upload") or {}
        spool = s.get("spool") or {}
        composite = s.get("composite") or {}
        room = s.get("room") or {}
        yield from _gauge("reel_recorder_participants_active", "Participants being recorded now.",
                          s.get("activeParticipants", 0 if "participants" in s else None))
        yield from _gauge("reel_recorder_participants_recorded", "Participants recorded so far (joined at least once).",
                          sum(1 for p in participants if p.get("joinedAt")) if "participants" in s else None)
        yield from _gauge("reel_recorder_participants_skipped", "Participants with a stream that cannot be recorded.",
                          sum(1 for p in participants if p.get("skipped")) if "participants" in s else None)
        yield from _counter("reel_recorder_recorded_bytes", "Bytes of segments recorded.", upload.get("recordedBytes"))
        yield from _counter("reel_recorder_stored_bytes", "Bytes of segments stored (primary or backup).",
                            upload.get("storedBytes"))
        yield from _counter("reel_recorder_segments", "Segments recorded.", upload.get("segments"))
        yield from _gauge("reel_recorder_segments_pending", "Segments recorded but not stored yet.",
                          upload.get("pendingSegments"))
        yield from _gauge("reel_recorder_spool_used_bytes", "Bytes in the spool (segments not stored yet).",
                          spool.get("usedBytes"))
        yield from _gauge("reel_recorder_spool_limit_bytes", "The spool's size limit.", spool.get("limitBytes"))
        yield from _counter("reel_recorder_spool_dropped_segments", "Segments not recorded because the spool was full.",
                            spool.get("droppedSegments"))
        yield from _counter("reel_recorder_composite_frames", "Composite pictures composed and encoded.",
                            composite.get("frames"))
        yield from _counter("reel_recorder_composite_frames_dropped",
                            "Composite pictures dropped because the encoder could not keep up.",
                            composite.get("droppedFrames"))
        yield from _counter("reel_recorder_composite_pictures_late",
                            "Participants' pictures that reached the composite after the picture of their time.",
                            composite.get("latePictures"))
        yield from _counter("reel_recorder_room_reconnects", "Times the Janus connection was regained after a loss.",
                            room.get("reconnects"))
        for key, (name, doc) in PARTICIPANT_COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=["participant"])
            for p in participants:
                if p.get(key) is not None:
                    family.add_metric([str(p.get("id"))], p[key])
            yield family
        if s.get("recordingId"):
            info = GaugeMetricFamily("reel_recorder_recording_info", "The recording this recorder writes.",
                                     labels=["recording_id", "phase"])
            info.add_metric([s["recordingId"], str(s.get("phase") or "")], 1)
            yield info
