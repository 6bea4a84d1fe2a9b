"""The ``reel-recorder`` command: checks that the recorder's own dependencies are installed, then runs cli.main.

``pip install reel`` gives the API models only; the recorder needs the ``recorder`` extra (PyAV/FFmpeg,
websockets, boto3, numpy, Pillow, prometheus-client, aiortc). Without it the command says what to install and exits 2
(as for any invalid use), instead of a traceback from deep inside an import.
"""

from __future__ import annotations

import importlib.util
import sys

#: Import names of the ``recorder`` extra (pyproject.toml), in its order.
NEEDED = ("av", "websockets", "boto3", "numpy", "PIL", "prometheus_client", "aiortc")


def missing() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def main() -> int | None:
    absent = missing()
    if absent:
        print(f"reel-recorder: missing {', '.join(absent)}: the recorder needs its media dependencies; install "
              "them with: pip install 'reel[recorder]' (from a checkout: pip install '.[recorder]')",
              file=sys.stderr)
        sys.exit(2)
    from .cli import main as cli_main

    return cli_main()  # its exit status (the console script passes it to sys.exit)
