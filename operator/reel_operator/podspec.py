"""Pure builders: a RecordingSession (+ settings) -> the objects of its recorder, as plain dicts.

Per session the operator creates, all owned by the session (garbage-collected with it) and named
``reel-rec-<session>``:
- a ServiceAccount the recorder pod runs as,
- a Role allowing exactly ``get`` and ``patch`` on ``recordingsessions/status`` of this one session
  (resourceNames), and its RoleBinding: a recorder can change nothing but its own session's status,
- the recorder Pod.
And a Lease ``reel-room-<key>`` (the room lock, see ``room_key``), held by the first active session of a
server + room + mode.

Nothing here talks to the cluster; unit tests check every field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from reel_api import API_VERSION, GROUP, KIND, PLURAL, RecordingSession

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

#: Volume names; the status logic maps mount failures back to the spec field through them.
VOLUME_FIELDS = {
    "room-credentials": "spec.room.credentialsSecretRef",
    "storage-credentials": "spec.storage.credentialsSecretRef",
    "backup-storage-credentials": "spec.backupStorage.credentialsSecretRef",
}

# Labels
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_SESSION = "reel.dev/session"
LABEL_ROOM_KEY = "reel.dev/room-key"
MANAGED_BY = "reel-operator"

OBJECT_PREFIX = "reel-rec-"
LOCK_PREFIX = "reel-room-"


class PodSpecError(ValueError):
    """The session asks for something we cannot build (e.g. a bad resources annotation)."""


# ---------------------------------------------------------------------------------------------------------
# Names, labels, keys
# ---------------------------------------------------------------------------------------------------------


def _digest(text: str, n: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def bounded(name: str, limit: int) -> str:
    """``name`` if it fits, else a prefix of it + '-' + a hash of the whole (still a valid DNS name)."""
    if len(name) <= limit:
        return name
    return name[: limit - 11].rstrip("-.") + "-" + _digest(name)


def object_name(session_name: str) -> str:
    """Name of the session's pod, ServiceAccount, Role and RoleBinding (deterministic: one pod per session)."""
    return bounded(OBJECT_PREFIX + session_name, 63)


def label_value(value: str) -> str:
    return bounded(value, 63)


def room_key(session: RecordingSession) -> str:
    """Hash of server + room + mode: sessions with the same key record the same thing (first start wins)."""
    room = session.spec.room
    server = room.server.strip().rstrip("/")
    scheme, sep, rest = server.partition("://")
    host, slash, path = rest.partition("/")
    server = f"{scheme.lower()}{sep}{host.lower()}{slash}{path}"
    mode = session.spec.recording.mode
    return _digest(json.dumps([server, str(room.id), str(mode)]), 16)


def lock_name(key: str) -> str:
    return LOCK_PREFIX + key


def labels(session: RecordingSession) -> dict[str, str]:
    return {
        LABEL_NAME: "reel-recorder",
        LABEL_COMPONENT: "recorder",
        LABEL_PART_OF: "reel",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_SESSION: label_value(session.metadata.name),
        LABEL_ROOM_KEY: room_key(session),
    }


def owner_reference(session: RecordingSession, *, controller: bool = True) -> dict[str, Any]:
    if not session.metadata.uid:
        raise PodSpecError("the session has no metadata.uid (not read from the apiserver?)")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": session.metadata.name,
        "uid": session.metadata.uid,
        "controller": controller,
        "blockOwnerDeletion": controller,
    }


def _meta(session: RecordingSession, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": session.metadata.namespace,
        "labels": labels(session),
        "ownerReferences": [owner_reference(session)],
        **extra,
    }


# ---------------------------------------------------------------------------------------------------------
# RBAC: the recorder's identity
# ---------------------------------------------------------------------------------------------------------


def build_service_account(session: RecordingSession) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(session, object_name(session.metadata.name)),
        "automountServiceAccountToken": False,  # only the recorder pod mounts it (pod-level opt-in)
    }


def build_role(session: RecordingSession) -> dict[str, Any]:
    """get/patch on this session's status subresource, nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(session, object_name(session.metadata.name)),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": [f"{PLURAL}/status"],
                "resourceNames": [session.metadata.name],
                "verbs": ["get", "patch"],
            }
        ],
    }


def build_role_binding(session: RecordingSession) -> dict[str, Any]:
    name = object_name(session.metadata.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(session, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": session.metadata.namespace}],
    }


# ---------------------------------------------------------------------------------------------------------
# The pod
# ---------------------------------------------------------------------------------------------------------


def session_manifest(session: RecordingSession) -> str:
    """The session as the recorder reads it (REEL_SESSION): JSON, defaults filled in, no status."""
    data = session.to_dict(status=False)
    meta = session.metadata
    data["metadata"] = {k: v for k, v in (("name", meta.name), ("namespace", meta.namespace),
                                          ("uid", meta.uid), ("generation", meta.generation)) if v is not None}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def resources(session: RecordingSession, settings: Settings) -> dict[str, dict[str, str]]:
    """The defaults from settings, overridden by the session's reel.dev/recorder-resources annotation."""
    out = {"requests": dict(settings.requests), "limits": dict(settings.limits)}
    raw = session.metadata.annotations.get(RESOURCES_ANNOTATION)
    if raw:
        try:
            override = json.loads(raw)
        except ValueError as e:
            raise PodSpecError(f"annotation {RESOURCES_ANNOTATION} is not valid JSON: {e}") from None
        if not isinstance(override, Mapping) or set(override) - {"requests", "limits"}:
            raise PodSpecError(f'annotation {RESOURCES_ANNOTATION} must be a JSON object with "requests" '
                               f'and/or "limits", e.g. {{"limits": {{"memory": "1Gi"}}}}')
        for part, values in override.items():
            if not isinstance(values, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str | int) for k, v in values.items()):
                raise PodSpecError(f'annotation {RESOURCES_ANNOTATION}: "{part}" must map resource names to '
                                   f'quantities, e.g. {{"memory": "1Gi"}}')
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


def build_pod(session: RecordingSession, settings: Settings) -> dict[str, Any]:
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

    def secret(volume: str, ref, directory: str, flag: str, keys: tuple[str, ...] = ()) -> None:
        if ref is None:
            return
        volumes.append(_secret_volume(volume, ref.name, keys))
        mounts.append({"name": volume, "mountPath": directory, "readOnly": True})
        args.extend([flag, directory])

    secret("room-credentials", spec.room.credentials_secret_ref, ROOM_SECRETS_DIR, "--room-secrets")
    secret("storage-credentials", spec.storage.credentials_secret_ref, STORAGE_SECRETS_DIR,
           "--storage-secrets", STORAGE_SECRET_KEYS)
    if spec.backup_storage is not None:
        secret("backup-storage-credentials", spec.backup_storage.credentials_secret_ref,
               BACKUP_STORAGE_SECRETS_DIR, "--backup-storage-secrets", STORAGE_SECRET_KEYS)

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

    uid = settings.recorder_uid
    env = [
        {"name": "REEL_SESSION", "value": session_manifest(session)},
        {"name": "REEL_STATUS_TARGET", "value": f"{session.metadata.namespace}/{session.metadata.name}"},
        {"name": "REEL_MEDIA_ADDRESS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "REEL_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "REEL_LOG_LEVEL", "value": settings.recorder_log_level},
        {"name": "HOME", "value": TMP_DIR},
    ]
    container = {
        "name": CONTAINER,
        "image": settings.recorder_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(settings.recorder_command),
        "args": args,
        "env": env,
        "resources": resources(session, settings),
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": True,  # the token of the per-session ServiceAccount: status only
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.priority_class:
        pod_spec["priorityClassName"] = settings.priority_class
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(session, name,
                          annotations={"reel.dev/session-generation": str(session.metadata.generation or 0)}),
        "spec": pod_spec,
    }


# ---------------------------------------------------------------------------------------------------------
# The room lock
# ---------------------------------------------------------------------------------------------------------


def holder_identity(session: RecordingSession) -> str:
    return f"{session.metadata.namespace}/{session.metadata.name}/{session.metadata.uid}"


def holder_identity_of(meta: Mapping[str, Any]) -> str:
    """The same from a raw object's metadata."""
    return f"{meta.get('namespace')}/{meta.get('name')}/{meta.get('uid')}"


def parse_holder(identity: str | None) -> tuple[str, str, str] | None:
    parts = (identity or "").split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


def micro_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_room_lock(session: RecordingSession, now: datetime) -> dict[str, Any]:
    """The Lease that says "this session records this server + room + mode". Owned (not controlled) by the
    session, so it goes when the session goes; the operator also deletes it when the session ends."""
    key = room_key(session)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lock_name(key),
            "namespace": session.metadata.namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_PART_OF: "reel", LABEL_ROOM_KEY: key},
            "annotations": {"reel.dev/room": f"{session.spec.room.server} {session.spec.room.id}"},
            "ownerReferences": [owner_reference(session, controller=False)],
        },
        "spec": {"holderIdentity": holder_identity(session), "acquireTime": micro_time(now)},
    }
