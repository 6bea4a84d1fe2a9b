"""Pure builders of the recorder's identity: its ServiceAccount, a Role allowing exactly ``get`` and ``patch``
on ``recordingsessions/status`` of this one session (resourceNames), and its RoleBinding. A recorder can
change nothing but its own session's status. All named ``reel-rec-<session>`` and owned by the session; the pod
may run instead as an account made ahead (accounts.py), which the session then owns and its RoleBinding names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reel_api import GROUP, PLURAL, RecordingSession

from .names import object_meta, object_name


def build_service_account(session: RecordingSession, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``annotations``: from the chart (recorder.serviceAccountAnnotations, only with allowAmbientCredentials),
    e.g. eks.amazonaws.com/role-arn, so that web identity gives the recorder the cloud role."""
    extra = {"annotations": dict(annotations)} if annotations else {}
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": object_meta(session, object_name(session.metadata.name), **extra),
        "automountServiceAccountToken": False,  # only the recorder pod mounts it (pod-level opt-in)
    }


def build_role(session: RecordingSession) -> dict[str, Any]:
    """get/patch on this session's status subresource, nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": object_meta(session, object_name(session.metadata.name)),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": [f"{PLURAL}/status"],
                "resourceNames": [session.metadata.name],
                "verbs": ["get", "patch"],
            }
        ],
    }


def build_role_binding(session: RecordingSession, account: str | None = None) -> dict[str, Any]:
    """Binds the session's Role to ``account``: the account its pod runs as (the session's own, or one made ahead
    that the session claimed: accounts.py)."""
    name = object_name(session.metadata.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": object_meta(session, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account or name, "namespace": session.metadata.namespace}],
    }


def build_identity(session: RecordingSession,
                   annotations: Mapping[str, str] | None = None) -> tuple[dict[str, Any], ...]:
    """All three, in the order they are created: ServiceAccount (with ``annotations``), Role, RoleBinding."""
    return build_service_account(session, annotations), build_role(session), build_role_binding(session)


def bound_account(binding: Mapping[str, Any] | None) -> str | None:
    """The account a session's RoleBinding names (its pod's account), None without one. Pure."""
    for subject in (binding or {}).get("subjects") or ():
        if subject.get("kind") == "ServiceAccount":
            return subject.get("name")
    return None
