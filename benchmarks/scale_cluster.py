"""The cluster side of benchmarks/operator_scale.py: API calls, the kwok fake node, and watches that time pods.

- ``Cluster``: namespaces, sessions (create, stop), the CRD, Warning Events, ``apiserver_request_total``, a
  warm-up session that proves the operator works before anything is timed.
- ``KwokNode``: a context manager that creates the Node ``reel-kwok-0`` (label ``type=kwok``, taint
  ``kwok.x-k8s.io/node=fake:NoSchedule``) and runs ``kwok`` for it (only nodes with that label), then stops kwok
  and deletes the node.
- ``Watches``: raw watches (JSON lines, no model deserialization: thousands of events must not lag) of the
  pods and sessions of one namespace: when each pod was ADDED and DELETED (time.monotonic() at receipt) and
  each session's last phase.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "reel.dev", "v1alpha1", "recordingsessions"


def _tool(name: str) -> str:
    """A program hack/kind built into ~/.cache/reel/bin, else the one on PATH."""
    cached = Path.home() / ".cache" / "reel" / "bin" / name
    return str(cached) if cached.exists() else name


class Cluster:
    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.api.configuration.connection_pool_maxsize = 8
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return subprocess.run([_tool("kubectl"), "--kubeconfig", str(self.kubeconfig), *args], check=True,
                              input=stdin, capture_output=True, text=True).stdout

    def apply_crd(self, path: Path, timeout: float = 30) -> None:
        """Apply the CRD and return once sessions can be created: Established, and served (on a fresh cluster the
        API server answers 503 for a moment after Established)."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)
                return
            except ApiException as err:
                if err.status != 503 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    @contextmanager
    def chart_admission(self, chart: Path, release: str):
        """The admission policies of ``chart`` that the operator relies on at scale (templates/session-finalizer.yaml:
        the finalizer put on at admission), rendered by helm from this cluster's APIs (``--validate``) and applied
        while the block runs (a release of the operator from ``chart``'s tree would install them). -> the kinds
        applied ([] when the tree has no such template, e.g. an older one, or this cluster lacks the API)."""
        template = "templates/session-finalizer.yaml"
        if not (chart / template).exists():
            yield []
            return
        manifest = subprocess.run([_tool("helm"), "template", release, str(chart), "-n", "default", "--show-only",
                                   template, "--validate", "--kubeconfig", str(self.kubeconfig)],
                                  capture_output=True, text=True).stdout  # nothing rendered: no such API here
        kinds = [d["kind"] for d in yaml.safe_load_all(manifest) if d]
        if not kinds:
            yield []
            return
        self.kubectl("apply", "-f", "-", stdin=manifest)
        time.sleep(2)  # admission plugins pick policies up from an informer
        try:
            yield kinds
        finally:
            self.kubectl("delete", "--ignore-not-found", "-f", "-", stdin=manifest)

    def create_namespace(self, name: str) -> str:
        self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    def delete_namespace(self, name: str, timeout: float = 600) -> None:
        """Delete it and wait until it is gone (the operator, still running, releases the sessions' finalizer);
        after ``timeout`` the finalizers are dropped by hand."""
        with suppress(ApiException):
            self.core.delete_namespace(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.core.read_namespace(name)
            except ApiException as err:
                if err.status == 404:
                    return
            time.sleep(1)
        for s in self.custom.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"]:
            with suppress(ApiException):
                self.custom.patch_namespaced_custom_object(GROUP, VERSION, name, PLURAL, s["metadata"]["name"],
                                                           {"metadata": {"finalizers": None}})

    def create_session(self, namespace: str, body: dict) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, _preload_content=False)

    def stop_session(self, namespace: str, name: str) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": {"stop": True}},
                                                   _preload_content=False)

    def warning_events(self, namespace: str) -> list[str]:
        resp = self.core.list_namespaced_event(namespace, field_selector="type=Warning", _preload_content=False)
        return [f"{e['involvedObject'].get('name')}: {e.get('reason')}: {e.get('message')}"[:300]
                for e in json.loads(resp.data)["items"]]

    def apiserver_requests(self) -> dict[str, int]:
        """``apiserver_request_total`` summed by verb and resource (every client of the API server)."""
        resp = self.api.call_api("GET", f"{self.api.configuration.host}/metrics")
        resp.read()
        text = resp.data.decode()
        out: dict[str, int] = {}
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels, _, value = line.rpartition(" ")
            kv = dict(part.split("=", 1) for part in labels[labels.index("{") + 1:-1].split(",") if "=" in part)
            key = f"{kv.get('verb', '').strip(chr(34)).lower()} {kv.get('resource', '').strip(chr(34))}"
            out[key] = out.get(key, 0) + int(float(value))
        return out

    def warm_up(self, alive, prefix: str, timeout: float = 120) -> None:
        """One session through create -> pod -> stop -> pod gone, before anything is timed."""
        ns = self.create_namespace(f"{prefix}warmup-{int(time.time())}")
        watches = Watches(self, ns)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RecordingSession", "metadata": {"name": "warmup"},
                "spec": {"room": {"server": "ws://10.96.0.250:8188", "id": 1},
                         "storage": {"local": {"path": "/recordings"}}}}
        try:
            for attempt in range(30):  # a CRD just created is served a few seconds later (503 until then)
                try:
                    self.create_session(ns, body)
                    break
                except ApiException as err:
                    if err.status != 503 or attempt == 29:
                        raise
                    time.sleep(1)
            if not watches.wait(lambda: "reel-rec-warmup" in watches.pod_added or not alive(), timeout) or not alive():
                raise SystemExit("the operator did not create the warm-up session's pod (see its log)")
            watches.wait(lambda: watches.phase.get("warmup") == "Starting", 30)
            self.stop_session(ns, "warmup")
            watches.wait(lambda: "reel-rec-warmup" in watches.pod_gone, timeout)
        finally:
            watches.close()
            self.delete_namespace(ns)


class KwokNode:
    NAME = "reel-kwok-0"
    TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
    TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}

    def __init__(self, cluster: Cluster, kwok: Path, stages: Path, workdir: Path):
        self.cluster, self.kwok, self.stages, self.workdir = cluster, kwok, stages, workdir
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> KwokNode:
        with suppress(ApiException):
            self.cluster.core.create_node({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.NAME, "labels": {"type": "kwok", "kubernetes.io/hostname": self.NAME},
                             "annotations": {"kwok.x-k8s.io/node": "fake"}},
                "spec": {"taints": [self.TAINT]}})
        self.log = open(self.workdir / "kwok.log", "w")  # closed in __exit__
        self.proc = subprocess.Popen(
            [str(self.kwok), "--kubeconfig", str(self.cluster.kubeconfig), "--manage-all-nodes=false",
             "--manage-nodes-with-label-selector=type=kwok", "--config", str(self.stages),
             "--cidr", "10.250.0.0/16", "--node-ip", "10.250.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            node = self.cluster.core.read_node(self.NAME)
            if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise SystemExit(f"the kwok node did not become Ready (log: {self.workdir / 'kwok.log'})")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        with suppress(ApiException):
            self.cluster.core.delete_node(self.NAME)


class Watches:
    """Pods (ADDED/DELETED receipt times) and sessions (last phase) of one namespace, from raw watches."""

    def __init__(self, cluster: Cluster, namespace: str):
        self.cluster, self.namespace = cluster, namespace
        self.pod_added: dict[str, float] = {}
        self.pod_gone: dict[str, float] = {}
        self.phase: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(kind,), daemon=True)
                         for kind in ("pods", "sessions")]
        self._ready = threading.Barrier(3)
        for t in self._threads:
            t.start()
        self._ready.wait(30)

    def _request(self, kind: str, rv: str | None):
        kw = {"watch": True, "_preload_content": False, "timeout_seconds": 60, "allow_watch_bookmarks": True}
        if rv:
            kw["resource_version"] = rv
        if kind == "pods":
            return self.cluster.core.list_namespaced_pod(self.namespace, **kw)
        return self.cluster.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, **kw)

    def _loop(self, kind: str) -> None:
        rv = None
        first = True
        while not self._stop.is_set():
            try:
                resp = self._request(kind, rv)
            except Exception:  # the API server may be busy: try again
                time.sleep(0.5)
                continue
            if first:
                first = False
                self._ready.wait(30)
            buf = b""
            try:
                for chunk in resp.stream(None, decode_content=False):
                    now = time.monotonic()
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            new = self._event(kind, json.loads(line), now)
                            rv = None if new == "" else (new or rv)
                    if self._stop.is_set():
                        break
            except Exception:  # connection cut: resume from the last resourceVersion
                pass
            finally:
                resp.release_conn()

    def _event(self, kind: str, ev: dict, now: float) -> str | None:
        obj = ev.get("object") or {}
        meta = obj.get("metadata") or {}
        if ev.get("type") == "ERROR":
            return ""  # expired: start again from now
        name = meta.get("name")
        if ev.get("type") != "BOOKMARK":
            if kind == "pods":
                if ev["type"] == "ADDED":
                    self.pod_added.setdefault(name, now)
                elif ev["type"] == "DELETED":
                    self.pod_gone.setdefault(name, now)
            elif ev["type"] == "DELETED":
                self.phase.pop(name, None)
            else:
                self.phase[name] = (obj.get("status") or {}).get("phase")
        return meta.get("resourceVersion")

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return bool(predicate())

    def close(self) -> None:
        self._stop.set()
