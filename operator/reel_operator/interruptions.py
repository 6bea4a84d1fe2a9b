"""Interruptions: a recorder lost while its session was not stopped, and the replacement that continues it.

Pure decisions, called by the pod and session handlers (handlers/pods.py, handlers/session_events.py,
handlers/create.py): whether a pod's end is such a loss and why (``judge_interruption``; ``status.judge_pod``
decides everything else; ``liveness_failures`` reads the one cause only the pod's Events show: a failed
liveness probe), how long to wait before replacement number n (``restart_delay``), what the replacement is
told (``resume_request``: REEL_RESUME), and when the gap is over (``interruption_over``).
The operator writes status.restarts and status.interruption; the recorder writes recorderStartedAt
(docs/operator.md has the decision table).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reel_api import TERMINAL_PHASES, InterruptionReason, Phase
from reel_api.models import DEFAULT_MAX_RESTARTS, DEFAULT_RECORDER_SILENCE_SECONDS

from .podspec import LIVENESS_PROBE
from .podstate import PodView, termination_summary
from .status import (
    DELETION_BY_POD_GC,
    DELETION_BY_TAINT_MANAGER,
    KILLED_EXIT_CODES,
    OOM_KILLED,
    POD_EVICTED,
    POD_FAILED,
    POD_NODE_LOST,
    POD_UNKNOWN,
    PREEMPTION_BY_SCHEDULER,
    is_terminal,
    now_utc,
    parse_time,
    rfc3339,
    sigkill_hint,
)

RESTART_BACKOFF_SECONDS, RESTART_BACKOFF_MAX_SECONDS = 2.0, 30.0
MANIFEST_FILE = "manifest.json"  # the last part of status.manifest
#: The kubelet's Event of a failed probe (Kubernetes' strings): reason Unhealthy, message "Liveness probe failed: ...".
UNHEALTHY, LIVENESS_FAILED = "Unhealthy", "Liveness probe failed"
#: Failures in a row that make the kubelet stop the recorder (podspec.LIVENESS_PROBE).
LIVENESS_FAILURE_THRESHOLD: int = LIVENESS_PROBE["failureThreshold"]


@dataclass(frozen=True)
class Interruption:
    """Why a recorder was lost (an InterruptionReason and a sentence), and what its final JSON said."""

    reason: str
    message: str
    extra: Mapping[str, Any] = field(default_factory=dict)  # recordingId, manifest from the termination log


def _node_lost(view: PodView) -> bool:
    """The pod's node is gone or unreachable: its kubelet will never report the recorder's end."""
    return (view.phase == POD_UNKNOWN or view.pod_reason == POD_NODE_LOST or view.disruption == DELETION_BY_POD_GC
            or (view.disruption == DELETION_BY_TAINT_MANAGER and view.deleting and view.ready is False))


def _cause(view: PodView) -> tuple[str, str] | None:
    """What Kubernetes did to the pod (node lost, preempted, evicted, deleted), None if nothing."""
    name = view.name
    if _node_lost(view):
        on = f" {view.node}" if view.node else ""
        return InterruptionReason.NODE_LOST, f"the node{on} of the recorder pod {name} was lost"
    if view.disruption == PREEMPTION_BY_SCHEDULER:
        return InterruptionReason.PREEMPTED, f"the recorder pod {name} was preempted for a pod of higher priority"
    if view.disruption or view.pod_reason == POD_EVICTED:
        detail = (view.pod_message or view.disruption or "").strip()
        return InterruptionReason.EVICTED, f"the recorder pod {name} was evicted{' (' + detail + ')' if detail else ''}"
    if view.gone or view.deleting:
        return InterruptionReason.POD_DELETED, f"the recorder pod {name} was deleted"
    return None


def liveness_failures(events: Iterable[Mapping[str, Any]], uid: str | None) -> int:
    """How often the kubelet's liveness probe of the pod ``uid`` failed, from the pod's ``Unhealthy`` Events (the
    kubelet counts repeats of one message in ``count``). Events of an earlier pod of the same name do not count."""
    total = 0
    for ev in events:
        if (ev.get("involvedObject") or {}).get("uid") == uid and ev.get("reason") == UNHEALTHY and \
                (ev.get("message") or "").startswith(LIVENESS_FAILED):
            total += ev.get("count") or 1
    return total


def may_be_unresponsive(view: PodView) -> bool:
    """An end the kubelet's liveness probe may have caused (a SIGTERM the recorder handled, or a kill) with no
    cause the pod itself shows: only then are its Events worth reading (``liveness_failures``)."""
    term = view.terminated
    if term is None or term.get("reason") == OOM_KILLED or _cause(view) is not None:
        return False
    summary = termination_summary(term)
    if summary is not None:
        return bool(summary.get("interrupted"))
    return term.get("exitCode") in KILLED_EXIT_CODES


def judge_interruption(view: PodView, *, phase: str | None, stopping: bool = False,
                       deleting: bool = False, liveness_failures: int = 0) -> Interruption | None:
    """Is this the loss of a recorder whose recording must go on (a replacement continues it)?

    Yes when the session is not final, not stopping (spec.stop) and not being deleted, and the pod: is gone
    (deleted, force-deleted, removed with its node), exited with the recorder's ``interrupted`` JSON (SIGTERM from
    a drain, an eviction, ``kubectl delete pod``, a failed liveness probe: exit code 3), was OOM-killed, exited
    non-zero or was killed without a final report, runs on a lost node, or was evicted before it started. No
    (None: ``judge_pod`` decides, as before) when the recorder reported a final phase or exited 0, is still
    running (a pod being deleted gracefully: its recorder is storing what it has), or cannot start (image,
    Secret, scheduling).

    ``liveness_failures`` (from the pod's Events): with restartPolicy Never a failed liveness probe stops the pod
    like a deletion that leaves no trace on it (SIGTERM, then SIGKILL after the grace period; container reason
    ``Error``, exit 3, 137 or 143). Without another cause, that many failures (the probe's failureThreshold)
    make such an end ``RecorderUnresponsive`` instead of ``Terminated`` / ``RecorderCrashed``."""
    if is_terminal(phase) or stopping or deleting:
        return None
    term = view.terminated
    if term is not None:
        summary = termination_summary(term)
        extra = {k: summary[k] for k in ("recordingId", "manifest") if summary and summary.get(k)}
        cause = _cause(view)
        if cause is None and liveness_failures >= LIVENESS_FAILURE_THRESHOLD and may_be_unresponsive(view):
            return Interruption(InterruptionReason.RECORDER_UNRESPONSIVE,
                                f"the kubelet stopped the recorder of pod {view.name}: its liveness probe failed "
                                f"{liveness_failures} times (its event loop did not run, or the process was "
                                f"frozen); it exited with code {term.get('exitCode')}"
                                + ("; it stored what it had recorded" if summary else ""), extra)
        if summary is not None and summary.get("interrupted"):
            reason, what = cause or (InterruptionReason.TERMINATED,
                                     f"the recorder of pod {view.name} got SIGTERM although its session was not "
                                     "stopped")
            return Interruption(reason, f"{what}; it stored what it had recorded", extra)
        if summary is not None and summary.get("phase") in TERMINAL_PHASES:
            return None  # its own end (a failure included): final
        exit_code = term.get("exitCode")
        if term.get("reason") == OOM_KILLED:
            return Interruption(InterruptionReason.OUT_OF_MEMORY,
                                "the recorder ran out of memory (OOMKilled); if it recurs, raise its memory limit "
                                "(annotation reel.dev/recorder-resources or REEL_RECORDER_MEMORY_LIMIT)", extra)
        if exit_code == 0:
            return None
        if cause is not None and exit_code in KILLED_EXIT_CODES:
            return Interruption(cause[0], f"{cause[1]}; the recorder was killed (exit code {exit_code})", extra)
        detail = (term.get("message") or "").strip() if summary is None else ""
        tail = f": {detail[-300:]}" if detail else ""
        return Interruption(InterruptionReason.RECORDER_CRASHED,
                            f"the recorder exited with code {exit_code} ({term.get('reason')}) without a final "
                            f"report{tail}{sigkill_hint(exit_code, term.get('reason'))}", extra)
    if view.gone or _node_lost(view):
        reason, what = _cause(view) or (InterruptionReason.POD_DELETED, f"the recorder pod {view.name} was deleted")
        return Interruption(reason, what)
    if view.phase == POD_FAILED and not view.running and (view.disruption or view.pod_reason == POD_EVICTED):
        reason, what = _cause(view) or (InterruptionReason.EVICTED, f"the recorder pod {view.name} was evicted")
        return Interruption(reason, f"{what} before its recorder started")
    return None


def silence(status: Mapping[str, Any], spec: Mapping[str, Any] | None, now: datetime) -> Interruption | None:
    """A recording recorder that has not reported for spec.recording.recorderSilenceSeconds (hung, frozen, cut
    off from the API server) is lost like a killed one: its pod goes, a replacement continues. Only while
    Recording/Paused and not already in a gap; a recorder that never sent a heartbeat is not judged."""
    if status.get("phase") not in (Phase.RECORDING, Phase.PAUSED) or status.get("interruption"):
        return None
    last = parse_time(status.get("heartbeatAt"))
    if last is None:
        return None
    value = ((spec or {}).get("recording") or {}).get("recorderSilenceSeconds")
    limit = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else \
        DEFAULT_RECORDER_SILENCE_SECONDS
    silent = (now - last).total_seconds()
    if silent < limit:
        return None
    return Interruption(InterruptionReason.RECORDER_SILENT,
                        f"the recorder reported nothing for {silent:.0f} s (spec.recording.recorderSilenceSeconds: "
                        f"{limit}): it is treated as lost")


def max_restarts(spec: Mapping[str, Any] | None) -> int:
    """spec.recording.maxRestarts of a session (the API's default when absent)."""
    value = ((spec or {}).get("recording") or {}).get("maxRestarts")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return DEFAULT_MAX_RESTARTS
    return value


def restart_delay(restarts: int) -> float:
    """Seconds between seeing the recorder lost and starting replacement number ``restarts`` (1, 2, ...)."""
    return min(RESTART_BACKOFF_MAX_SECONDS, RESTART_BACKOFF_SECONDS * 2 ** min(max(restarts - 1, 0), 16))


def interruption_record(cause: Interruption, *, restarts: int, limit: int, now: datetime) -> dict[str, Any]:
    """status.interruption for replacement number ``restarts`` (of at most ``limit``)."""
    return {"since": rfc3339(now), "reason": cause.reason,
            "message": f"{cause.message}; resuming ({restarts} of {limit})"}


def too_many_restarts_message(cause: Interruption, *, restarts: int, limit: int) -> str:
    return (f"the recorder was lost again after {restarts} restart(s), the most spec.recording.maxRestarts "
            f"({limit}) allows: {cause.message}. What was recorded until then is stored")


def resume_request(status: Mapping[str, Any], *, now: datetime | None = None) -> dict[str, Any] | None:
    """REEL_RESUME for the replacement of a lost recorder: the same recordingId, the prefix of its manifest
    (status.manifest without "manifest.json"), why and when it was lost. None when the lost recorder had not
    reported a recording (no recordingId or manifest): the replacement starts afresh, nothing was recorded."""
    recording_id, manifest = status.get("recordingId"), status.get("manifest")
    if not recording_id or not manifest:
        return None
    if manifest.endswith(MANIFEST_FILE):
        prefix = manifest[: -len(MANIFEST_FILE)]
    else:
        head, sep, _ = manifest.rpartition("/")
        prefix = head + sep
    interruption = status.get("interruption") or {}
    return {"recordingId": recording_id, "prefix": prefix,
            "reason": interruption.get("reason") or InterruptionReason.RECORDER_CRASHED,
            "interruptedAt": interruption.get("since") or rfc3339(now or now_utc())}


def interruption_over(status: Mapping[str, Any]) -> bool:
    """The replacement recorder has taken over: it reports Recording/Paused and started after the loss."""
    interruption = status.get("interruption")
    if not interruption or status.get("phase") not in (Phase.RECORDING, Phase.PAUSED):
        return False
    started, since = parse_time(status.get("recorderStartedAt")), parse_time(interruption.get("since"))
    return started is not None and since is not None and started > since


def stopped_while_interrupted(status: Mapping[str, Any]) -> str | None:
    """The message of a session stopped (or deleted) while its lost recorder was being replaced; None if not."""
    interruption = status.get("interruption")
    if not interruption:
        return None
    return (f"stopped while a lost recorder was being replaced ({interruption.get('reason')}): the recording ends "
            "where that recorder stopped")
