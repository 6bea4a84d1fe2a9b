"""The recorder pod, as the operator sees it: ``pod_view`` reads a pod (and its Events) into a ``PodView``;
``judge_pod`` turns it into a ``Verdict`` (nothing to do, the recorder started, or the session fails with a
reason and a message a user can act on); ``termination_summary`` reads what the recorder wrote in its
termination log. Pure: no API calls.

status.py holds the session's side (phases, conditions, status patches) and the Kubernetes strings both read;
interruptions.py decides what a lost recorder means for its session.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reel_api import TERMINAL_PHASES, ConditionReason, ConditionStatus, FailureReason, Phase, StopReason

from .podspec import CONTAINER, RESTART_ANNOTATION, VOLUME_FIELDS
from .status import (
    DISRUPTION_TARGET,
    FAILED_MOUNT,
    KILLED_EXIT_CODES,
    OOM_KILLED,
    POD_FAILED,
    POD_PENDING,
    POD_READY,
    POD_RUNNING,
    POD_SCHEDULED,
    UNSCHEDULABLE,
    WARNING,
    is_terminal,
    parse_time,
    sigkill_hint,
)


@dataclass(frozen=True)
class PodView:
    name: str
    phase: str | None = None  # Pending | Running | Succeeded | Failed | Unknown
    deleting: bool = False
    gone: bool = False  # the watch said DELETED
    created: datetime | None = None
    image: str | None = None
    running: bool = False  # the container has started (running or terminated after running)
    waiting_reason: str | None = None
    waiting_message: str | None = None
    terminated: Mapping[str, Any] | None = None  # exitCode, reason, message
    unschedulable: str | None = None  # the scheduler's message
    pod_reason: str | None = None  # status.reason (Evicted, DeadlineExceeded, ...)
    pod_message: str | None = None
    node: str | None = None  # spec.nodeName
    disruption: str | None = None  # the reason of a True DisruptionTarget condition (EvictionByEvictionAPI, ...)
    ready: bool | None = None  # the Ready condition (None: not reported)
    restart: int = 0  # the pod's restart number (annotation reel.dev/restart): the current pod has status.restarts



def _restart_number(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def pod_view(pod: Mapping[str, Any], *, gone: bool = False) -> PodView:
    """Read the fields that matter from a Pod (a dict in the API's camelCase form)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    cs = next((c for c in status.get("containerStatuses") or [] if c.get("name") == CONTAINER), None)
    state = (cs or {}).get("state") or {}
    last = (cs or {}).get("lastState") or {}
    terminated = state.get("terminated") or last.get("terminated")
    waiting = state.get("waiting") or {}
    unschedulable = disruption = ready = None
    for cond in status.get("conditions") or []:
        if cond.get("type") == POD_SCHEDULED and cond.get("status") == ConditionStatus.FALSE and \
                cond.get("reason") == UNSCHEDULABLE:
            unschedulable = cond.get("message") or "no node can run the pod"
        elif cond.get("type") == DISRUPTION_TARGET and cond.get("status") == ConditionStatus.TRUE:
            disruption = cond.get("reason") or DISRUPTION_TARGET
        elif cond.get("type") == POD_READY:
            ready = cond.get("status") == ConditionStatus.TRUE
    return PodView(
        name=meta.get("name", ""),
        phase=status.get("phase"),
        deleting=bool(meta.get("deletionTimestamp")),
        gone=gone,
        created=parse_time(meta.get("creationTimestamp")),
        image=containers[0].get("image"),
        running="running" in state or terminated is not None,
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        terminated=terminated,
        unschedulable=unschedulable,
        pod_reason=status.get("reason"),
        pod_message=status.get("message"),
        node=(pod.get("spec") or {}).get("nodeName"),
        disruption=disruption,
        ready=ready,
        restart=_restart_number((meta.get("annotations") or {}).get(RESTART_ANNOTATION)),
    )


def of_lost_recorder(view: PodView, status: Mapping[str, Any]) -> bool:
    """The pod of a recorder that was lost and is replaced (or being replaced): its restart number is below the
    session's ``status.restarts``, so it is not the session's current pod. Pure."""
    return view.restart < (status.get("restarts") or 0)


@dataclass(frozen=True)
class PodRef:
    """A recorder pod as the pod watch last showed it (main.py's index ``recorder_pod_refs``): its uid (the
    precondition of a deletion sent without reading the pod first), the uid of the session that controls it, and
    its view. It may be older than the pod: whoever acts on it lets the API server's uid precondition refuse a
    pod that is not this one any more."""

    uid: str | None
    owner_uid: str
    view: PodView

    def runs_for(self, session_uid: str | None, restarts: int) -> bool:
        """The current recorder of that session (restart number ``restarts``) runs in this pod: started, not
        exited, not being deleted."""
        v = self.view
        return self.owner_uid == session_uid and v.restart == restarts and v.running and v.terminated is None \
            and not v.deleting


@dataclass(frozen=True)
class SessionHint:
    """What a pod event needs to know of its session to see that it changes nothing (``uneventful``), as the
    operator last saw the session (main.py keeps one per session in a kopf index, from the session watch)."""

    uid: str | None
    phase: str | None
    restarts: int = 0
    pod: str | None = None  # status.pod
    stopping: bool = False  # spec.stop
    deleting: bool = False  # metadata.deletionTimestamp
    interrupted: bool = False  # status.interruption


def session_hint(body: Mapping[str, Any]) -> SessionHint:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    return SessionHint(uid=meta.get("uid"), phase=status.get("phase"), restarts=status.get("restarts") or 0,
                       pod=status.get("pod"), stopping=bool((body.get("spec") or {}).get("stop")),
                       deleting=bool(meta.get("deletionTimestamp")), interrupted=bool(status.get("interruption")))


def uneventful(view: PodView, hint: SessionHint | None, owner_uid: str | None, *, started_here: bool = False,
               stopped_here: bool = False) -> bool:
    """True when this pod event cannot change its session, so the handler need not read the session (nor the
    pod's Events): the pod is waiting to be scheduled or started and nothing is reported about it yet (no
    waiting reason, not unschedulable: the start timer watches the time), or its recorder runs and the session
    already names the pod. Anything else (an exit, a deletion, a waiting reason, a disruption, a pod of another
    restart number or another session, a session stopping, deleted, final, interrupted, or not seen yet) is
    judged with the session read fresh. ``hint`` may be older than the session: it only ever lets events
    through, and what a newer session state would do with a quiet pod is done by the session's own handlers
    (a final phase removes the pod, a stop or a deletion deletes it). Pure.

    Two more that this process knows of: ``started_here``, it is starting the session or started it (the first
    pod; its Starting write names the pod, and the hint may not show that write yet), so a first pod that runs
    changes nothing; ``stopped_here``, it deleted the pod for the stop the hint shows (stop.py), so that deletion
    of the running recorder changes nothing: its exit or the pod's removal is the next news."""
    if hint is None or hint.uid != owner_uid or view.gone or view.terminated is not None:
        return False
    if hint.deleting or hint.interrupted or is_terminal(hint.phase) or view.restart != hint.restarts:
        return False
    if view.disruption or view.pod_reason or view.waiting_reason or view.unschedulable:
        return False
    if view.deleting:
        return stopped_here and hint.stopping and view.running and view.phase == POD_RUNNING
    if hint.stopping:
        return False
    if view.running:
        named = hint.pod == view.name or (started_here and hint.pod is None and view.restart == 0
                                          and hint.phase in (None, Phase.PENDING, Phase.STARTING))
        return view.phase == POD_RUNNING and named
    return view.phase in (None, POD_PENDING)


@dataclass(frozen=True)
class Verdict:
    """What the pod tells about the session: a phase to set, with reasons and a message."""

    phase: str
    stop_reason: str | None = None
    reason: str | None = None  # the detailed CamelCase reason for the conditions
    message: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # recordingId, manifest from the termination log

    @property
    def terminal(self) -> bool:
        return is_terminal(self.phase)


def _failed(reason: str, message: str) -> Verdict:
    return Verdict(Phase.FAILED, StopReason.ERROR, reason, message)


#: Kubelet waiting reasons after which the container will not start by itself.
IMAGE_ERRORS = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CONFIG_ERRORS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


def secret_problem(text: str, namespace: str) -> str | None:
    """A kubelet message about a missing Secret/key, turned into an instruction; None if it is about else."""
    field_name = next((f for v, f in VOLUME_FIELDS.items() if f'"{v}"' in text), None)
    where = f" ({field_name})" if field_name else ""
    if "not found" in text and "secret" in text.lower():
        return (f"{text.strip()}{where}: create the Secret in namespace {namespace} or fix the reference, "
                "then create a new RecordingSession")
    if "couldn't find key" in text:
        return (f"{text.strip()}{where}: add the key to the Secret (storage credentials need "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), then create a new RecordingSession")
    return None


def termination_summary(terminated: Mapping[str, Any]) -> dict[str, Any] | None:
    """The recorder's final JSON (--termination-log), or None when the message is not ours."""
    text = (terminated.get("message") or "").strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("phase") else None


def judge_pod(view: PodView, *, namespace: str, now: datetime, start_timeout: float,
              stopping: bool = False, deleting: bool = False, events: Iterable[Mapping[str, Any]] = (),
              grace_seconds: int | None = None) -> Verdict | None:
    """Decide from the pod alone: None means "nothing to add" (the recorder reports for itself)."""
    if view.terminated is not None:
        return _judge_terminated(view, stopping=stopping, deleting=deleting, grace_seconds=grace_seconds)

    # Could not start: problems the kubelet will not solve by itself.
    reason, message = view.waiting_reason, (view.waiting_message or "").strip()
    if reason in IMAGE_ERRORS:
        return _failed(FailureReason.IMAGE_PULL_FAILED,
                       f"cannot pull the recorder image {view.image}: {message or reason}. Check the "
                       "operator's REEL_RECORDER_IMAGE (chart: recorder.image) and image pull secrets")
    if reason in CONFIG_ERRORS:
        hint = secret_problem(message, namespace)
        if hint:
            return _failed(FailureReason.SECRET_NOT_FOUND, hint)
        return _failed(FailureReason.CONTAINER_CONFIG_ERROR,
                       f"the recorder container cannot be created: {message or reason}")
    for ev in events:  # kubelet events on the pod, e.g. FailedMount of a Secret volume
        if ev.get("type") == WARNING and ev.get("reason") == FAILED_MOUNT:
            hint = secret_problem(ev.get("message") or "", namespace)
            if hint:
                return _failed(FailureReason.SECRET_NOT_FOUND, hint)
    if view.phase == POD_FAILED and not view.running:  # Kubernetes' reason (e.g. Evicted) when it gives one
        return _failed(view.pod_reason or FailureReason.POD_FAILED,
                       f"the recorder pod failed before starting: {view.pod_message or view.pod_reason}")

    if view.gone:
        stop_reason = StopReason.DELETED if deleting else StopReason.REQUESTED
        if (stopping or deleting) and not view.running:
            return Verdict(Phase.COMPLETED, stop_reason, ConditionReason.STOPPED_BEFORE_START,
                           "stopped before the recorder started: nothing recorded")
        if stopping or deleting:
            return Verdict(Phase.COMPLETED, stop_reason, ConditionReason.RECORDER_GONE,
                           "the recorder pod was removed before it reported its result")
        return _failed(FailureReason.RECORDER_POD_DELETED,
                       f"the recorder pod {view.name} was deleted before the recording ended; create a new "
                       "RecordingSession to record again")

    if not view.running and view.created is not None:
        waited = (now - view.created).total_seconds()
        if waited > start_timeout:
            if view.unschedulable:
                return _failed(FailureReason.UNSCHEDULABLE,
                               f"no node can run the recorder pod after {waited:.0f} s: {view.unschedulable}")
            return _failed(FailureReason.START_TIMEOUT,
                           f"the recorder pod did not start within {start_timeout:.0f} s "
                           f"(last state: {reason or view.phase}{': ' + message if message else ''})")
    return None


def _judge_terminated(view: PodView, *, stopping: bool, deleting: bool, grace_seconds: int | None) -> Verdict:
    term = view.terminated or {}
    summary = termination_summary(term)
    exit_code = term.get("exitCode")
    if summary is not None and summary.get("interrupted") and (stopping or deleting):
        # SIGTERM from elsewhere (a drain, ...) just before the session's own stop: what it had is stored
        extra = {k: summary[k] for k in ("recordingId", "manifest") if summary.get(k)}
        return Verdict(Phase.COMPLETED, StopReason.DELETED if deleting else StopReason.REQUESTED,
                       ConditionReason.INTERRUPTED, "the recorder was interrupted as the session was stopped: "
                       "what it had recorded is stored", extra)
    if summary is not None:
        phase = summary.get("phase")
        if phase not in TERMINAL_PHASES:
            phase = Phase.COMPLETED if exit_code == 0 else Phase.FAILED
        stop_reason = summary.get("stopReason") or (StopReason.ERROR if phase == Phase.FAILED else None)
        if deleting and stop_reason == StopReason.REQUESTED:
            stop_reason = StopReason.DELETED
        extra = {k: summary[k] for k in ("recordingId", "manifest") if summary.get(k)}
        return Verdict(phase, stop_reason, summary.get("reason") or stop_reason, summary.get("message") or None,
                       extra)
    detail = (term.get("message") or "").strip()
    tail = f": {detail[-500:]}" if detail else ""
    if term.get("reason") == OOM_KILLED:
        return _failed(FailureReason.OUT_OF_MEMORY,
                       "the recorder ran out of memory; raise its memory limit (annotation "
                       "reel.dev/recorder-resources or the operator's REEL_RECORDER_MEMORY_LIMIT)")
    if exit_code == 0:
        return Verdict(Phase.COMPLETED, StopReason.DELETED if deleting else None, Phase.COMPLETED, None)
    if (stopping or deleting) and exit_code in KILLED_EXIT_CODES:
        grace = f" ({grace_seconds} s)" if grace_seconds else ""
        return _failed(FailureReason.UPLOAD_TIMEOUT,
                       "the recorder was killed before it finished uploading: it needed more than the termination "
                       f"grace period{grace}; raise REEL_TERMINATION_GRACE_SECONDS")
    return _failed(FailureReason.RECORDER_ERROR,
                   f"the recorder exited with code {exit_code} ({term.get('reason')}){tail}"
                   f"{sigkill_hint(exit_code, term.get('reason'))}")
