"""``reel-recorder``: record one RecordingSession, on its own or in the recorder pod.

    reel-recorder --session session.yaml --output ./recordings

Room credentials (keys pin, secret, adminKey, token) come from ``--room-secrets DIR`` (a mounted Secret:
one file per key) or from the environment (REEL_ROOM_PIN, REEL_ROOM_SECRET, REEL_ROOM_ADMIN_KEY,
REEL_ROOM_TOKEN). Storage credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) come from
``--storage-secrets DIR`` / ``--backup-storage-secrets DIR``, else from boto3's standard chain.
Progress is printed as JSON lines on stdout. SIGTERM/SIGINT stop the recording; SIGUSR1 pauses it and SIGUSR2
resumes it (in a recorder pod, the session's spec.paused does this). Exit status: 0 when the recording ended normally
(Requested, NoUsers, MaxDuration) and is stored, 1 when it failed, 2 for an invalid session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from . import errors
from .control import PauseControl, poller_from_env
from .progress import JsonLinesProgress, ProgressSink
from .recorder import ERROR, Outcome, Recorder, RoomCredentials
from .session import VALIDATED_ENV, session_view, validated_manifest
from .storage import LocalStore, StoreError, Uploader, credentials_from_dir, open_store

log = logging.getLogger("reel.recorder")

ROOM_KEYS = {"pin": "REEL_ROOM_PIN", "secret": "REEL_ROOM_SECRET", "adminKey": "REEL_ROOM_ADMIN_KEY",
             "token": "REEL_ROOM_TOKEN"}


def room_credentials(folder: str | None, env: dict[str, str] | None = None) -> RoomCredentials:
    env = os.environ if env is None else env
    values: dict[str, str | None] = {}
    for key, var in ROOM_KEYS.items():
        value = None
        if folder and (Path(folder) / key).is_file():
            value = (Path(folder) / key).read_text().strip()
        values[key] = value if value is not None else (env.get(var) or None)
    return RoomCredentials(pin=values["pin"], secret=values["secret"], admin_key=values["adminKey"],
                           token=values["token"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="reel-recorder", description="Record a Janus VideoRoom room into HLS.")
    p.add_argument("--session", default=None,
                   help="RecordingSession manifest (YAML, as for kubectl); default: the REEL_SESSION variable "
                        "holding the manifest text (how the operator passes it)")
    p.add_argument("--output", help="record into this local folder instead of spec.storage")
    p.add_argument("--spool", help="local spool folder for segments not stored yet (default: a temp folder)")
    p.add_argument("--room-secrets", help="folder with the room credentials (pin, secret, adminKey, token)")
    p.add_argument("--storage-secrets", help="folder with the primary store's AWS_* credentials")
    p.add_argument("--backup-storage-secrets", help="folder with the backup store's AWS_* credentials")
    p.add_argument("--media-address", default=os.environ.get("REEL_MEDIA_ADDRESS"),
                   help="our address Janus forwards RTP to (default: the one that routes to Janus)")
    p.add_argument("--janus-media-address", default=os.environ.get("REEL_JANUS_MEDIA_ADDRESS"),
                   help="Janus's address for RTCP keyframe requests (default: the room server's host)")
    p.add_argument("--failover-after", type=float, default=30.0, help="seconds of primary failures before backup")
    p.add_argument("--backfill-deadline", type=float, default=300.0, help="seconds to keep backfilling after stop")
    p.add_argument("--upload-timeout", type=float, default=600.0, help="seconds to wait for uploads at the end")
    p.add_argument("--termination-log", default=None,
                   help="write the final status here as JSON (e.g. /dev/termination-log)")
    p.add_argument("--log-level", default=os.environ.get("REEL_LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def open_stores(args, session) -> tuple:
    if args.output:
        Path(args.output).mkdir(parents=True, exist_ok=True)
        primary = LocalStore(args.output, name="primary")
    else:
        primary = open_store(session.spec.storage, "primary", _creds(args.storage_secrets))
    backup = open_store(session.spec.backup_storage, "backup", _creds(args.backup_storage_secrets))
    return primary, backup


def _creds(folder: str | None):
    return credentials_from_dir(folder) if folder else None


def final_phase(outcome: Outcome, upload_status: str) -> str:
    if outcome.reason == ERROR or upload_status == "failed":
        return "Failed"
    return "BackedUp" if upload_status == "backed_up" else "Completed"


async def record(args, session, progress: ProgressSink) -> dict:
    stop = asyncio.Event()
    control = PauseControl(bool(session.spec.paused))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, control.set, True)  # pause (run on its own)
    loop.add_signal_handler(signal.SIGUSR2, control.set, False)  # resume
    poller = poller_from_env(control)  # in a pod: follows spec.paused of the session

    try:
        primary, backup = open_stores(args, session)
    except StoreError as err:
        return {"phase": "Failed", "stopReason": ERROR, "reason": errors.STORAGE_FAILED, "message": str(err)}
    uploader = Uploader(primary, backup, failover_after=args.failover_after,
                        backfill_deadline=args.backfill_deadline,
                        on_progress=lambda p: progress.report("upload", {"upload": p.as_status()}))
    try:
        for problem in await asyncio.to_thread(uploader.preflight):
            log.warning("storage: %s", problem)
    except StoreError as err:
        return {"phase": "Failed", "stopReason": ERROR, "reason": errors.STORAGE_FAILED, "message": str(err)}
    uploader.start()

    spool = Path(args.spool) if args.spool else Path(tempfile.mkdtemp(prefix="reel-spool-"))
    recorder = Recorder(session, credentials=room_credentials(args.room_secrets), uploader=uploader,
                        spool=spool, progress=progress, media_address=args.media_address,
                        janus_media_address=args.janus_media_address, control=control)
    try:
        outcome = await recorder.run(stop)
    finally:
        if poller is not None:
            poller.stop()
    recorder.phase = "Uploading"
    recorder.report("stopped")
    result = await asyncio.to_thread(uploader.close, args.upload_timeout)
    phase = final_phase(outcome, result.status)
    message = outcome.message
    if result.status != "uploaded":
        message = f"{message}; {result.message}" if message else result.message
    recorder.phase = phase
    status = recorder.status()
    status.update(stopReason=outcome.reason, reason=outcome.error_reason or outcome.reason, message=message)
    return status


def make_progress() -> ProgressSink:
    """JSON lines on stdout; in a recorder pod also patches to the session's status (k8s_status.py)."""
    progress: ProgressSink = JsonLinesProgress()
    if os.environ.get("REEL_STATUS_TARGET"):  # set by reel-operator
        from .k8s_status import KubeStatusSink
        from .progress import FanOut

        progress = FanOut(progress, KubeStatusSink.from_env())
    return progress


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    validated = os.environ.pop(VALIDATED_ENV, None)
    if validated is None:
        # Stage 1: validate with reel_api, then become the recording process (same PID, no pydantic).
        from reel_api import SessionError

        try:
            if args.session:
                manifest = validated_manifest(Path(args.session))
            elif os.environ.get("REEL_SESSION"):
                manifest = validated_manifest(os.environ["REEL_SESSION"].strip() + "\n")
            else:
                raise SessionError([("", "no session: pass --session FILE or set REEL_SESSION")])
        except SessionError as err:
            print(f"reel-recorder: {err}", file=sys.stderr)
            status = {"phase": "Failed", "stopReason": ERROR, "reason": errors.INVALID_SESSION, "message": str(err)}
            _finish(args, make_progress(), status)
            return 2
        os.environ[VALIDATED_ENV] = json.dumps(manifest)
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "reel_recorder.cli", *(sys.argv[1:] if argv is None else argv)])
    session = session_view(validated)
    progress = make_progress()
    status = asyncio.run(record(args, session, progress))
    _finish(args, progress, status)
    if status["phase"] == "Failed":
        print(f"reel-recorder: failed ({status.get('reason')}): {status.get('message')}", file=sys.stderr)
        return 1
    return 0


def _finish(args, progress: ProgressSink, status: dict) -> None:
    progress.report("finished", status)
    if args.termination_log:
        summary = {k: status.get(k) for k in ("phase", "stopReason", "reason", "message", "recordingId",
                                               "manifest")}
        try:
            Path(args.termination_log).write_text(json.dumps(summary)[:4000])
        except OSError as err:
            log.warning("cannot write %s: %s", args.termination_log, err)


if __name__ == "__main__":
    sys.exit(main())
