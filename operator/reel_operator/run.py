"""``reel-operator``: run the operator in a pod or from a workstation against any kubeconfig.

    reel-operator                      # settings from the environment (settings.py), kubeconfig or in-cluster
    reel-operator -n media -n other    # watch these namespaces (default: REEL_NAMESPACES, else all)
    reel-operator --standalone         # no peering (a single replica; the default when the CRDs are absent)

The same as ``kopf run -m reel_operator.main`` with our settings applied.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import kopf

from .settings import Settings, SettingsError

#: Handlers that run on every event or timer tick of every session or pod: kopf's INFO line after each run
#: ("Handler 'on_pod_event' succeeded.") was 40 of the 48 thousand lines of 1,000 sessions' log
#: (benchmarks/operator_scale.py) and ~9 % of the event loop's time. Shown only with --verbose or REEL_LOG_LEVEL=DEBUG.
ROUTINE_HANDLERS = ("on_session_event", "on_pod_event", "on_start_timer", "on_recording_timer",
                    "on_interruption_timer")


class RoutineSuccess(logging.Filter):
    """Drops kopf's INFO "succeeded" line of the ROUTINE_HANDLERS; their failures and everything else pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        return not (message.endswith(" succeeded.") and any(f"'{name}'" in message for name in ROUTINE_HANDLERS))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="reel-operator", description="The Reel operator (RecordingSession -> recorder)")
    p.add_argument("-n", "--namespace", action="append", default=[],
                   help="namespace to watch (repeatable, globs allowed); default REEL_NAMESPACES, else all")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="watch all namespaces")
    p.add_argument("--standalone", action="store_true", help="no peering with other replicas")
    p.add_argument("--priority", type=int, default=None, help="peering priority (default REEL_PEERING_PRIORITY)")
    p.add_argument("--liveness", default=None, help="liveness endpoint URL (default REEL_LIVENESS_ENDPOINT)")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = Settings.from_env()
    except SettingsError as err:
        print(f"reel-operator: {err}", file=sys.stderr)
        return 2
    if args.namespace:
        os.environ["REEL_NAMESPACES"] = ",".join(args.namespace)
    elif args.all_namespaces:
        os.environ["REEL_NAMESPACES"] = ""
    if args.standalone:
        os.environ["REEL_STANDALONE"] = "true"
    if args.priority is not None:
        os.environ["REEL_PEERING_PRIORITY"] = str(args.priority)
    cfg = Settings.from_env()  # what the startup handler will read, flags applied
    os.environ["REEL_PEERING_PRIORITY"] = str(cfg.peering_priority)  # a random one is drawn once
    debug = args.verbose or cfg.log_level.upper() == "DEBUG"
    kopf.configure(debug=debug, verbose=debug)
    logging.getLogger().setLevel(logging.DEBUG if debug else getattr(logging, cfg.log_level.upper(), logging.INFO))
    if not debug:
        logging.getLogger("kopf.objects").addFilter(RoutineSuccess())
    from . import main as _handlers  # noqa: F401  (registers the handlers)

    liveness = cfg.liveness_endpoint if args.liveness is None else args.liveness
    kopf.run(clusterwide=cfg.clusterwide, namespaces=list(cfg.namespaces), liveness_endpoint=liveness or None,
             standalone=cfg.standalone or None, priority=cfg.peering_priority)
    return 0


if __name__ == "__main__":
    sys.exit(main())
