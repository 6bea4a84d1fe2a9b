"""What the end-to-end tests and the demo do on a cluster: namespaces, the chart, Janus, MinIO, publishers,
RecordingSessions, and reading results back. Plain functions over kubectl/helm and the Kubernetes client.

The cluster is the one ``make cluster-up`` started (``$KUBECONFIG``, else ``$REEL_CACHE/kubeconfig``); images
come from ``tests/images/build.sh`` (``localhost/reel-*:dev``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import yaml
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("REEL_CACHE") or Path.home() / ".cache" / "reel")
GROUP, VERSION, PLURAL = "reel.dev", "v1alpha1", "recordingsessions"
IMAGES = {
    "operator": os.environ.get("OPERATOR_IMAGE", "localhost/reel-operator:dev"),
    "recorder": os.environ.get("RECORDER_IMAGE", "localhost/reel-recorder:dev"),
    "janus": os.environ.get("JANUS_IMAGE", "localhost/reel-janus:dev"),
    "publisher": os.environ.get("PUBLISHER_IMAGE", "localhost/reel-publisher:dev"),
    "minio": os.environ.get("MINIO_IMAGE", "localhost/reel-minio:dev"),
}
ADMIN_KEY = "e2e-admin-key"
ROOM_SECRET = "e2e-room-secret"
S3_USER, S3_PASSWORD = "reeladmin", "reel-secret-key-1"
UID = 10001
HARDENED = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def kubeconfig_path() -> Path:
    env = os.environ.get("KUBECONFIG")
    return Path(env) if env and Path(env).is_file() else CACHE / "kubeconfig"


def tool(name: str) -> str:
    ours = CACHE / "bin" / name
    return str(ours) if ours.is_file() else (shutil.which(name) or name)



class Kit:
    def __init__(self, kubeconfig: Path | None = None):
        from kubernetes import client, config

        self.kubeconfig = kubeconfig or kubeconfig_path()
        self.api = config.new_client_from_config(str(self.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    # -- tools ---------------------------------------------------------------------------------------------
    def run(self, argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 300):
        r = subprocess.run(argv, input=input, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:6])}... failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
        return r

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300):
        return self.run([tool("kubectl"), *args], input=input, check=check, timeout=timeout)

    def apply(self, ns: str, *objects: dict) -> None:
        self.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(objects))

    # -- namespaces and the chart ----------------------------------------------------------------------------
    def create_namespace(self, prefix: str = "reel-e2e") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        wait_for(lambda: self._has_default_sa(name), 60, f"default ServiceAccount in {name}")
        return name

    def _has_default_sa(self, ns: str) -> bool:
        return self.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0

    def delete_namespace(self, ns: str, wait: bool = True) -> None:
        self.kubectl("delete", "namespace", ns, "--ignore-not-found", f"--wait={str(wait).lower()}",
                     "--timeout=180s", check=False, timeout=240)

    def helm_install(self, release: str, ns: str, *, values: dict | None = None, timeout: str = "180s") -> None:
        vals = {
            "image": {"repository": IMAGES["operator"].rsplit(":", 1)[0], "tag": IMAGES["operator"].rsplit(":", 1)[1],
                      "pullPolicy": "Never"},
            "recorder": {"image": {"repository": IMAGES["recorder"].rsplit(":", 1)[0],
                                   "tag": IMAGES["recorder"].rsplit(":", 1)[1], "pullPolicy": "Never"},
                         # a stopped recorder's upload budget; keeps a test with the primary store down short
                         "terminationGracePeriodSeconds": 120},
            "watchNamespaces": [ns],
            **(values or {}),
        }
        self.run([tool("helm"), "upgrade", "--install", release, str(REPO / "charts" / "reel"), "-n", ns,
                  "--wait", "--timeout", timeout, "-f", "-"], input=yaml.safe_dump(vals), timeout=400)

    def helm_uninstall(self, release: str, ns: str) -> None:
        self.run([tool("helm"), "uninstall", release, "-n", ns, "--wait", "--timeout", "120s"], check=False,
                 timeout=200)

    # -- servers ---------------------------------------------------------------------------------------------
    def _deployment(self, ns: str, name: str, image: str, *, env: dict, ports: list[int], args=None,
                    volumes=None, mounts=None, headless: bool = False, readonly: bool = True,
                    ready_path: str | None = None) -> None:
        container = {"name": name, "image": image, "imagePullPolicy": "Never",
                     "env": [{"name": k, "value": str(v)} for k, v in env.items()],
                     "ports": [{"containerPort": p} for p in ports],
                     "securityContext": {**HARDENED, "readOnlyRootFilesystem": readonly},
                     "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(mounts or [])]}
        if args:
            container["args"] = args
        if ready_path:
            container["readinessProbe"] = {"httpGet": {"path": ready_path, "port": ports[0]},
                                           "periodSeconds": 1, "failureThreshold": 120}
        labels = {"app": name}
        deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
                  "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                      "metadata": {"labels": labels},
                      "spec": {"containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}},
                                                                      *(volumes or [])]}}}}
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
               "spec": {"selector": labels, "ports": [{"name": f"p{p}", "port": p} for p in ports]}}
        if headless:
            svc["spec"]["clusterIP"] = "None"
        self.apply(ns, deploy, svc)

    def wait_deployment(self, ns: str, name: str, timeout: float = 180) -> None:
        self.kubectl("rollout", "status", f"deployment/{name}", "-n", ns, f"--timeout={int(timeout)}s",
                     timeout=timeout + 30)

    def deploy_janus(self, ns: str, rooms: list[int], *, admin_key: str = ADMIN_KEY, room_secret: str = ROOM_SECRET,
                     pin: str | None = None) -> str:
        """Janus with the given rooms (H.264 + Opus); returns the WebSocket URL for sessions. Secret ``room``
        holds the credentials (``adminKey``, ``secret`` and, with a ``pin``, ``pin``).

        The Service is headless: the name resolves to the pod IP, where the recorder sends its RTCP keyframe
        requests (Janus's forwarder RTCP ports are not Service ports).
        """
        self._deployment(ns, "janus", IMAGES["janus"], ports=[8188, 8088], headless=True, env={
            "JANUS_ADMIN_KEY": admin_key, "JANUS_ROOMS": ",".join(map(str, rooms)),
            "JANUS_ROOM_SECRET": room_secret, **({"JANUS_ROOM_PIN": pin} if pin else {})})
        self.apply(ns, secret("room", {"adminKey": admin_key, "secret": room_secret, **({"pin": pin} if pin else {})}))
        return f"ws://janus.{ns}.svc.cluster.local:8188"

    def deploy_minio(self, ns: str, name: str = "minio", *, user: str = S3_USER, password: str = S3_PASSWORD) -> str:
        """A MinIO server (emptyDir data); returns its in-cluster endpoint URL. Secret ``s3`` holds its keys."""
        self._deployment(ns, name, IMAGES["minio"], ports=[9000], env={
            "MINIO_ROOT_USER": user, "MINIO_ROOT_PASSWORD": password, "MINIO_BROWSER": "off"},
            volumes=[{"name": "data", "emptyDir": {}}], mounts=[{"name": "data", "mountPath": "/data"}],
            ready_path="/minio/health/ready")
        self.apply(ns, secret("s3", {"AWS_ACCESS_KEY_ID": user, "AWS_SECRET_ACCESS_KEY": password}))
        return f"http://{name}.{ns}.svc.cluster.local:9000"

    def deploy_room_and_store(self, ns: str, rooms: list[int], bucket: str = "recordings") -> tuple[str, str]:
        """Janus with ``rooms`` and a MinIO with ``bucket``, both ready; returns (Janus URL, MinIO endpoint)."""
        server = self.deploy_janus(ns, rooms)
        endpoint = self.deploy_minio(ns)
        self.wait_deployment(ns, "janus")
        self.wait_deployment(ns, "minio")
        self.create_bucket(ns, bucket)
        return server, endpoint

    @contextlib.contextmanager
    def port_forward(self, ns: str, target: str, port: int):
        """``kubectl port-forward`` to a local port on 127.0.0.1; yields the local port."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            local = s.getsockname()[1]
        proc = subprocess.Popen([tool("kubectl"), "port-forward", "-n", ns, "--address", "127.0.0.1", target,
                                 f"{local}:{port}"], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            def ready():
                with socket.socket() as c:
                    return c.connect_ex(("127.0.0.1", local)) == 0
            wait_for(lambda: ready() or proc.poll() is not None, 60, f"port-forward {target}")
            if proc.poll() is not None:
                raise RuntimeError(f"port-forward {target} failed: {proc.stderr.read()}")
            yield local
        finally:
            proc.terminate()
            proc.wait(10)

    @contextlib.contextmanager
    def s3(self, ns: str, name: str = "minio", *, user: str = S3_USER, password: str = S3_PASSWORD):
        import boto3
        from botocore.config import Config

        with self.port_forward(ns, f"svc/{name}", 9000) as port:
            yield boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=user,
                               aws_secret_access_key=password, region_name="us-east-1",
                               config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}))

    def create_bucket(self, ns: str, bucket: str, name: str = "minio", **keys: str) -> None:
        """``keys``: ``user``/``password`` of a MinIO deployed with its own (``deploy_minio``)."""
        with self.s3(ns, name, **keys) as s3:
            wait_for(lambda: _try(lambda: s3.create_bucket(Bucket=bucket)), 120, f"bucket {bucket}", interval=2)

    # -- participants ---------------------------------------------------------------------------------------
    def start_publisher(self, ns: str, display: str, room: int, duration: float | None = None, *extra: str) -> str:
        name = f"pub-{display}-{uuid.uuid4().hex[:4]}".lower()
        args = ["--ws", f"ws://janus.{ns}.svc.cluster.local:8188", "--room", str(room), "--display", display]
        if duration is not None:
            args += ["--duration", str(duration)]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "publisher"}},
               "spec": {"restartPolicy": "Never", "containers": [{
                   "name": "publisher", "image": IMAGES["publisher"], "imagePullPolicy": "Never",
                   "args": [*args, *extra], "securityContext": HARDENED,
                   "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
                   "volumes": [{"name": "tmp", "emptyDir": {}}]}}
        self.apply(ns, pod)
        return name

    def wait_published(self, ns: str, pod: str, timeout: float = 120) -> None:
        wait_for(lambda: '"published"' in self.logs(ns, pod), timeout, f"{pod} publishing")

    def logs(self, ns: str, pod: str, container: str | None = None) -> str:
        args = ["logs", "-n", ns, pod] + (["-c", container] if container else [])
        r = self.kubectl(*args, check=False)
        return r.stdout + (r.stderr if r.returncode else "")

    def signal_container(self, ns: str, pod: str, container: str, sig: str = "KILL") -> None:
        """Send a signal to a container's main process from inside the kind node (as the kernel's OOM killer or
        a crash would end it: no graceful stop, no Kubernetes involved)."""
        provider = subprocess.run(["bash", "-c", f". {REPO}/hack/kind/lib.sh && detect_provider"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        cli = "docker" if provider == "docker" else "podman"
        node = f"{os.environ.get('REEL_CLUSTER', 'reel')}-control-plane"
        find = (f"crictl ps -q --name '^{container}$' --label io.kubernetes.pod.name={pod} "
                f"--label io.kubernetes.pod.namespace={ns}")
        script = f"kill -{sig} $(crictl inspect -o go-template --template '{{{{.info.pid}}}}' $({find}))"
        self.run([cli, "exec", node, "sh", "-c", script])

    # -- sessions --------------------------------------------------------------------------------------------
    def create_session(self, ns: str, name: str, spec: dict, annotations: dict | None = None) -> dict:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RecordingSession",
                "metadata": {"name": name, **({"annotations": annotations} if annotations else {})}, "spec": spec}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    def session(self, ns: str, name: str) -> dict | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def phase(self, ns: str, name: str) -> str | None:
        obj = self.session(ns, name)
        return ((obj or {}).get("status") or {}).get("phase")

    def stop_session(self, ns: str, name: str) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": {"stop": True}})

    def set_paused(self, ns: str, name: str, paused: bool) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": {"paused": paused}})

    def delete_session(self, ns: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)

    def wait_phase(self, ns: str, name: str, phases: set[str], timeout: float = 180) -> dict:
        wait_for(lambda: self.phase(ns, name) in phases, timeout, f"{name} phase in {sorted(phases)}")
        return self.session(ns, name)

    def pods(self, ns: str, selector: str = "") -> list:
        return self.core.list_namespaced_pod(ns, label_selector=selector).items

    def recorder_pods(self, ns: str, session: str) -> list:
        return [p for p in self.pods(ns) if any(o.kind == "RecordingSession" and o.name == session
                                                for o in (p.metadata.owner_references or []))]

    # -- diagnostics -----------------------------------------------------------------------------------------
    def dump(self, ns: str) -> str:
        """Sessions (with status), events and every pod's log: printed when a test fails."""
        out = [f"===== namespace {ns}"]
        out.append(self.kubectl("get", "recs", "-n", ns, "-o", "wide", check=False).stdout)
        out.append(self.kubectl("get", "recs", "-n", ns, "-o", "yaml", check=False).stdout[-6000:])
        out.append(self.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout)
        out.append(self.kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False).stdout[-6000:])
        for pod in self.pods(ns):
            for c in pod.spec.containers:
                out.append(f"----- logs {pod.metadata.name}/{c.name}")
                out.append(self.logs(ns, pod.metadata.name, c.name)[-4000:])
        return "\n".join(out)


def secret(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def _try(fn) -> bool:
    try:
        fn()
        return True
    except Exception as e:  # bucket creation races the server's start; "already owned" means done
        return "BucketAlreadyOwnedByYou" in str(e)


def session_spec(server: str, room: int, *, bucket: str = "recordings", endpoint: str, backup: dict | None = None,
                 recording: dict | None = None, prefix: str | None = None) -> dict:
    storage = {"bucket": bucket, "endpoint": endpoint, "credentialsSecretRef": {"name": "s3"}}
    if prefix:
        storage["prefix"] = prefix
    spec = {"room": {"server": server, "id": room, "credentialsSecretRef": {"name": "room"}},
            "recording": {"maxIdleSeconds": 30, "segmentSeconds": 4, **(recording or {})},
            "storage": storage}
    if backup:
        spec["backupStorage"] = backup
    return spec


def list_objects(s3, bucket: str, prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = obj["Size"]
    return out


def download(s3, bucket: str, keys, dest: Path) -> list[Path]:
    paths = []
    for key in keys:
        path = dest / key
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(path))
        paths.append(path)
    return paths


def manifest_of(s3, bucket: str, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
