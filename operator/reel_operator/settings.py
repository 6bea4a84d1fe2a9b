"""Operator settings: one object, read once from the environment at start.

Every setting is an environment variable (the Helm chart sets them on the operator Deployment; a workstation
run reads the same ones). Defaults in brackets.

Recorder pods
  REEL_RECORDER_IMAGE                  recorder image [localhost/reel-recorder:dev]
  REEL_RECORDER_IMAGE_PULL_POLICY      Always | IfNotPresent | Never [IfNotPresent]
  REEL_RECORDER_COMMAND                the program, JSON list or words [reel-recorder]
  REEL_RECORDER_IMAGE_PULL_SECRETS     comma-separated Secret names, in each session's namespace []
  REEL_RECORDER_CPU_REQUEST            [100m]
  REEL_RECORDER_MEMORY_REQUEST         [128Mi]
  REEL_RECORDER_CPU_LIMIT              [1]        ("" = no limit)
  REEL_RECORDER_MEMORY_LIMIT           [512Mi]    ("" = no limit)
  REEL_COMPOSITE_CPU_REQUEST           the same four for sessions with spec.recording.mode composite or both,
  REEL_COMPOSITE_MEMORY_REQUEST        which decode, compose and encode: [300m] [256Mi] [2] [768Mi]
  REEL_COMPOSITE_CPU_LIMIT             (benchmarks/composite_cpu.py: 4 participants at 1280x720@15 take
  REEL_COMPOSITE_MEMORY_LIMIT          ~0.2 vCPU and ~140 MiB for the composite alone)
      A session may override these with the annotation reel.dev/recorder-resources holding a
      JSON {"requests": {...}, "limits": {...}} (merged over the defaults), within these maxima:
  REEL_RECORDER_MAX_RESOURCES          JSON object, resource -> quantity: the most a session's annotation may ask
                                       for (requests and limits); only cpu, memory and ephemeral-storage may be
                                       asked for at all, and no limit removed (reel_operator/resource_limits.py)
                                       [{"cpu": "4", "memory": "4Gi", "ephemeral-storage": "20Gi"}; {} = none]
  REEL_RECORDER_SPOOL_SIZE_LIMIT       sizeLimit of the spool emptyDir, passed to the recorder too (REEL_SPOOL_LIMIT):
                                       it records no new media above 90 % of it (DiskFull) [2Gi]
  REEL_RECORDER_UID                    runAsUser/runAsGroup/fsGroup of the recorder [10001]
  REEL_RECORDER_LOG_LEVEL              [INFO]
  REEL_RECORDER_NODE_SELECTOR          JSON object, e.g. {"reel.dev/media": "true"} [{}]
  REEL_RECORDER_TOLERATIONS            JSON list of tolerations [[]]
  REEL_RECORDER_PRIORITY_CLASS         priorityClassName ["" = none]
  REEL_TERMINATION_GRACE_SECONDS       recorder pods' terminationGracePeriodSeconds: time a stopped recorder
                                       has to close segments and finish uploading [300]; the recorder's
                                       --upload-timeout is this minus 20 s
  REEL_LOCAL_STORAGE_CLAIM             PVC mounted at spec.storage.local.path for sessions that record into a
                                       directory; "" = an emptyDir (lost with the pod: demos/tests only) [""]

Where sessions may point, and with which credentials (reel_operator/endpoints.py; the chart's admission
policy applies the same lists)
  REEL_DENIED_CIDRS                    comma-separated CIDRs/addresses no endpoint may be or resolve to [loopback,
                                       link-local, 0.0.0.0/8, ::, fd00:ec2::254: endpoints.DEFAULT_DENIED_CIDRS;
                                       "" = none]; KUBERNETES_SERVICE_HOST (the API server) is always added
  REEL_DENIED_HOSTS                    comma-separated names (".suffix" = every name under it) [localhost,
                                       kubernetes(.default(.svc(.cluster.local))), metadata.google.internal, ...]
  REEL_ALLOWED_HOSTS                   when set (or REEL_ALLOWED_CIDRS), every endpoint must be one of these
  REEL_ALLOWED_CIDRS                   names, or an address (every one its name resolves to) in these CIDRs [""]
  REEL_ALLOW_AMBIENT_CREDENTIALS       true: an S3 store without credentialsSecretRef may use the recorder's
                                       ambient cloud credentials (web identity, instance profile); false: such
                                       a session fails (CredentialsRequired) [false]
  REEL_RECORDER_SERVICE_ACCOUNT_ANNOTATIONS  JSON object, annotations of each session's recorder
                                       ServiceAccount when ambient credentials are allowed, e.g.
                                       {"eks.amazonaws.com/role-arn": "arn:aws:iam::...:role/rec"} [{}]

Lifecycle
  REEL_START_TIMEOUT_SECONDS           a pod not running by then (unschedulable, slow pull) -> Failed [180]
  REEL_DELETE_TIMEOUT_SECONDS          a deleted session waits this long for its recorder to finish uploading,
                                       then the pod is force-deleted and the finalizer removed
                                       [termination grace + 30]

Webhooks (spec.notify.webhook; reel_operator/webhooks/)
  REEL_WEBHOOK_RETRY_SECONDS           an event not accepted (2xx) within this long of its first attempt is
                                       dropped (Warning Event WebhookDropped) and the next one sent [900]
  REEL_WEBHOOK_BACKOFF_SECONDS         first retry delay, doubling per attempt [1]
  REEL_WEBHOOK_BACKOFF_MAX_SECONDS     the longest delay between two attempts [30]
  REEL_WEBHOOK_TIMEOUT_SECONDS         one POST's connect + response timeout [5]
  REEL_WEBHOOK_PROGRESS_SECONDS        upload.progress at most this often per session [60]
  REEL_WEBHOOK_WORKERS                 sessions delivered to at once (each session's events in order) [4]

Operator process
  REEL_NAMESPACES                      comma-separated namespaces (globs allowed) to watch; "" = cluster-wide [""]
  REEL_PEERING_NAME                    kopf peering object name (KopfPeering/ClusterKopfPeering, CRDs in crds/)
                                       ["reel"]
  REEL_PEERING_PRIORITY                this replica's priority; the highest live replica works, others wait
                                       [random, so two replicas never share one]
  REEL_STANDALONE                      true = no peering (a single replica) [false]
  REEL_LIVENESS_ENDPOINT               kopf liveness endpoint ["http://0.0.0.0:8080/healthz"; "" = off]
  REEL_METRICS_PORT                    serve Prometheus metrics on this port (/metrics) [0 = off]
  REEL_LOG_LEVEL                       operator log level [INFO]
  REEL_HANDLER_THREADS                 threads that run the handlers (they wait on the API server most of the
                                       time), as many that finish starts after their pod, and API connections
                                       kept open [16]
  REEL_ACCOUNT_POOL                    recorder ServiceAccounts kept made ahead per namespace where sessions
                                       start, so that a start creates its pod in one round trip (accounts.py)
                                       [16; 0 = each start makes its own first]
  REEL_ACCOUNT_OWNER                   the ClusterRole that owns the free accounts made ahead, so that they go
                                       with it (the chart's own: uninstalled, nothing is left) [""]
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from .endpoints import DEFAULT_DENIED_CIDRS, DEFAULT_DENIED_HOSTS
from .resource_limits import DEFAULT_MAX_RESOURCES, maxima_problems

#: Our finalizer and the prefix of kopf's annotations (progress, last-handled-configuration).
FINALIZER = "reel.dev/finalizer"
ANNOTATION_PREFIX = "reel.dev"
#: Per-session override of the recorder's resources (JSON {"requests": {...}, "limits": {...}}).
RESOURCES_ANNOTATION = "reel.dev/recorder-resources"


class SettingsError(ValueError):
    """An environment variable with a value we cannot use."""


@dataclass(frozen=True)
class Settings:
    recorder_image: str = "localhost/reel-recorder:dev"
    image_pull_policy: str = "IfNotPresent"
    recorder_command: tuple[str, ...] = ("reel-recorder",)
    image_pull_secrets: tuple[str, ...] = ()
    requests: Mapping[str, str] = field(default_factory=lambda: {"cpu": "100m", "memory": "128Mi"})
    limits: Mapping[str, str] = field(default_factory=lambda: {"cpu": "1", "memory": "512Mi"})
    composite_requests: Mapping[str, str] = field(default_factory=lambda: {"cpu": "300m", "memory": "256Mi"})
    composite_limits: Mapping[str, str] = field(default_factory=lambda: {"cpu": "2", "memory": "768Mi"})
    max_resources: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MAX_RESOURCES))
    spool_size_limit: str = "2Gi"
    recorder_uid: int = 10001
    recorder_log_level: str = "INFO"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping, ...] = ()
    priority_class: str = ""
    termination_grace_seconds: int = 300
    local_storage_claim: str = ""
    start_timeout_seconds: float = 180.0
    delete_timeout_seconds: float = 330.0
    denied_cidrs: tuple[str, ...] = DEFAULT_DENIED_CIDRS
    denied_hosts: tuple[str, ...] = DEFAULT_DENIED_HOSTS
    allowed_hosts: tuple[str, ...] = ()
    allowed_cidrs: tuple[str, ...] = ()
    allow_ambient_credentials: bool = False
    recorder_service_account_annotations: Mapping[str, str] = field(default_factory=dict)
    namespaces: tuple[str, ...] = ()
    peering_name: str = "reel"
    peering_priority: int = 0
    standalone: bool = False
    liveness_endpoint: str = "http://0.0.0.0:8080/healthz"
    metrics_port: int = 0
    log_level: str = "INFO"
    handler_threads: int = 16
    account_pool: int = 16
    account_owner: str = ""
    webhook_retry_seconds: float = 900.0
    webhook_backoff_seconds: float = 1.0
    webhook_backoff_max_seconds: float = 30.0
    webhook_timeout_seconds: float = 5.0
    webhook_progress_seconds: float = 60.0
    webhook_workers: int = 4

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def recorder_sa_annotations(self) -> dict[str, str]:
        """Annotations of each recorder ServiceAccount: only when ambient credentials are allowed."""
        return dict(self.recorder_service_account_annotations) if self.allow_ambient_credentials else {}

    @property
    def upload_timeout_seconds(self) -> int:
        """What the recorder may spend uploading after a stop: the grace period minus a margin."""
        return max(10, self.termination_grace_seconds - 20)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        r = _Reader(env)
        grace = r.int("REEL_TERMINATION_GRACE_SECONDS", 300, minimum=10)
        return cls(
            recorder_image=r.str("REEL_RECORDER_IMAGE", cls.recorder_image),
            image_pull_policy=r.choice("REEL_RECORDER_IMAGE_PULL_POLICY", "IfNotPresent",
                                       ("Always", "IfNotPresent", "Never")),
            recorder_command=r.words("REEL_RECORDER_COMMAND", ("reel-recorder",)),
            image_pull_secrets=r.list("REEL_RECORDER_IMAGE_PULL_SECRETS"),
            requests=_quantities(cpu=r.str("REEL_RECORDER_CPU_REQUEST", "100m"),
                                 memory=r.str("REEL_RECORDER_MEMORY_REQUEST", "128Mi")),
            limits=_quantities(cpu=r.str("REEL_RECORDER_CPU_LIMIT", "1"),
                               memory=r.str("REEL_RECORDER_MEMORY_LIMIT", "512Mi")),
            composite_requests=_quantities(cpu=r.str("REEL_COMPOSITE_CPU_REQUEST", "300m"),
                                           memory=r.str("REEL_COMPOSITE_MEMORY_REQUEST", "256Mi")),
            composite_limits=_quantities(cpu=r.str("REEL_COMPOSITE_CPU_LIMIT", "2"),
                                         memory=r.str("REEL_COMPOSITE_MEMORY_LIMIT", "768Mi")),
            max_resources=_maxima(r.json("REEL_RECORDER_MAX_RESOURCES", DEFAULT_MAX_RESOURCES, dict)),
            spool_size_limit=r.str("REEL_RECORDER_SPOOL_SIZE_LIMIT", "2Gi"),
            recorder_uid=r.int("REEL_RECORDER_UID", 10001, minimum=1),
            recorder_log_level=r.str("REEL_RECORDER_LOG_LEVEL", "INFO"),
            node_selector=r.json("REEL_RECORDER_NODE_SELECTOR", {}, dict),
            tolerations=tuple(r.json("REEL_RECORDER_TOLERATIONS", [], list)),
            priority_class=r.str("REEL_RECORDER_PRIORITY_CLASS", ""),
            termination_grace_seconds=grace,
            local_storage_claim=r.str("REEL_LOCAL_STORAGE_CLAIM", ""),
            start_timeout_seconds=r.float("REEL_START_TIMEOUT_SECONDS", 180.0),
            delete_timeout_seconds=r.float("REEL_DELETE_TIMEOUT_SECONDS", grace + 30.0),
            denied_cidrs=r.cidrs("REEL_DENIED_CIDRS", DEFAULT_DENIED_CIDRS) + _api_server(env),
            denied_hosts=r.list("REEL_DENIED_HOSTS", DEFAULT_DENIED_HOSTS),
            allowed_hosts=r.list("REEL_ALLOWED_HOSTS"),
            allowed_cidrs=r.cidrs("REEL_ALLOWED_CIDRS", ()),
            allow_ambient_credentials=r.bool("REEL_ALLOW_AMBIENT_CREDENTIALS", False),
            recorder_service_account_annotations=r.json("REEL_RECORDER_SERVICE_ACCOUNT_ANNOTATIONS", {}, dict),
            namespaces=r.list("REEL_NAMESPACES"),
            peering_name=r.str("REEL_PEERING_NAME", "reel"),
            peering_priority=r.int("REEL_PEERING_PRIORITY", random.randint(1, 2**30), minimum=0),
            standalone=r.bool("REEL_STANDALONE", False),
            liveness_endpoint=r.str("REEL_LIVENESS_ENDPOINT", "http://0.0.0.0:8080/healthz"),
            metrics_port=r.int("REEL_METRICS_PORT", 0, minimum=0),
            log_level=r.str("REEL_LOG_LEVEL", "INFO"),
            handler_threads=r.int("REEL_HANDLER_THREADS", 16, minimum=1),
            account_pool=r.int("REEL_ACCOUNT_POOL", 16, minimum=0),
            account_owner=r.str("REEL_ACCOUNT_OWNER", ""),
            webhook_retry_seconds=r.float("REEL_WEBHOOK_RETRY_SECONDS", 900.0),
            webhook_backoff_seconds=r.float("REEL_WEBHOOK_BACKOFF_SECONDS", 1.0),
            webhook_backoff_max_seconds=r.float("REEL_WEBHOOK_BACKOFF_MAX_SECONDS", 30.0),
            webhook_timeout_seconds=r.float("REEL_WEBHOOK_TIMEOUT_SECONDS", 5.0),
            webhook_progress_seconds=r.float("REEL_WEBHOOK_PROGRESS_SECONDS", 60.0),
            webhook_workers=r.int("REEL_WEBHOOK_WORKERS", 4, minimum=1),
        )


def _api_server(env: Mapping[str, str]) -> tuple[str, ...]:
    """The API server's address as this process sees it (in a pod), when it is an IP address."""
    host = (env.get("KUBERNETES_SERVICE_HOST") or "").strip()
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        return ()


def _maxima(values: Mapping) -> dict[str, str]:
    """REEL_RECORDER_MAX_RESOURCES checked: known resources, positive quantities (as strings)."""
    problems = maxima_problems(values)
    if problems:
        raise SettingsError(f"REEL_RECORDER_MAX_RESOURCES: {'; '.join(problems)}")
    return {k: str(v) for k, v in values.items()}


def _quantities(**values: str) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return None if value is None else value.strip()

    def str(self, name: str, default: str) -> str:
        value = self._raw(name)
        return default if value is None else value

    def int(self, name: str, default: int, minimum: int | None = None) -> int:
        value = self._raw(name)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r}: not an integer") from None
        if minimum is not None and number < minimum:
            raise SettingsError(f"{name}={value!r}: must be at least {minimum}")
        return number

    def float(self, name: str, default: float) -> float:
        value = self._raw(name)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r}: not a number") from None
        if number <= 0:
            raise SettingsError(f"{name}={value!r}: must be positive")
        return number

    def bool(self, name: str, default: bool) -> bool:
        value = self._raw(name)
        if not value:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={value!r}: expected true or false")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self._raw(name) or default
        if value not in allowed:
            raise SettingsError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
        return value

    def list(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """Comma-separated; unset = ``default``, "" = empty."""
        value = self._raw(name)
        if value is None:
            return default
        return tuple(item.strip() for item in value.split(",") if item.strip())

    def cidrs(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Comma-separated CIDRs or addresses, each checked."""
        values = self.list(name, default)
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise SettingsError(f"{name}: {value!r} is not a CIDR or an IP address") from None
        return values

    def words(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._raw(name)
        if not value:
            return default
        if value.startswith("["):
            parsed = self.json(name, [], list)
            return tuple(str(w) for w in parsed)
        return tuple(shlex.split(value))

    def json(self, name: str, default, kind: type):
        value = self._raw(name)
        if not value:
            return default
        try:
            parsed = json.loads(value)
        except ValueError as e:
            raise SettingsError(f"{name}: not valid JSON: {e}") from None
        if not isinstance(parsed, kind):
            raise SettingsError(f"{name}: expected a JSON {'object' if kind is dict else 'list'}")
        return parsed
