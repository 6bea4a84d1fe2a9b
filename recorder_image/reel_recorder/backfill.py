"""``reel-recorder backfill``: move a BackedUp recording's backup-only objects into the primary store.

    reel-recorder backfill --manifest PREFIX/manifest.json [--until 2026-11-25T12:00:00Z] [--session FILE]

The session (``--session`` or REEL_SESSION, as for a recording) says where the stores are, read the way the
recorder reads them (``cli.open_stores``: ``--storage-secrets``/``--backup-storage-secrets`` folders, else
boto3's chain), and whether to keep the backup copies (``spec.backupStorage.keep``). The operator runs this as a
Job (operator/reel_operator/jobspec.py) with the recorder pod's volumes and arguments.

The work is ``storage.backfill.backfill_pass`` (its docstring has the rules). A pass that fails on a store error
(a store down, credentials refused) is run again after a backoff (2 s doubling, at most 60 s) until ``--until``;
a pass that finds what no retry can fix (a backup copy that differs from the manifest) ends at once.

Exit status and the final JSON (stdout, and ``--termination-log``): 0 done (``phase`` Completed, ``completedAt``,
``objects``/``bytes`` copied, ``backupDeleted``); 1 out of time (reason BackfillTimeout, the last error); 2 given
up for good (reason IntegrityMismatch or BackfillFailed); the backup is left intact unless the pass completed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from reel_api.vocabulary import FailureReason, Phase

from .session import Session, session_from_manifest, validated_manifest
from .storage import StoreError
from .storage.backfill import BackfillError, backfill_pass, prefix_of

log = logging.getLogger("reel.backfill")

EXIT_DONE, EXIT_OUT_OF_TIME, EXIT_GAVE_UP = 0, 1, 2
RETRY_FIRST, RETRY_MAX = 2.0, 60.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="reel-recorder backfill",
                                description="Copy a BackedUp recording's backup-only objects into the primary store.")
    p.add_argument("--manifest", required=True, help="object key of the recording's manifest.json (status.manifest)")
    p.add_argument("--session", default=None, help="RecordingSession manifest (YAML); default: REEL_SESSION")
    p.add_argument("--until", default=None, help="give up at this time (RFC 3339); default: in one hour")
    p.add_argument("--storage-secrets", help="folder with the primary store's AWS_* credentials")
    p.add_argument("--backup-storage-secrets", help="folder with the backup store's AWS_* credentials")
    p.add_argument("--workdir", default=None, help="folder for the temporary copies (default: the system's)")
    p.add_argument("--termination-log", default=None, help="write the final JSON here (e.g. /dev/termination-log)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    args.output = None  # cli.open_stores: the stores of spec.storage / spec.backupStorage
    return args


def deadline(until: str | None, now: float) -> float:
    """--until as a time.time() value."""
    if not until:
        return now + 3600.0
    return datetime.fromisoformat(until.replace("Z", "+00:00")).timestamp()


def run(session: Session, args, *, open_stores: Callable, sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time) -> tuple[int, dict]:
    """Pass after pass until done, given up or out of time: (exit status, final JSON)."""
    backup_spec = session.spec.backup_storage
    keep = bool(backup_spec and backup_spec.keep)
    try:
        prefix = prefix_of(args.manifest)
    except ValueError as err:
        return EXIT_GAVE_UP, _gave_up(FailureReason.BACKFILL_FAILED, str(err))
    until = deadline(args.until, clock())
    workdir = Path(args.workdir or tempfile.gettempdir())
    delay, attempt, last = RETRY_FIRST, 0, "no attempt made"
    while True:
        attempt += 1
        try:
            primary, backup = open_stores(args, session)
            if backup is None:
                return EXIT_GAVE_UP, _gave_up(FailureReason.BACKFILL_FAILED, "the session has no backupStorage")
            try:
                report = backfill_pass(primary, backup, prefix, keep=keep,
                                       segment_seconds=session.spec.recording.segment_seconds, workdir=workdir)
            finally:
                for store in (primary, backup):
                    store.close()
        except BackfillError as err:
            return EXIT_GAVE_UP, _gave_up(err.reason, err.message)
        except StoreError as err:
            last = str(err)
            log.warning("backfill attempt %d failed: %s", attempt, err)
            if clock() + delay >= until:
                return EXIT_OUT_OF_TIME, _gave_up(FailureReason.BACKFILL_TIMEOUT,
                                                  f"gave up after {attempt} attempt(s): {last}; the backup is intact")
            sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            continue
        message = (f"{report.copied} of {report.objects} object(s) ({report.copied_bytes} bytes) copied from the "
                   f"backup in {report.seconds:.1f} s; " + ("backup kept (keep: true)" if keep else
                                                            f"{report.deleted} backup object(s) deleted"))
        return EXIT_DONE, {"phase": Phase.COMPLETED, "message": message, "attempts": attempt,
                           "completedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                           **report.as_status(kept=keep)}


def _gave_up(reason: str, message: str) -> dict:
    return {"phase": Phase.BACKED_UP, "reason": reason, "message": message}


def main(argv: list[str]) -> int:
    from . import cli  # the recorder's own way to build the stores

    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from reel_api import SessionError

    try:
        settings = cli.Settings.from_env()
        source = Path(args.session) if args.session else (settings.session or "") + "\n"
        session = session_from_manifest(validated_manifest(source))
    except (SessionError, cli.SettingsError) as err:
        code, result = EXIT_GAVE_UP, _gave_up(FailureReason.BACKFILL_FAILED, f"invalid session: {err}")
    else:
        code, result = run(session, args, open_stores=cli.open_stores)
    text = json.dumps(result)
    print(text, flush=True)
    if args.termination_log:
        try:
            Path(args.termination_log).write_text(text[:4000])
        except OSError as err:
            log.warning("cannot write %s: %s", args.termination_log, err)
    return code
