"""After a BackedUp end: the backfill Job that moves the backup into the primary store, until Completed.

A timer (main.py, every ``INTERVAL`` s) calls :func:`check` while a session is ``BackedUp`` and its backfill has not
given up. It keeps ``status.backfill`` (startedAt, job, attempts; then completedAt or gaveUpAt + reason):

- no backfill yet: the Job (jobspec.py) is created, owned by the session, with ``--until`` = startedAt +
  ``spec.backupStorage.backfillTimeoutSeconds``; a Normal Event ``Backfilling``;
- the Job succeeded: its termination message (the program's JSON: objects, bytes, backupDeleted) goes into
  status.backfill with ``completedAt``, and the phase becomes ``Completed`` (the one move out of a final phase,
  vocabulary.PHASE_AFTER_BACKFILL); the condition BackedUp stays True with reason ``BackupMoved``; the Job is
  deleted;
- the Job failed: with the program's own verdict ``IntegrityMismatch``/``BackfillFailed`` the backfill gives up at
  once; after the deadline with ``BackfillTimeout``; before it (its pods kept crashing) a new Job is started
  ``RETRY_SECONDS`` after the failure;
- a Job still running a minute past the deadline (``jobspec.DEADLINE_GRACE_SECONDS``) is deleted: ``BackfillTimeout``.

Giving up leaves the phase ``BackedUp`` (everything is stored, some of it only in the backup, which the Job leaves
intact unless it completed), sets the BackedUp condition's reason to the FailureReason and posts a Warning Event.
Every status write goes through ``update_status`` (resourceVersion-guarded, recomputed on conflict).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from reel_api import ConditionReason, ConditionStatus, FailureReason, Phase, SessionError

from .. import jobspec, podstate
from .. import status as st
from ..names import backfill_job_name, owned_by
from .common import Context, parse, post_event, update_status

INTERVAL = 5.0
RETRY_SECONDS = 30.0  # after a Job whose pods kept crashing, the next one


def wanted(status: Mapping[str, Any]) -> bool:
    """Whether the timer should look at this session (main.py's ``when``)."""
    return status.get("phase") == Phase.BACKED_UP and not (status.get("backfill") or {}).get("gaveUpAt")


def check(ctx: Context, body: Mapping[str, Any], *, logger=None) -> None:
    meta = body["metadata"]
    status = body.get("status") or {}
    if not wanted(status) or meta.get("deletionTimestamp"):
        return
    try:
        session = parse(body)
    except SessionError:
        return
    backup = session.spec.backup_storage
    if backup is None:
        return
    now = st.now_utc()
    backfill = dict(status.get("backfill") or {})
    if not backfill.get("startedAt"):
        problem = cannot_run(session, ctx.settings.local_storage_claim, status.get("manifest"))
        if problem:
            give_up(ctx, body, FailureReason.BACKFILL_FAILED, problem, now)
            return
        start_job(ctx, body, session, backfill, now, attempt=1)
        return
    until = (st.parse_time(backfill["startedAt"]) or now) + timedelta(seconds=backup.backfill_timeout_seconds)
    name = backfill_job_name(meta["name"])
    job = ctx.kube.get_job(meta["namespace"], name)
    if job is None or not owned_by(job, meta):
        if now >= until:
            give_up(ctx, body, FailureReason.BACKFILL_TIMEOUT,
                    f"not done within backfillTimeoutSeconds ({backup.backfill_timeout_seconds} s)", now)
        elif job is None:
            start_job(ctx, body, session, backfill, now, attempt=int(backfill.get("attempts") or 0) + 1, until=until)
        return
    outcome, finished_at = job_outcome(job)
    if outcome is None:
        if now >= until + timedelta(seconds=jobspec.DEADLINE_GRACE_SECONDS):
            ctx.kube.delete_job(meta["namespace"], name, uid=job["metadata"].get("uid"))
            give_up(ctx, body, FailureReason.BACKFILL_TIMEOUT,
                    f"Job {name} still running after backfillTimeoutSeconds ({backup.backfill_timeout_seconds} s)",
                    now)
        return
    summary = job_summary(ctx, meta["namespace"], name)
    if outcome == "succeeded":
        complete(ctx, body, backfill, summary, now)
    elif summary.get("reason") in (FailureReason.INTEGRITY_MISMATCH, FailureReason.BACKFILL_FAILED):
        give_up(ctx, body, summary["reason"], summary.get("message") or "", now)
    elif now >= until:
        give_up(ctx, body, FailureReason.BACKFILL_TIMEOUT, summary.get("message") or
                f"not done within backfillTimeoutSeconds ({backup.backfill_timeout_seconds} s)", now)
    elif finished_at is not None and (now - finished_at).total_seconds() < RETRY_SECONDS:
        return  # the next Job after a pause
    if logger:
        logger.info("backfill Job %s: %s (%s)", name, outcome, summary.get("reason") or summary.get("phase"))
    ctx.kube.delete_job(meta["namespace"], name, uid=job["metadata"].get("uid"))  # done, or the next tick retries


def cannot_run(session, local_storage_claim: str, manifest: str | None) -> str | None:
    """Why no backfill Job can do anything for this session, or None."""
    if not manifest:
        return "the recorder reported no manifest: nothing says what to backfill"
    spec = session.spec
    if not local_storage_claim and any(s is not None and s.local for s in (spec.storage, spec.backup_storage)):
        return ("a local store on an emptyDir (no REEL_LOCAL_STORAGE_CLAIM) went with the recorder pod: "
                "a Job cannot reach it")
    return None


def start_job(ctx: Context, body: Mapping[str, Any], session, backfill: dict, now: datetime, *, attempt: int,
              until: datetime | None = None) -> None:
    started = st.parse_time(backfill.get("startedAt")) or now
    until = until or started + timedelta(seconds=session.spec.backup_storage.backfill_timeout_seconds)
    job, created = ctx.kube.create(jobspec.build_backfill_job(
        session, ctx.settings, manifest=body["status"]["manifest"], until=until, now=now, attempt=attempt))
    if not owned_by(job, body["metadata"]):
        return  # an earlier session's Job of the same name: garbage collection removes it; the next tick retries
    update_status(ctx, body, lambda status: {"backfill": {**(status.get("backfill") or {}),
                                                          "startedAt": st.rfc3339(started),
                                                          "job": job["metadata"]["name"], "attempts": attempt}},
                  fresh=False)
    if created:
        post_event(body, st.NORMAL, ConditionReason.BACKFILLING,
                   f"Job {job['metadata']['name']} (attempt {attempt}) copies what is only in the backup storage into "
                   f"the primary storage, until {jobspec.rfc3339(until)}")


def complete(ctx: Context, body: Mapping[str, Any], backfill: dict, summary: Mapping[str, Any], now: datetime) -> None:
    done = {**backfill, "completedAt": summary.get("completedAt") or st.rfc3339(now),
            "message": summary.get("message") or "every object is in the primary storage, verified"}
    for key in ("objects", "bytes", "backupDeleted"):
        if key in summary:
            done[key] = summary[key]
    message = f"backfilled at {done['completedAt']}: {done['message']}"
    update_status(ctx, body, {"phase": Phase.COMPLETED, "backfill": done, "message": message})


def give_up(ctx: Context, body: Mapping[str, Any], reason: str, message: str, now: datetime) -> None:
    text = f"{message}; the backup storage is left intact" if "intact" not in message else message
    patch = update_status(ctx, body, lambda status: {"backfill": {**(status.get("backfill") or {}),
                                                                  "gaveUpAt": st.rfc3339(now), "reason": reason,
                                                                  "message": text}})
    if patch:
        post_event(body, st.WARNING, reason, f"backfill gave up: {text}")


def job_outcome(job: Mapping[str, Any]) -> tuple[str | None, datetime | None]:
    """("succeeded" | "failed" | None while running, when it finished) from the Job's conditions."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != ConditionStatus.TRUE:
            continue
        if cond.get("type") == st.JOB_COMPLETE:
            return "succeeded", st.parse_time(cond.get("lastTransitionTime"))
        if cond.get("type") == st.JOB_FAILED:
            return "failed", st.parse_time(cond.get("lastTransitionTime"))
    return None, None


def job_summary(ctx: Context, namespace: str, name: str) -> dict[str, Any]:
    """The program's final JSON from the termination message of the Job's latest finished pod ({} if none)."""
    latest: tuple[str, dict[str, Any]] | None = None
    for pod in ctx.kube.job_pods(namespace, name):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if cs.get("name") != jobspec.CONTAINER or not term:
                continue
            summary = podstate.termination_summary(term)
            at = term.get("finishedAt") or ""
            if summary is not None and (latest is None or at >= latest[0]):
                latest = (at, summary)
    return latest[1] if latest else {}
