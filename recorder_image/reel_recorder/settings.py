"""Recorder settings: one object, read once from the environment at start (``cli.main``).

Every variable the recorder reads. The operator sets them on the recorder pod (operator/reel_operator/podspec.py);
run on its own, all are optional. Defaults in brackets.

Session
  REEL_SESSION               the RecordingSession manifest (YAML or JSON) when --session is not given
  REEL_VALIDATED_SESSION     internal: the validated manifest, handed from the validating stage to the
                             recording one across the exec (session.py)
Media
  REEL_MEDIA_ADDRESS         our address that Janus forwards RTP to [the one that routes to Janus]
  REEL_JANUS_MEDIA_ADDRESS   Janus's address for RTCP keyframe requests [the room server's host]
  REEL_WEBRTC_CONNECT_SECONDS  ingest webrtc: seconds for ICE + DTLS from Janus to connect before a participant
                             is skipped (ConnectFailed) [10]
Room credentials (files in --room-secrets win; room/credentials.py)
  REEL_ROOM_PIN, REEL_ROOM_SECRET, REEL_ROOM_ADMIN_KEY, REEL_ROOM_TOKEN, REEL_ROOM_TURN_USERNAME,
  REEL_ROOM_TURN_CREDENTIAL
In a recorder pod
  REEL_STATUS_TARGET         namespace/name of the session the recorder reports to and reads spec.paused of
                             [unset: not in a pod, progress only as JSON lines on stdout]
  REEL_SA_DIR                service-account folder (token, ca.crt) [/var/run/secrets/kubernetes.io/serviceaccount]
  REEL_SPEC_POLL_SECONDS     how often spec.paused is read [2]
  REEL_RESUME                JSON {"recordingId", "prefix", "reason", "interruptedAt"}: continue that recording,
                             whose earlier recorder was lost (the operator sets it on a replacement pod; resume.py)
  REEL_SPOOL_LIMIT           the spool's size limit in bytes (the pod's emptyDir sizeLimit, from the operator):
                             above 90 % of it new media is not recorded until uploads bring it below 70 %
                             (storage/spool.py) [unset: no limit; --spool-limit]
  KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT   the API server (set by Kubernetes) [kubernetes.default.svc, 443]
  REEL_LIVENESS_PORT         serve GET /healthz on this port for the kubelet's liveness probe: 200 while the event
                             loop turns, 503 when it is wedged (liveness.py) [unset: no endpoint; the operator
                             sets 8086]
  REEL_METRICS_PORT          serve Prometheus metrics (GET /metrics) on this port (metrics.py) [unset: none; the
                             operator sets 9102]
Process
  REEL_LOG_LEVEL             DEBUG | INFO | WARNING | ERROR [INFO]

A value that cannot work (a target without a namespace, a poll interval that is not a positive number, a port
that is not one, an unknown log level) is a ``SettingsError`` at start, naming the variable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from reel_api.vocabulary import InterruptionReason

from .resume import ResumeRequest
from .room.credentials import RoomCredentials
from .storage.spool import parse_size

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
VALIDATED_ENV = "REEL_VALIDATED_SESSION"
STATUS_API = "/apis/reel.dev/v1alpha1/namespaces/{namespace}/recordingsessions/{name}/status"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    session: str | None = None
    validated_session: str | None = None
    media_address: str | None = None
    janus_media_address: str | None = None
    room: RoomCredentials = field(default_factory=RoomCredentials)
    status_target: tuple[str, str] | None = None  # (namespace, name)
    sa_dir: str = SA_DIR
    spec_poll_seconds: float = 2.0
    api_host: str = "kubernetes.default.svc"
    api_port: str = "443"
    log_level: str = "INFO"
    resume: ResumeRequest | None = None
    liveness_port: int | None = None
    metrics_port: int | None = None
    spool_limit: int | None = None  # bytes
    webrtc_connect_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = (env.get(name) or "").strip()
            return value or None

        target = None
        if get("REEL_STATUS_TARGET"):
            namespace, _, name = get("REEL_STATUS_TARGET").partition("/")
            if not namespace or not name or "/" in name:
                raise SettingsError(f"REEL_STATUS_TARGET must be namespace/name, got {get('REEL_STATUS_TARGET')!r}")
            target = (namespace, name)
        def seconds(name: str, default: str) -> float:
            raw = get(name) or default
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not value > 0:
                raise SettingsError(f"{name}={raw!r}: must be a positive number of seconds")
            return value

        def port(name: str) -> int | None:
            raw = get(name)
            if raw is None:
                return None
            value = int(raw) if raw.isdigit() else 0
            if not 1 <= value <= 65535:
                raise SettingsError(f"{name}={raw!r}: must be a TCP port (1-65535)")
            return value

        poll_seconds = seconds("REEL_SPEC_POLL_SECONDS", "2")
        liveness_port = port("REEL_LIVENESS_PORT")
        metrics_port = port("REEL_METRICS_PORT")
        level = (get("REEL_LOG_LEVEL") or "INFO").upper()
        if level not in LOG_LEVELS:
            raise SettingsError(f"REEL_LOG_LEVEL={level!r}: expected one of {', '.join(LOG_LEVELS)}")
        resume = None
        if get("REEL_RESUME"):
            try:
                doc = json.loads(get("REEL_RESUME"))
                resume = ResumeRequest(prefix=doc["prefix"], recording_id=doc.get("recordingId") or None,
                                       reason=doc.get("reason") or InterruptionReason.RECORDER_LOST,
                                       interrupted_at=doc.get("interruptedAt") or None)
            except (ValueError, KeyError, TypeError) as err:
                raise SettingsError(f"REEL_RESUME: expected JSON with at least a prefix: {err}") from None
        spool_limit = None
        if get("REEL_SPOOL_LIMIT"):
            try:
                spool_limit = parse_size(get("REEL_SPOOL_LIMIT"))
            except ValueError as err:
                raise SettingsError(f"REEL_SPOOL_LIMIT: {err}") from None
        connect_seconds = seconds("REEL_WEBRTC_CONNECT_SECONDS", "10")
        return cls(
            webrtc_connect_seconds=connect_seconds,
            resume=resume,
            spool_limit=spool_limit,
            session=get("REEL_SESSION"),
            validated_session=get(VALIDATED_ENV),
            media_address=get("REEL_MEDIA_ADDRESS"),
            janus_media_address=get("REEL_JANUS_MEDIA_ADDRESS"),
            room=RoomCredentials(pin=get("REEL_ROOM_PIN"), secret=get("REEL_ROOM_SECRET"),
                                 admin_key=get("REEL_ROOM_ADMIN_KEY"), token=get("REEL_ROOM_TOKEN"),
                                 turn_username=get("REEL_ROOM_TURN_USERNAME"),
                                 turn_credential=get("REEL_ROOM_TURN_CREDENTIAL")),
            status_target=target,
            sa_dir=get("REEL_SA_DIR") or SA_DIR,
            spec_poll_seconds=poll_seconds,
            api_host=get("KUBERNETES_SERVICE_HOST") or "kubernetes.default.svc",
            api_port=get("KUBERNETES_SERVICE_PORT") or "443",
            log_level=level,
            liveness_port=liveness_port,
            metrics_port=metrics_port,
        )

    @property
    def in_pod(self) -> bool:
        """Run by the operator: status goes to the session, spec.paused is followed."""
        return self.status_target is not None

    @property
    def status_url(self) -> str:
        """The session's status subresource (PATCH our reports, GET the whole object for spec.paused)."""
        if self.status_target is None:
            raise SettingsError("REEL_STATUS_TARGET is not set: not in a recorder pod")
        host = f"[{self.api_host}]" if ":" in self.api_host else self.api_host
        namespace, name = self.status_target
        return f"https://{host}:{self.api_port}" + STATUS_API.format(namespace=namespace, name=name)
