"""Running test publishers (``python -m tests.harness.publisher``) from pytest and reading their reports."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .netns import TestNetwork

REPO_ROOT = Path(__file__).resolve().parents[2]


def publisher_argv(ws_url: str, room: int, **opts: Any) -> list[str]:
    """Command line for a publisher.  ``opts`` map to flags: ``display="a"`` → ``--display a``, ``vfr=True`` →
    ``--vfr``, ``resolution_change_at=["3:320x240"]`` → repeated ``--resolution-change-at``, ``colour="#ff0000",
    tone=620`` → ``--colour #ff0000 --tone 620`` (a solid colour and a tone of its own, for composite tests);
    None/False are left out."""
    argv = [sys.executable, "-m", "tests.harness.publisher", "--ws", ws_url, "--room", str(room)]
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


class PublisherProcess:
    """A running publisher.  ``events`` holds every JSON line read so far (in order)."""

    def __init__(self, net: TestNetwork, argv: list[str], log_path: Path, name: str) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._stderr = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "PYTHONUNBUFFERED": "1"}
        self.proc = net.popen(argv, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
                              cwd=REPO_ROOT, env=env)
        self.events: list[dict] = []
        self._queue: queue.Queue[dict | None] = queue.Queue()
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"pub-{name}")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "garbage", "line": line}
            with self._cond:
                self.events.append(ev)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    # -- waiting ---------------------------------------------------------------------------------------------
    def wait_event(self, name: str, timeout: float = 60.0, after: int = 0) -> dict:
        """The first event called ``name`` (the ``after``-th one, counting from 0).  Raises if the process
        exits first or on timeout, with its stderr tail."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self.events if e.get("event") == name]
                if len(found) > after:
                    return found[after]
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"publisher {self.name} exited ({self.proc.returncode}) before "
                                       f"'{name}'\n{self.describe()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"publisher {self.name}: no '{name}' within {timeout}s\n{self.describe()}")
                self._cond.wait(min(left, 0.2))

    @property
    def id(self) -> int:
        """Publisher id from the (latest) ``joined`` event."""
        joined = [e for e in self.events if e.get("event") == "joined"]
        if not joined:
            return self.wait_event("joined")["id"]
        return joined[-1]["id"]

    def wait(self, timeout: float = 60.0) -> dict:
        """Wait for the process to end; return its ``exit`` event (raises if missing or rc != 0)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise TimeoutError(
                f"publisher {self.name} still running after {timeout}s\n{self.describe()}") from e
        self._reader.join(10)
        ex = [e for e in self.events if e.get("event") == "exit"]
        if not ex or self.proc.returncode != 0:
            raise RuntimeError(
                f"publisher {self.name} ended with rc={self.proc.returncode}\n{self.describe()}")
        return ex[-1]

    def stop(self, timeout: float = 30.0) -> dict:
        """SIGTERM (the publisher leaves the room and reports), then :meth:`wait`."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stderr.close()

    def stderr_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def describe(self) -> str:
        evs = "\n".join(json.dumps(e)[:400] for e in self.events[-10:])
        return f"argv: {' '.join(self.argv)}\nevents:\n{evs}\nstderr:\n{self.stderr_tail()}"
