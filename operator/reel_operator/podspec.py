"""Pure builder of the recorder Pod of a RecordingSession (+ settings), as a plain dict: its container,
arguments, environment, volumes, resources and security context. Named ``reel-rec-<session>`` and owned by
the session (``names.py``); it runs as the session's ServiceAccount (``rbac.py``) or as one made ahead that the
session claims (``accounts.py``, ``as_account``).

A replacement of a lost recorder is the same pod with ``REEL_RESUME`` (what to continue) and the restart
number in its annotation ``reel.dev/restart``: the operator tells the current pod from the lost one by it.

Nothing here talks to the cluster; unit tests check every field.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from reel_api import Mode, RecordingSession

from . import resource_limits
from .names import BuildError, object_meta, object_name
from .settings import RESOURCES_ANNOTATION, Settings

CONTAINER = "recorder"
SPOOL_DIR = "/var/spool/reel"
TMP_DIR = "/tmp"
TERMINATION_LOG = "/dev/termination-log"
SECRETS_DIR = "/var/run/secrets/reel"
ROOM_SECRETS_DIR = f"{SECRETS_DIR}/room"
STORAGE_SECRETS_DIR = f"{SECRETS_DIR}/storage"
BACKUP_STORAGE_SECRETS_DIR = f"{SECRETS_DIR}/backup-storage"
STORAGE_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: The pod's restart number (status.restarts when it was created; "0" for the first recorder of a session).
RESTART_ANNOTATION = "reel.dev/restart"
GENERATION_ANNOTATION = "reel.dev/session-generation"
#: The cluster autoscaler must not remove a node to save money while it runs a recording.
SAFE_TO_EVICT_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict"
#: The replacement recorder's instructions (JSON: recordingId, prefix, reason, interruptedAt).
RESUME_ENV = "REEL_RESUME"
#: The recorder's liveness endpoint (reel_recorder/liveness.py): GET /healthz answers 200 while its event loop
#: turns, 503 once the loop has not run for 10 s; a frozen process does not answer at all.
LIVENESS_ENV, LIVENESS_PORT, LIVENESS_PORT_NAME, LIVENESS_PATH = "REEL_LIVENESS_PORT", 8086, "liveness", "/healthz"
#: Probed every 10 s (the first after 10 s: validating the session and starting take a few); 3 failures in a row,
#: a loop wedged for ~30-40 s, end the container. With restartPolicy Never the kubelet then stops the whole pod
#: the way a deletion does (SIGTERM, SIGKILL after the pod's terminationGracePeriodSeconds; a probe-level
#: grace period is not used on that path), and the operator replaces the recorder (interruptions.py:
#: RecorderUnresponsive, or RecorderSilent when the heartbeat check comes first).
LIVENESS_PROBE: dict[str, Any] = {
    "httpGet": {"path": LIVENESS_PATH, "port": LIVENESS_PORT_NAME},
    "initialDelaySeconds": 10,
    "periodSeconds": 10,
    "timeoutSeconds": 2,
    "failureThreshold": 3,
}
#: The recorder's Prometheus metrics (reel_recorder/metrics.py): GET /metrics, scraped from the pod (chart
#: metrics.recorderPodMonitor selects the port by name).
METRICS_ENV, METRICS_PORT, METRICS_PORT_NAME = "REEL_METRICS_PORT", 9102, "metrics"
#: The spool's sizeLimit, for the recorder: it stops recording new media before the kubelet would evict the pod.
SPOOL_LIMIT_ENV = "REEL_SPOOL_LIMIT"

#: Volume names; the status logic maps mount failures back to the spec field through them.
VOLUME_FIELDS = {
    "room-credentials": "spec.room.credentialsSecretRef",
    "storage-credentials": "spec.storage.credentialsSecretRef",
    "backup-storage-credentials": "spec.backupStorage.credentialsSecretRef",
}


def pod_generation(pod: Mapping[str, Any] | None) -> int | None:
    """The session's metadata.generation a recorder pod was built from (its GENERATION_ANNOTATION), if known."""
    value = (((pod or {}).get("metadata") or {}).get("annotations") or {}).get(GENERATION_ANNOTATION)
    return int(value) if isinstance(value, str) and value.isdigit() and int(value) > 0 else None


def session_manifest(session: RecordingSession) -> str:
    """The session as the recorder reads it (REEL_SESSION): JSON, defaults filled in, no status."""
    data = session.to_dict(status=False)
    meta = session.metadata
    data["metadata"] = {k: v for k, v in (("name", meta.name), ("namespace", meta.namespace),
                                          ("uid", meta.uid), ("generation", meta.generation)) if v is not None}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def resources(session: RecordingSession, settings: Settings) -> dict[str, dict[str, str]]:
    """The defaults from settings (a composite recording's own: it decodes, composes and encodes), overridden by
    the session's reel.dev/recorder-resources annotation within the maxima (``resource_limits``: no extended
    resources, no removed limits, nothing above ``settings.max_resources``); BuildError naming what is refused."""
    if session.spec.recording.mode == Mode.INDIVIDUAL:
        out = {"requests": dict(settings.requests), "limits": dict(settings.limits)}
    else:
        out = {"requests": dict(settings.composite_requests), "limits": dict(settings.composite_limits)}
    raw = session.metadata.annotations.get(RESOURCES_ANNOTATION)
    if raw:
        try:
            override = json.loads(raw)
        except ValueError as e:
            raise BuildError(f"annotation {RESOURCES_ANNOTATION} is not valid JSON: {e}") from None
        if not isinstance(override, Mapping) or set(override) - {"requests", "limits"}:
            raise BuildError(f'annotation {RESOURCES_ANNOTATION} must be a JSON object with "requests" '
                               f'and/or "limits", e.g. {{"limits": {{"memory": "1Gi"}}}}')
        for part, values in override.items():
            if not isinstance(values, Mapping) or not all(
                    isinstance(k, str) and (v is None or isinstance(v, str | int | float)) and
                    not isinstance(v, bool) for k, v in values.items()):
                raise BuildError(f'annotation {RESOURCES_ANNOTATION}: "{part}" must map resource names to '
                                   f'quantities, e.g. {{"memory": "1Gi"}}')
        problems = resource_limits.override_problems(override, out, settings.max_resources)
        if problems:
            raise BuildError(f"annotation {RESOURCES_ANNOTATION} refused: {'; '.join(problems)}")
        for part, values in override.items():
            for k, v in values.items():
                if v in ("", None):
                    out[part].pop(k, None)
                else:
                    out[part][k] = str(v)
    return {k: v for k, v in out.items() if v}


def _secret_volume(name: str, secret: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    source: dict[str, Any] = {"secretName": secret, "optional": False, "defaultMode": 0o440}
    if keys:  # the keys must exist: a missing one fails the mount (reported), not the recording later
        source["items"] = [{"key": k, "path": k} for k in keys]
    return {"name": name, "secret": source}


def storage_volumes(session: RecordingSession, settings: Settings) -> tuple[list[str], list[dict], list[dict]]:
    """The stores as the recorder reads them, for the recorder pod and the backfill Job (jobspec.py): the storage
    credentials as Secret volumes (``--storage-secrets``/``--backup-storage-secrets`` folders) and the directories
    of ``local`` stores (``REEL_LOCAL_STORAGE_CLAIM``'s PVC, else an emptyDir). -> (args, volumes, mounts)."""
    spec = session.spec
    args: list[str] = []
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for volume, store, directory, flag in (
            ("storage-credentials", spec.storage, STORAGE_SECRETS_DIR, "--storage-secrets"),
            ("backup-storage-credentials", spec.backup_storage, BACKUP_STORAGE_SECRETS_DIR,
             "--backup-storage-secrets")):
        if store is None or store.credentials_secret_ref is None:
            continue
        volumes.append(_secret_volume(volume, store.credentials_secret_ref.name, STORAGE_SECRET_KEYS))
        mounts.append({"name": volume, "mountPath": directory, "readOnly": True})
        args.extend([flag, directory])
    # Storage into a directory (spec.storage.local / spec.backupStorage.local): a PVC when configured.
    local_paths = [s.local.path for s in (spec.storage, spec.backup_storage) if s is not None and s.local]
    for i, path in enumerate(dict.fromkeys(local_paths)):
        volume = f"recordings-{i}"
        if settings.local_storage_claim:
            volumes.append({"name": volume,
                            "persistentVolumeClaim": {"claimName": settings.local_storage_claim}})
        else:
            volumes.append({"name": volume, "emptyDir": {}})
        mounts.append({"name": volume, "mountPath": path})
    return args, volumes, mounts


def container_security(uid: int) -> dict[str, Any]:
    """The recorder's (and the backfill's) container securityContext: non-root, read-only root, no privileges."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security(uid: int) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def scheduling(settings: Settings) -> dict[str, Any]:
    """Pull secrets, node selector, tolerations and priority class of the recorder's pods (and the backfill's)."""
    out: dict[str, Any] = {}
    if settings.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    if settings.node_selector:
        out["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        out["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.priority_class:
        out["priorityClassName"] = settings.priority_class
    return out


def as_account(pod: Mapping[str, Any], account: str | None) -> dict[str, Any]:
    """``pod`` running as ``account`` (one made ahead: accounts.py) instead of the session's own; a copy, the spec
    alone copied. Pure."""
    if not account:
        return dict(pod)
    return {**pod, "spec": {**pod["spec"], "serviceAccountName": account}}


def pod_account(pod: Mapping[str, Any]) -> str:
    return pod["spec"]["serviceAccountName"]


def build_pod(session: RecordingSession, settings: Settings, *, restart: int = 0,
              resume: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The recorder pod. ``restart``: its restart number (status.restarts); ``resume``: for a replacement that
    continues a recording, the REEL_RESUME object (``interruptions.resume_request``), None for a fresh start."""
    spec = session.spec
    name = object_name(session.metadata.name)
    args = ["--spool", SPOOL_DIR, "--termination-log", TERMINATION_LOG,
            "--upload-timeout", str(settings.upload_timeout_seconds)]
    volumes: list[dict[str, Any]] = [
        {"name": "spool", "emptyDir": {"sizeLimit": settings.spool_size_limit}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "spool", "mountPath": SPOOL_DIR},
        {"name": "tmp", "mountPath": TMP_DIR},
    ]

    if spec.room.credentials_secret_ref is not None:
        volumes.append(_secret_volume("room-credentials", spec.room.credentials_secret_ref.name))
        mounts.append({"name": "room-credentials", "mountPath": ROOM_SECRETS_DIR, "readOnly": True})
        args.extend(["--room-secrets", ROOM_SECRETS_DIR])
    store_args, store_volumes, store_mounts = storage_volumes(session, settings)
    args.extend(store_args)
    volumes.extend(store_volumes)
    mounts.extend(store_mounts)

    uid = settings.recorder_uid
    env = [
        {"name": "REEL_SESSION", "value": session_manifest(session)},
        {"name": "REEL_STATUS_TARGET", "value": f"{session.metadata.namespace}/{session.metadata.name}"},
        {"name": "REEL_MEDIA_ADDRESS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "REEL_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "REEL_LOG_LEVEL", "value": settings.recorder_log_level},
        {"name": LIVENESS_ENV, "value": str(LIVENESS_PORT)},
        {"name": METRICS_ENV, "value": str(METRICS_PORT)},
        {"name": "HOME", "value": TMP_DIR},
    ]
    if settings.spool_size_limit:  # the same limit, in bytes (the Kubernetes client parses the quantity)
        try:
            limit = int(parse_quantity(settings.spool_size_limit))
        except ValueError as err:
            raise BuildError(f"REEL_RECORDER_SPOOL_SIZE_LIMIT {settings.spool_size_limit!r}: {err}") from None
        env.append({"name": SPOOL_LIMIT_ENV, "value": str(limit)})
    if resume is not None:
        env.append({"name": RESUME_ENV, "value": json.dumps(dict(resume), separators=(",", ":"), sort_keys=True)})
    container = {
        "name": CONTAINER,
        "image": settings.recorder_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(settings.recorder_command),
        "args": args,
        "env": env,
        "resources": resources(session, settings),
        "volumeMounts": mounts,
        "ports": [{"name": LIVENESS_PORT_NAME, "containerPort": LIVENESS_PORT, "protocol": "TCP"},
                  {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "livenessProbe": copy.deepcopy(LIVENESS_PROBE),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security(uid),
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": True,  # the session's ServiceAccount (or the one it claimed): status only
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "enableServiceLinks": False,
        "securityContext": pod_security(uid),
        "containers": [container],
        "volumes": volumes,
        **scheduling(settings),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": object_meta(session, name, annotations={
            GENERATION_ANNOTATION: str(session.metadata.generation or 0),
            RESTART_ANNOTATION: str(restart),
            SAFE_TO_EVICT_ANNOTATION: "false",
        }),
        "spec": pod_spec,
    }

