"""``reel-recorder``: record one RecordingSession, on its own or in the recorder pod.

    reel-recorder --session session.yaml --output ./recordings

Room credentials (keys pin, secret, adminKey, token, turnUsername, turnCredential) come from
``--room-secrets DIR`` (a mounted Secret: one file per key) or from the environment (REEL_ROOM_PIN,
REEL_ROOM_SECRET, REEL_ROOM_ADMIN_KEY, REEL_ROOM_TOKEN, REEL_ROOM_TURN_USERNAME, REEL_ROOM_TURN_CREDENTIAL).
Storage credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) come from ``--storage-secrets DIR`` /
``--backup-storage-secrets DIR``, else from boto3's standard chain.
Progress is printed as JSON lines on stdout. SIGTERM/SIGINT stop the recording; SIGUSR1 pauses it and SIGUSR2
resumes it (in a recorder pod, the session's spec.paused does this). Exit status: 0 when the recording ended normally
(Requested, NoUsers, MaxDuration) and is stored, 1 when it failed, 2 for an invalid session, 3 when it was stopped
although its session was not (in a pod: a drain, an eviction, a deleted pod), so a replacement continues it
(``--resume PREFIX`` by hand).

``reel-recorder backfill --manifest KEY``: after a recording ended BackedUp, copy what is only in the backup store
into the primary (backfill.py; the operator runs it as a Job).

This module only builds the pieces (stores, uploader, room client, ingest) and wires the signals; the
recording's life and its phases belong to ``recorder.Recorder`` (docs/recorder.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from reel_api.vocabulary import FailureReason, InterruptionReason, Phase, StopReason

from . import errors
from .clock import RecordingClock
from .control import PauseControl, poller_for, stop_cause_for
from .ingest.choice import WEBRTC, choose_ingest
from .ingest.forward import ForwardIngest
from .liveness import Liveness
from .progress import JsonLinesProgress, ProgressSink
from .recorder import Recorder, failed_status
from .resume import ResumeRequest, read_back
from .room.credentials import RoomCredentials, room_credentials
from .room.janus import JanusRoom
from .session import Session, session_from_json, validated_manifest
from .settings import VALIDATED_ENV, Settings, SettingsError
from .storage import LocalStore, StoreError, Uploader, credentials_from_dir, open_store
from .storage.spool import SpoolBudget, parse_size

log = logging.getLogger("reel.recorder")

#: Exit status of a recorder that was stopped although its session was not: the recording goes on in a
#: replacement recorder (the operator starts one; docs/operator.md).
EXIT_INTERRUPTED = 3


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="reel-recorder", description="Record a Janus VideoRoom room into HLS.")
    p.add_argument("--session", default=None,
                   help="RecordingSession manifest (YAML, as for kubectl); default: the REEL_SESSION variable "
                        "holding the manifest text (how the operator passes it)")
    p.add_argument("--output", help="record into this local folder instead of spec.storage")
    p.add_argument("--spool", help="local spool folder for segments not stored yet (default: a temp folder)")
    p.add_argument("--spool-limit", type=_size, default=settings.spool_limit, metavar="BYTES",
                   help="the spool's size limit (2Gi, 500Mi, bytes): above 90%% of it new media is not recorded "
                        "(status DiskFull) until uploads bring it below 70%%; default: REEL_SPOOL_LIMIT, else none")
    p.add_argument("--room-secrets", help="folder with the room credentials (pin, secret, adminKey, token)")
    p.add_argument("--storage-secrets", help="folder with the primary store's AWS_* credentials")
    p.add_argument("--backup-storage-secrets", help="folder with the backup store's AWS_* credentials")
    p.add_argument("--media-address", default=settings.media_address,
                   help="our address Janus forwards RTP to (default: the one that routes to Janus)")
    p.add_argument("--janus-media-address", default=settings.janus_media_address,
                   help="Janus's address for RTCP keyframe requests (default: the room server's host)")
    p.add_argument("--failover-after", type=float, default=30.0, help="seconds of primary failures before backup")
    p.add_argument("--backfill-deadline", type=float, default=300.0, help="seconds to keep backfilling after stop")
    p.add_argument("--upload-timeout", type=float, default=600.0, help="seconds to wait for uploads at the end")
    p.add_argument("--resume", metavar="PREFIX", default=None,
                   help="continue the recording stored under PREFIX (its recorder was lost); in a pod the operator "
                        "sets REEL_RESUME instead")
    p.add_argument("--termination-log", default=None,
                   help="write the final status here as JSON (e.g. /dev/termination-log)")
    p.add_argument("--log-level", default=settings.log_level)
    return p.parse_args(argv)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def open_stores(args, session: Session) -> tuple:
    if args.output:
        Path(args.output).mkdir(parents=True, exist_ok=True)
        primary = LocalStore(args.output, name="primary")
    else:
        primary = open_store(session.spec.storage, "primary", _creds(args.storage_secrets))
    backup = open_store(session.spec.backup_storage, "backup", _creds(args.backup_storage_secrets))
    return primary, backup


def _creds(folder: str | None):
    return credentials_from_dir(folder) if folder else None


def local_address_towards(host: str, port: int) -> str:
    """The address of ours that the kernel would use to reach host (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return s.getsockname()[0]


def forward_ingest(room: JanusRoom, args, credentials: RoomCredentials, clock: RecordingClock):
    """Builds the forward ingest once the room is joined (Janus's address is known to resolve by then)."""
    def make() -> ForwardIngest:
        url = urlparse(room.url)
        janus_addr = args.janus_media_address or socket.gethostbyname(url.hostname)
        local = args.media_address or local_address_towards(janus_addr, url.port or 8188)
        return ForwardIngest(room, local_addr=local, janus_addr=janus_addr, clock=clock,
                             secret=credentials.secret, admin_key=credentials.admin_key)
    return make


def webrtc_ingest(room: JanusRoom, settings: Settings, credentials: RoomCredentials, clock: RecordingClock,
                  ice_urls=()):
    """Builds the WebRTC ingest (aiortc is imported only for it); ``ice_urls``: spec.room.iceServers."""
    def make():
        from .ingest.webrtc import WebRtcIngest, ice_servers

        return WebRtcIngest(room, clock=clock, pin=credentials.pin, connect_timeout=settings.webrtc_connect_seconds,
                            ice_servers=ice_servers(list(ice_urls), credentials.turn_username,
                                                    credentials.turn_credential))
    return make


def make_ingest(session: Session, room: JanusRoom, args, settings: Settings, credentials: RoomCredentials,
                clock: RecordingClock):
    """The ingest ``spec.recording.ingest`` asks for (``auto``: by the credentials given, ingest/choice.py)."""
    chosen = choose_ingest(session.spec.recording.ingest, credentials)
    log.info("ingest: %s (spec.recording.ingest: %s)", chosen, session.spec.recording.ingest)
    if chosen == WEBRTC:
        return webrtc_ingest(room, settings, credentials, clock, session.spec.room.ice_servers or ())
    return forward_ingest(room, args, credentials, clock)


async def record(args, settings: Settings, session: Session, progress: ProgressSink,
                 liveness: Liveness | None = None, metrics=None) -> dict:
    """Build the pieces (stores, uploader, room, ingest) and let the Recorder run the recording's life.
    ``liveness``: marked alive by a task of this loop, in every phase, until the loop ends (liveness.py).
    ``metrics``: the RecorderMetrics that ``progress`` feeds (metrics.py); it also reads the upload latencies."""
    if liveness is not None:
        liveness.start_beat()
    stop = asyncio.Event()
    control = PauseControl(bool(session.spec.paused), session.generation)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, control.set, True)  # pause (run on its own)
    loop.add_signal_handler(signal.SIGUSR2, control.set, False)  # resume

    try:
        primary, backup = open_stores(args, session)
    except StoreError as err:
        return failed_status(errors.STORAGE_FAILED, str(err))
    uploader = Uploader(primary, backup, failover_after=args.failover_after,
                        backfill_deadline=args.backfill_deadline,
                        on_progress=lambda p: progress.report("upload", {"upload": p.as_status()}))
    if metrics is not None:
        metrics.watch_uploads(uploader.latencies)
    credentials = room_credentials(args.room_secrets, settings.room)
    room = JanusRoom(session.spec.room.server, session.spec.room.id, token=credentials.token)
    clock = RecordingClock()
    spool = Path(args.spool) if args.spool else Path(tempfile.mkdtemp(prefix="reel-spool-"))
    spool_budget = SpoolBudget(spool, args.spool_limit) if args.spool_limit else None
    resume = ResumeRequest(prefix=args.resume, reason=InterruptionReason.RESUMED_BY_HAND) if args.resume \
        else settings.resume
    recorder = Recorder(session, room=room, make_ingest=make_ingest(session, room, args, settings, credentials, clock),
                        uploader=uploader, spool=spool, progress=progress, pin=credentials.pin, control=control,
                        clock=clock, upload_timeout=args.upload_timeout, resume=resume,
                        read_back=(lambda: read_back(primary, backup, resume.prefix)) if resume else None,
                        stop_cause=stop_cause_for(settings), spool_budget=spool_budget)
    poller = poller_for(settings, control)  # in a pod: follows spec.paused of the session
    try:
        return integrity_verdict(await recorder.run(stop), uploader.result)
    finally:
        if poller is not None:
            poller.stop()


def integrity_verdict(status: dict, result) -> dict:
    """A recording whose stored objects do not match its manifest (``Uploader.close``'s integrity check) ends
    Failed with stop reason Error and reason IntegrityMismatch (unless it failed for a reason of its own first)."""
    if result is None or result.reason != FailureReason.INTEGRITY_MISMATCH or status.get("interrupted") or \
            status.get("stopReason") == StopReason.ERROR:
        return status
    return {**status, "phase": Phase.FAILED, "stopReason": StopReason.ERROR, "reason": result.reason}


def make_progress(settings: Settings, metrics=None) -> ProgressSink:
    """JSON lines on stdout; in a recorder pod also patches to the session's status (k8s_status.py); and the
    metrics (metrics.py) when they are served."""
    progress: ProgressSink = JsonLinesProgress()
    if metrics is not None:
        from .progress import FanOut

        progress = FanOut(progress, metrics)
    if settings.in_pod:
        from .k8s_status import KubeStatusSink
        from .progress import FanOut

        progress = FanOut(progress, KubeStatusSink.for_pod(settings))
    return progress


def start_metrics(settings: Settings):
    """The Prometheus metrics on REEL_METRICS_PORT (in a pod), or None; a port that cannot be bound is logged,
    and the recording goes on without them."""
    if settings.metrics_port is None:
        return None
    from .metrics import RecorderMetrics

    metrics = RecorderMetrics()
    try:
        metrics.serve(settings.metrics_port)
    except OSError as err:
        log.error("cannot serve metrics on port %d: %s", settings.metrics_port, err)
        return None
    return metrics


def start_liveness(settings: Settings) -> Liveness | None:
    """The liveness endpoint on REEL_LIVENESS_PORT (in a pod); it lives until the process exits. A port that
    cannot be bound is logged, and the recording goes on without it."""
    if settings.liveness_port is None:
        return None
    try:
        return Liveness().serve(settings.liveness_port)
    except OSError as err:
        log.error("cannot serve the liveness endpoint on port %d: %s", settings.liveness_port, err)
        return None


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["backfill"]:  # reel-recorder backfill ...: after a BackedUp end (backfill.py)
        from .backfill import main as backfill_main

        return backfill_main(args_in[1:])
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        print(f"reel-recorder: {err}", file=sys.stderr)
        return 2
    args = parse_args(argv, settings)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.pop(VALIDATED_ENV, None)  # read into settings; not for the children of this process
    if settings.validated_session is None:
        # Stage 1: validate with reel_api, then become the recording process (same PID, no pydantic).
        from reel_api import SessionError

        try:
            if args.session:
                manifest = validated_manifest(Path(args.session))
            elif settings.session:
                manifest = validated_manifest(settings.session + "\n")
            else:
                raise SessionError([("", "no session: pass --session FILE or set REEL_SESSION")])
        except SessionError as err:
            print(f"reel-recorder: {err}", file=sys.stderr)
            status = failed_status(errors.INVALID_SESSION, str(err))
            _finish(args, make_progress(settings), status)
            return 2
        os.environ[VALIDATED_ENV] = json.dumps(manifest)
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "reel_recorder.cli", *(sys.argv[1:] if argv is None else argv)])
    session = session_from_json(settings.validated_session)
    metrics = start_metrics(settings)
    progress = make_progress(settings, metrics)
    status = asyncio.run(record(args, settings, session, progress, liveness=start_liveness(settings),
                                metrics=metrics))
    _finish(args, progress, status)
    if status["phase"] == Phase.FAILED:
        print(f"reel-recorder: failed ({status.get('reason')}): {status.get('message')}", file=sys.stderr)
        return 1
    if status.get("interrupted"):
        print(f"reel-recorder: interrupted: {status.get('message')}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _finish(args, progress: ProgressSink, status: dict) -> None:
    progress.report("finished", status)
    if args.termination_log:
        summary = {k: status.get(k) for k in ("phase", "stopReason", "reason", "message", "recordingId",
                                               "manifest")}
        if status.get("interrupted"):
            summary["interrupted"] = True
        try:
            Path(args.termination_log).write_text(json.dumps(summary)[:4000])
        except OSError as err:
            log.warning("cannot write %s: %s", args.termination_log, err)


if __name__ == "__main__":
    sys.exit(main())
