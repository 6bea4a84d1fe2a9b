"""The few Kubernetes API calls the handlers make, on plain dicts (the official client, synchronous: kopf runs
sync handlers in its thread pool)."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from reel_api import GROUP, PLURAL, VERSION

from .names import LABEL_MANAGED_BY, MANAGED_BY

log = logging.getLogger("reel.operator")


def load_client(pool_size: int = 0) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG or ~/.kube/config).
    ``pool_size``: connections kept open to the API server (one per handler thread, so that none is closed and
    opened again, a TLS handshake each, when all threads call at once); 0 = the client's default."""
    try:
        config.load_incluster_config()
        configuration = client.Configuration.get_default_copy()
    except config.ConfigException:
        configuration = client.Configuration()
        config.load_kube_config(client_configuration=configuration)
    if pool_size:
        configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class Conflict(Exception):
    """The object changed since we read it (HTTP 409)."""


def status_of(err: ApiException) -> int:
    return int(getattr(err, "status", 0) or 0)


@dataclass
class Kube:
    api: client.ApiClient

    def __post_init__(self):
        self.core = client.CoreV1Api(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.coordination = client.CoordinationV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)

    # -- helpers -------------------------------------------------------------------------------------------
    @staticmethod
    def _dict(resp) -> dict[str, Any]:
        return json.loads(resp.data)

    @staticmethod
    def _call(fn, *args, **kw) -> None:
        """A call whose answer is not needed (deletes): read as bytes and dropped, so the connection goes back to
        the pool, and never turned into the client's model objects (a whole V1Pod per delete: CPU for nothing)."""
        fn(*args, _preload_content=False, **kw).data  # noqa: B018 (reads the body)

    def _delete(self, fn, namespace: str, name: str, *, uid: str | None = None, **options) -> bool:
        """``fn`` (a delete_namespaced_X) at ``uid`` if given, with further V1DeleteOptions; False when the object
        was already gone, or is another one (the uid precondition failed)."""
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid) if uid else None, **options)
        try:
            self._call(fn, name, namespace, body=body)
            return True
        except ApiException as err:
            if status_of(err) in (404, 409):
                return False
            raise

    def _get(self, fn, *args, **kw) -> dict[str, Any] | None:
        try:
            return self._dict(fn(*args, _preload_content=False, **kw))
        except ApiException as err:
            if status_of(err) == 404:
                return None
            raise

    # -- sessions ------------------------------------------------------------------------------------------
    def get_session(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)

    def patch_session_status(self, namespace: str, name: str, status: dict[str, Any],
                             resource_version: str | None = None) -> dict[str, Any] | None:
        """Merge-patch .status; with resource_version the write is refused (Conflict) if the object changed."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return self._dict(self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, body, _preload_content=False))
        except ApiException as err:
            if status_of(err) == 404:
                return None
            if status_of(err) == 409:
                raise Conflict(f"{namespace}/{name} changed meanwhile") from None
            raise

    def patch_session(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self._dict(self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch, _preload_content=False))
        except ApiException as err:
            if status_of(err) == 404:
                return None
            raise

    def list_sessions(self, label_selector: str, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace:
            resp = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                             label_selector=label_selector, _preload_content=False)
        else:
            resp = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=label_selector,
                                                          _preload_content=False)
        return self._dict(resp).get("items", [])

    # -- webhook signing keys (webhooks/delivery.py; RBAC get on secrets: chart webhooks.enabled) -------------
    def read_secret_key(self, namespace: str, name: str, key: str) -> bytes | None:
        """The bytes of one key of a Secret; None when the Secret or the key does not exist."""
        secret = self._get(self.core.read_namespaced_secret, name, namespace)
        value = ((secret or {}).get("data") or {}).get(key)
        return None if value is None else base64.b64decode(value)

    # -- pods ----------------------------------------------------------------------------------------------
    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self.core.read_namespaced_pod, name, namespace)

    def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None = None,
                   uid: str | None = None) -> bool:
        """Delete (gracefully unless grace_seconds=0); False when it was already gone."""
        return self._delete(self.core.delete_namespaced_pod, namespace, name, uid=uid,
                            grace_period_seconds=grace_seconds)

    def pod_events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        resp = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind=Pod,involvedObject.name={name}", _preload_content=False)
        return self._dict(resp).get("items", [])

    def list_recorder_pods(self, namespace: str) -> list[dict[str, Any]]:
        """The recorder pods of a namespace (the operator's managed-by label)."""
        resp = self.core.list_namespaced_pod(namespace, label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}",
                                             _preload_content=False)
        return self._dict(resp).get("items", [])

    # -- recorder accounts (accounts.py) -------------------------------------------------------------------
    def list_service_accounts(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        resp = self.core.list_namespaced_service_account(namespace, label_selector=label_selector,
                                                         _preload_content=False)
        return self._dict(resp).get("items", [])

    def patch_service_account(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """JSON merge patch (a list in it replaces the list: ownerReferences); None when it does not exist."""
        return self._get(self.core.patch_namespaced_service_account, name, namespace, patch,
                         _content_type="application/merge-patch+json")

    def get_cluster_role(self, name: str) -> dict[str, Any] | None:
        return self._get(self.rbac.read_cluster_role, name)

    def get_role_binding(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self.rbac.read_namespaced_role_binding, name, namespace)

    # -- backfill Jobs (handlers/backfill.py) --------------------------------------------------------------------
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self.batch.read_namespaced_job, name, namespace)

    def delete_job(self, namespace: str, name: str, *, uid: str | None = None) -> bool:
        """Delete the Job and its pods (background propagation); False when it was already gone."""
        return self._delete(self.batch.delete_namespaced_job, namespace, name, uid=uid,
                            propagation_policy="Background")

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        """The pods of a Job (label batch.kubernetes.io/job-name, set by the Job controller)."""
        resp = self.core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}",
                                             _preload_content=False)
        return self._dict(resp).get("items", [])

    # -- create-if-absent ------------------------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the object; on AlreadyExists return the existing one. -> (object, created)."""
        kind, ns = body["kind"], body["metadata"]["namespace"]
        create, read = {
            "Pod": (self.core.create_namespaced_pod, self.core.read_namespaced_pod),
            "ServiceAccount": (self.core.create_namespaced_service_account, self.core.read_namespaced_service_account),
            "Role": (self.rbac.create_namespaced_role, self.rbac.read_namespaced_role),
            "RoleBinding": (self.rbac.create_namespaced_role_binding, self.rbac.read_namespaced_role_binding),
            "Lease": (self.coordination.create_namespaced_lease, self.coordination.read_namespaced_lease),
            "Job": (self.batch.create_namespaced_job, self.batch.read_namespaced_job),
        }[kind]
        try:
            return self._dict(create(ns, body, _preload_content=False)), True
        except ApiException as err:
            if status_of(err) != 409:
                raise
        existing = self._get(read, body["metadata"]["name"], ns)
        if existing is None:  # deleted in between: try once more
            return self._dict(create(ns, body, _preload_content=False)), True
        return existing, False

    def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> bool:
        """Delete a ServiceAccount, Role or RoleBinding (at ``uid`` if given); False when it was already gone (or
        another)."""
        delete = {"ServiceAccount": self.core.delete_namespaced_service_account,
                  "Role": self.rbac.delete_namespaced_role,
                  "RoleBinding": self.rbac.delete_namespaced_role_binding}[kind]
        return self._delete(delete, namespace, name, uid=uid)

    # -- leases (room locks) ---------------------------------------------------------------------------------
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self.coordination.read_namespaced_lease, name, namespace)

    def replace_lease(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Replace with optimistic concurrency (metadata.resourceVersion); None on conflict."""
        try:
            return self._dict(self.coordination.replace_namespaced_lease(
                body["metadata"]["name"], body["metadata"]["namespace"], body, _preload_content=False))
        except ApiException as err:
            if status_of(err) in (404, 409):
                return None
            raise

    def delete_lease(self, namespace: str, name: str, *, resource_version: str | None = None) -> bool:
        """Delete (at ``resource_version`` if given); True when deleted or already gone, False when it changed
        since that version (409)."""
        pre = client.V1Preconditions(resource_version=resource_version) if resource_version else None
        try:
            self._call(self.coordination.delete_namespaced_lease, name, namespace,
                       body=client.V1DeleteOptions(preconditions=pre))
        except ApiException as err:
            if status_of(err) == 409:
                return False
            if status_of(err) != 404:
                raise
        return True
