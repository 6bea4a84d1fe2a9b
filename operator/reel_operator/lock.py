"""The room lock. First start wins: one active session per Janus server + room + mode among all the sessions
one operator serves. That is one meaning in both modes: cluster-wide, every namespace; namespaced
(``watchNamespaces: [a, b]``), the watched namespaces together, never per namespace. Two operator installs (two
releases watching different namespaces) do not see each other's sessions: their rooms are theirs to keep apart.

Two layers, both keyed by ``names.room_key``:
1. the check: an active session of the room created earlier wins (ties: the smaller uid), so two sessions
   checking at the same time agree on one winner, whichever namespaces they are in. The operator checks its
   index ``rooms`` (main.py: every session it watches, by room key, computed from the spec, so a session is in
   it from its first watch event on, before any handler ran), which is exactly its scope; a candidate winner
   the index shows is read fresh (the index may lag: it may have ended) before the loser fails
   (``earlier_claim``). Without an index (``acquire``) the same check lists the sessions labelled
   ``reel.dev/room-key`` in its scope (all namespaces when cluster-wide, each watched namespace when
   namespaced), after labelling its own; every session carries that label either way;
2. a Lease ``reel-room-<key>`` in the session's namespace, created by the winner (create is atomic: one
   of two racing creators gets AlreadyExists). A Lease left by a session that ended or is gone is taken over
   with optimistic concurrency (replace at its resourceVersion).
The loser ends with stopReason AlreadyRecording and keeps nothing (a race lost at the Lease deletes again the
ServiceAccount and Role created beside it: handlers/create.py).

The Lease and its holder identity are built by the pure functions below (``build_room_lock``, ...).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes.client.rest import ApiException

from reel_api import RecordingSession, SessionError, load_session

from .kube import Kube, status_of
from .names import LABEL_MANAGED_BY, LABEL_PART_OF, LABEL_ROOM_KEY, MANAGED_BY, owner_reference, room_key
from .status import is_terminal

log = logging.getLogger("reel.operator")

LOCK_PREFIX = "reel-room-"


# ---------------------------------------------------------------------------------------------------------
# The Lease (pure)
# ---------------------------------------------------------------------------------------------------------


def lock_name(key: str) -> str:
    return LOCK_PREFIX + key


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


# ---------------------------------------------------------------------------------------------------------
# Taking and releasing the room
# ---------------------------------------------------------------------------------------------------------


def _active(session: Mapping[str, Any]) -> bool:
    status = session.get("status") or {}
    return not is_terminal(status.get("phase")) and not session["metadata"].get("deletionTimestamp")


def _order(session: Mapping[str, Any]) -> tuple[str, str]:
    meta = session["metadata"]
    return meta.get("creationTimestamp") or "", meta.get("uid") or ""


def earlier_active(candidates: list[Mapping[str, Any]], me: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The session (other than ``me``) that wins over ``me``: active and started first. Pure."""
    mine = _order(me)
    winners = [s for s in candidates
               if s["metadata"].get("uid") != me["metadata"].get("uid") and _active(s) and _order(s) < mine]
    return min(winners, key=_order) if winners else None


def describe(session: Mapping[str, Any]) -> str:
    meta = session["metadata"]
    rec = (session.get("status") or {}).get("recordingId")
    return f"{meta.get('namespace')}/{meta.get('name')}" + (f" (recording {rec})" if rec else "")


@dataclass(frozen=True)
class Claim:
    """A session as the index ``rooms`` holds it (main.py): small, never a body."""
    namespace: str
    name: str
    uid: str
    created: str  # metadata.creationTimestamp
    active: bool  # not final, not being deleted


#: (uid, generation) -> the session's room key, None when our models refuse it. The key depends on the spec alone,
#: which only a new generation changes, and the index asks on every event of every session: the models' validation
#: once per generation, not per event (it was ~3 % of the event loop's time with 1,000 sessions). Emptied when full.
_KEYS: dict[tuple[str, Any], str | None] = {}
_KEYS_MAX = 10_000


def _room_key_of(body: Mapping[str, Any]) -> str | None:
    meta = body["metadata"]
    cached = (meta.get("uid") or "", meta.get("generation"))
    if cached in _KEYS:
        return _KEYS[cached]
    try:
        key = room_key(load_session(dict(body)))
    except SessionError:
        key = None
    if len(_KEYS) >= _KEYS_MAX:
        _KEYS.clear()
    _KEYS[cached] = key
    return key


def claim_of(body: Mapping[str, Any]) -> dict[str, Claim]:
    """The index entry of a session: {its room key: Claim}; {} for a session our models refuse (it never starts).
    Pure but for the memo of room keys (``_KEYS``)."""
    key = _room_key_of(body)
    if key is None:
        return {}
    meta = body["metadata"]
    return {key: Claim(meta.get("namespace") or "", meta.get("name") or "", meta.get("uid") or "",
                       meta.get("creationTimestamp") or "", _active(body))}


def earlier_claim(kube: Kube, body: Mapping[str, Any], claims: Iterable[Claim]) -> str | None:
    """The check from the index: a description of the session that wins over ``body`` (active and created first),
    None when there is none. A candidate is read fresh before it wins (the index may still show it active after it
    ended); one created after ``body`` never wins, whatever its state."""
    mine, uid = _order(body), body["metadata"].get("uid")
    for claim in sorted((c for c in claims if c.uid != uid and c.active and (c.created, c.uid) < mine),
                        key=lambda c: (c.created, c.uid)):
        other = kube.get_session(claim.namespace, claim.name)
        if other is not None and other["metadata"].get("uid") == claim.uid and _active(other):
            return describe(other)
    return None


def acquire(kube: Kube, session: RecordingSession, body: Mapping[str, Any], *, namespaces: tuple[str, ...],
            now: datetime) -> str | None:
    """Take the room, checking by a list of the labelled sessions (no index). None when we have it, else a
    description of the session that records the room."""
    key = room_key(session)
    selector = f"{LABEL_ROOM_KEY}={key}"
    if namespaces and not any(set(ns) & set("*?[") for ns in namespaces):  # namespaced: every watched one
        candidates = [s for ns in sorted({*namespaces, session.metadata.namespace})
                      for s in kube.list_sessions(selector, ns)]
    elif namespaces:  # REEL_NAMESPACES with globs (the chart takes names only): the matching namespaces
        candidates = [s for s in kube.list_sessions(selector)
                      if any(fnmatch.fnmatchcase(s["metadata"].get("namespace") or "", ns) for ns in namespaces)]
    else:
        candidates = kube.list_sessions(selector)
    winner = earlier_active(candidates, body)
    if winner is not None:
        return describe(winner)
    return take(kube, session, now=now)


def take(kube: Kube, session: RecordingSession, *, now: datetime) -> str | None:
    """The second layer: create the Lease (or take over one whose holder ended). None when we hold it, else a
    description of the active session that does."""
    lease = build_room_lock(session, now)
    try:
        existing, created = kube.create(lease)
    except ApiException as err:
        if status_of(err) != 403:
            raise
        log.warning("no RBAC for leases (coordination.k8s.io) in %s: room lock by labels only",
                    session.metadata.namespace)
        return None
    if created:
        return None
    for _ in range(3):
        holder = parse_holder((existing.get("spec") or {}).get("holderIdentity"))
        if holder and holder[2] == session.metadata.uid:
            return None  # ours (a retried handler)
        if holder:
            other = kube.get_session(holder[0], holder[1])
            if other is not None and other["metadata"].get("uid") == holder[2] and _active(other):
                return describe(other)
        # the holder ended or is gone: take over at the version we read
        lease["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        if kube.replace_lease(lease) is not None:
            return None
        existing = kube.get_lease(session.metadata.namespace, lease["metadata"]["name"])
        if existing is None:
            lease["metadata"].pop("resourceVersion", None)
            existing, created = kube.create(lease)
            if created:
                return None
    return "another session (the room lock keeps changing hands)"


def release(kube: Kube, session: RecordingSession, *, resource_version: str | None = None) -> None:
    """Drop the room lock if this session holds it. ``resource_version``: of the Lease this session holds as the
    watch showed it (main.py's index): deleted at that version without a read; should it have changed meanwhile
    (taken over), it is read and deleted only if it is still ours."""
    name = lock_name(room_key(session))
    try:
        if resource_version and kube.delete_lease(session.metadata.namespace, name, resource_version=resource_version):
            return
        lease = kube.get_lease(session.metadata.namespace, name)
    except ApiException as err:
        if status_of(err) == 403:
            return
        raise
    if lease and (lease.get("spec") or {}).get("holderIdentity") == holder_identity(session):
        kube.delete_lease(session.metadata.namespace, name, resource_version=lease["metadata"]["resourceVersion"])
