"""What every object of a session's recorder shares: names, labels, the owner reference, and the one check
"is this object owned by this session".

Per session the operator creates, all owned by the session (garbage-collected with it) and named
``reel-rec-<session>``: a ServiceAccount (or, instead, one made ahead that the session claims: ``accounts.py``,
``reel-acct-<random>``), a Role, a RoleBinding (``rbac.py``) and the recorder Pod (``podspec.py``); after a
BackedUp end the backfill Job ``reel-backfill-<session>`` (``jobspec.py``). The room lock Lease (``lock.py``) is
named after ``room_key``.

Pure: nothing here talks to the cluster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from reel_api import API_VERSION, KIND, RecordingSession

# Labels
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_SESSION = "reel.dev/session"
LABEL_ROOM_KEY = "reel.dev/room-key"
MANAGED_BY = "reel-operator"

OBJECT_PREFIX = "reel-rec-"
BACKFILL_PREFIX = "reel-backfill-"


class BuildError(ValueError):
    """The session asks for something we cannot build (e.g. a bad resources annotation, no uid)."""


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


def backfill_job_name(session_name: str) -> str:
    """Name of the session's backfill Job (jobspec.py); 63 at most: Kubernetes copies it into a pod label."""
    return bounded(BACKFILL_PREFIX + session_name, 63)


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


def labels(session: RecordingSession) -> dict[str, str]:
    return {
        LABEL_NAME: "reel-recorder",
        LABEL_COMPONENT: "recorder",
        LABEL_PART_OF: "reel",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_SESSION: label_value(session.metadata.name),
        LABEL_ROOM_KEY: room_key(session),
    }


# ---------------------------------------------------------------------------------------------------------
# Ownership
# ---------------------------------------------------------------------------------------------------------


def owner_reference(session: RecordingSession, *, controller: bool = True) -> dict[str, Any]:
    if not session.metadata.uid:
        raise BuildError("the session has no metadata.uid (not read from the apiserver?)")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": session.metadata.name,
        "uid": session.metadata.uid,
        "controller": controller,
        "blockOwnerDeletion": controller,
    }


def object_meta(session: RecordingSession, name: str, **extra: Any) -> dict[str, Any]:
    """Metadata of an object of the session's recorder: its namespace, labels, controlled by the session."""
    return {
        "name": name,
        "namespace": session.metadata.namespace,
        "labels": labels(session),
        "ownerReferences": [owner_reference(session)],
        **extra,
    }


def owned_by(obj: Mapping[str, Any] | None, session_meta: Mapping[str, Any]) -> bool:
    """Whether ``obj`` (a pod, ...; None: absent) is owned by the session of ``session_meta``, and not by an
    earlier session of the same name. Pure."""
    uid = session_meta.get("uid")
    if obj is None or not uid:
        return False
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def owner_session(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the session that controls ``obj``, None if no session does. Pure."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("controller"):
            return ref["name"], ref["uid"]
    return None
