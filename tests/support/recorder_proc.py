"""Running ``reel-recorder`` as users do: a session manifest, a process, JSON-lines progress on stdout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def session_manifest(server: str, room, *, name: str = "test", recording: dict | None = None,
                     storage: dict | None = None, backup: dict | None = None, display: str | None = None,
                     tag: str | None = None, paused: bool = False) -> dict:
    spec: dict = {"room": {"server": server, "id": room}, "storage": storage or {"local": {"path": "/unused"}}}
    if display:
        spec["room"]["displayName"] = display
    if recording:
        spec["recording"] = recording
    if backup:
        spec["backupStorage"] = backup
    if tag:
        spec["tag"] = tag
    if paused:
        spec["paused"] = True
    return {"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession", "metadata": {"name": name},
            "spec": spec}


class RecorderRun:
    """A reel-recorder process; ``events`` collects its JSON lines."""

    def __init__(self, popen, manifest: dict, workdir: Path, *, env: dict | None = None,
                 output: bool = True, extra_args: list[str] | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.session_path = workdir / "session.yaml"
        self.session_path.write_text(yaml.safe_dump(manifest))
        self.output = workdir / "out"
        self.stderr_path = workdir / "recorder.log"
        argv = ["reel-recorder", "--session", str(self.session_path), "--spool", str(workdir / "spool")]
        if output:
            argv += ["--output", str(self.output)]
        argv += extra_args or []
        self.events: list[dict] = []
        self.started = time.monotonic()
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = popen(argv, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})}, cwd=REPO_ROOT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                self.events.append(json.loads(line))

    def wait_event(self, name: str, timeout: float = 30.0, predicate=lambda e: True) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in list(self.events):
                if e["event"] == name and predicate(e):
                    return e
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {name!r} event within {timeout} s\n{self.describe()}")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGUSR2)

    def wait(self, timeout: float = 120.0) -> dict:
        """Waits for the exit; returns the final status (the 'finished' event)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"recorder did not exit within {timeout} s\n{self.describe()}") from None
        finally:
            self._reader.join(5)
            self._stderr.close()
        self.ended = time.monotonic()
        finished = [e for e in self.events if e["event"] == "finished"]
        assert finished, f"no 'finished' event\n{self.describe()}"
        return finished[-1]["status"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def describe(self) -> str:
        events = "\n".join(json.dumps(e)[:300] for e in self.events[-8:])
        return f"recorder events:\n{events}\nrecorder stderr:\n{self.log_tail()}"
