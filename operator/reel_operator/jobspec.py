"""Pure builder of the backfill Job of a BackedUp session: ``reel-recorder backfill`` from the recorder image,
reading the stores the way the recorder pod does (the same Secret volumes, local directories and REEL_SESSION,
podspec.storage_volumes), owned by the session (deleted with it).

The Job needs no Kubernetes API access: it runs without a ServiceAccount token, reports through its exit status and
termination message (the JSON of reel_recorder/backfill.py), which the operator reads (handlers/backfill.py). Copies
stream through a temporary file in an emptyDir (``WORK_DIR``, no size limit: the largest object, an MP4, must fit),
so its memory stays small whatever the objects' size (``RESOURCES``).

Retries: the program itself retries store errors with backoff until ``--until``; the Job retries a crashed pod
(``backoffLimit``), but not the program's own verdicts (exit 1: out of time, 2: gave up; ``podFailurePolicy``);
``activeDeadlineSeconds`` ends it a minute after ``--until`` whatever happens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reel_api import RecordingSession

from .names import LABEL_COMPONENT, LABEL_MANAGED_BY, backfill_job_name, labels, object_meta
from .podspec import (
    TERMINATION_LOG,
    TMP_DIR,
    container_security,
    pod_security,
    scheduling,
    session_manifest,
    storage_volumes,
)
from .settings import Settings

CONTAINER = "backfill"
WORK_DIR = "/var/spool/reel"
COMPONENT = "backfill"
#: A copy streams 1 MiB at a time: the memory does not grow with the objects.
RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
BACKOFF_LIMIT = 4  # crashed pods (OOM kill, node lost) retried by the Job controller, with its own backoff
EXIT_OUT_OF_TIME, EXIT_GAVE_UP = 1, 2  # reel_recorder/backfill.py: verdicts, not crashes (never retried)
DEADLINE_GRACE_SECONDS = 60  # activeDeadlineSeconds = until - now + this
TTL_SECONDS = 3600  # a finished Job the operator did not delete (it does) goes after an hour


def rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_backfill_job(session: RecordingSession, settings: Settings, *, manifest: str, until: datetime,
                       now: datetime, attempt: int = 1) -> dict[str, Any]:
    """The backfill Job: copy the recording whose manifest key is ``manifest`` (status.manifest) into the primary
    store, giving up at ``until``. ``attempt``: the Job's number (annotation, for people)."""
    name = backfill_job_name(session.metadata.name)
    store_args, volumes, mounts = storage_volumes(session, settings)
    args = ["backfill", "--manifest", manifest, "--until", rfc3339(until), "--workdir", WORK_DIR,
            "--termination-log", TERMINATION_LOG, "--log-level", settings.recorder_log_level, *store_args]
    volumes = [{"name": "work", "emptyDir": {}}, {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, *volumes]
    mounts = [{"name": "work", "mountPath": WORK_DIR}, {"name": "tmp", "mountPath": TMP_DIR}, *mounts]
    uid = settings.recorder_uid
    pod_labels = {k: v for k, v in labels(session).items() if k != LABEL_MANAGED_BY}  # not a recorder pod to kopf
    pod_labels[LABEL_COMPONENT] = COMPONENT
    container = {
        "name": CONTAINER,
        "image": settings.recorder_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(settings.recorder_command),
        "args": args,
        "env": [
            {"name": "REEL_SESSION", "value": session_manifest(session)},
            {"name": "HOME", "value": TMP_DIR},
        ],
        "resources": {k: dict(v) for k, v in RESOURCES.items()},
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security(uid),
    }
    remaining = max(0, int((until - now).total_seconds()))
    meta = object_meta(session, name, annotations={"reel.dev/backfill-attempt": str(attempt)})
    meta["labels"] = {**meta["labels"], LABEL_COMPONENT: COMPONENT}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": remaining + DEADLINE_GRACE_SECONDS,
            "ttlSecondsAfterFinished": TTL_SECONDS,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                      "values": [EXIT_OUT_OF_TIME, EXIT_GAVE_UP]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,  # no API access: it reports by its termination message
                    "enableServiceLinks": False,
                    "securityContext": pod_security(uid),
                    "containers": [container],
                    "volumes": volumes,
                    **scheduling(settings),
                },
            },
        },
    }
