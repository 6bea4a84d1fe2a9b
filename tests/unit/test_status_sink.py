"""reel_recorder.k8s_status: the recorder's status sink (throttling, latest wins, never blocking, flush at exit)
and its HTTP PATCH against a local server standing in for the API server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tests.support.waiting import wait_for

from reel_recorder.k8s_status import HttpPatcher, KubeStatusSink, merge, to_status
from reel_recorder.settings import Settings, SettingsError


class Recorder:
    def __init__(self, delay: float = 0.0, fail: int = 0):
        self.calls: list[tuple[float, dict]] = []
        self.delay = delay
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, body):
        time.sleep(self.delay)
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise RuntimeError("HTTP 503")
            self.calls.append((time.monotonic(), body["status"]))


def wait(pred, timeout=5.0):
    wait_for(pred, timeout, interval=0.01)


def test_to_status_keeps_schema_fields_without_nulls():
    status = {"phase": "Completed", "reason": "NoUsers", "stopReason": "NoUsers", "stoppedAt": None,
              "participants": [{"id": 1, "display": "alice", "leftAt": None}], "upload": {"location": None,
                                                                                        "segments": 3}}
    assert to_status(status) == {"phase": "Completed", "stopReason": "NoUsers",
                                 "participants": [{"id": 1, "display": "alice"}], "upload": {"segments": 3}}
    assert merge({"upload": {"segments": 1, "storedBytes": 5}, "phase": "Recording"},
                 {"upload": {"segments": 2}}) == {"upload": {"segments": 2, "storedBytes": 5}, "phase": "Recording"}


def test_phase_changes_at_once_progress_throttled_latest_wins():
    send = Recorder()
    sink = KubeStatusSink(send, min_interval=0.5)
    sink.report("starting", {"phase": "Starting", "recordingId": "r1"})
    wait(lambda: len(send.calls) == 1)
    t0 = time.monotonic()
    for i in range(50):  # progress: merged, at most one patch per interval
        sink.report("progress", {"phase": "Starting", "upload": {"segments": i}})
    sink.report("upload", {"upload": {"storedBytes": 99}})
    wait(lambda: len(send.calls) == 2)
    assert send.calls[1][0] - t0 >= 0.4
    assert send.calls[1][1] == {"phase": "Starting", "upload": {"segments": 49, "storedBytes": 99}}
    sink.report("joined", {"phase": "Recording"})  # a phase change does not wait for the interval
    wait(lambda: len(send.calls) == 3)
    assert send.calls[2][0] - send.calls[1][0] < 0.3
    sink.close()


def test_report_never_blocks_on_a_slow_api_server():
    send = Recorder(delay=0.5)
    sink = KubeStatusSink(send, min_interval=0.0)
    t0 = time.monotonic()
    for i in range(200):
        sink.report("progress", {"phase": "Recording" if i % 2 else "Starting", "upload": {"segments": i}})
    assert time.monotonic() - t0 < 0.2
    sink.close()
    assert len(send.calls) <= 3  # the slow calls were coalesced
    assert send.calls[-1][1]["upload"] == {"segments": 199}


def test_errors_are_retried_and_not_raised():
    send = Recorder(fail=2)
    sink = KubeStatusSink(send, min_interval=0.05)
    sink.report("starting", {"phase": "Starting"})
    sink.report("progress", {"upload": {"segments": 1}})
    wait(lambda: len(send.calls) == 1)
    assert send.calls[0][1] == {"phase": "Starting", "upload": {"segments": 1}}
    sink.close()


def test_close_flushes_the_final_report():
    send = Recorder(delay=0.05)
    sink = KubeStatusSink(send, min_interval=60)
    sink.report("progress", {"phase": "Recording"})
    sink.report("progress", {"upload": {"segments": 3}})
    sink.report("finished", {"phase": "Completed", "stopReason": "NoUsers"})
    sink.close()
    assert send.calls[-1][1]["phase"] == "Completed"
    sink.report("late", {"phase": "Recording"})  # after close: ignored
    time.sleep(0.1)
    assert send.calls[-1][1]["phase"] == "Completed"


def test_close_is_bounded_when_the_api_server_hangs():
    send = Recorder(delay=3)
    sink = KubeStatusSink(send, flush_timeout=0.3)
    sink.report("finished", {"phase": "Failed"})
    t0 = time.monotonic()
    sink.close()
    assert time.monotonic() - t0 < 1.0


def test_from_env_and_http_patch(tmp_path):
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers["Authorization"], self.headers["Content-Type"], json.loads(body)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "token").write_text("tok-1\n")
        url = f"http://127.0.0.1:{server.server_port}/apis/reel.dev/v1alpha1/namespaces/media/recordingsessions/s/status"
        patch = HttpPatcher(url, str(tmp_path))
        patch({"status": {"phase": "Recording"}})
        (tmp_path / "token").write_text("tok-2\n")  # rotated by the kubelet: read again
        patch({"status": {"phase": "Uploading"}})
        assert seen[0] == ("/apis/reel.dev/v1alpha1/namespaces/media/recordingsessions/s/status", "Bearer tok-1",
                           "application/merge-patch+json", {"status": {"phase": "Recording"}})
        assert seen[1][1] == "Bearer tok-2"
    finally:
        server.shutdown()

    with pytest.raises(SettingsError, match="namespace/name"):
        Settings.from_env({"REEL_STATUS_TARGET": "just-a-name"})
    assert Settings.from_env({"REEL_STATUS_TARGET": "media/s", "KUBERNETES_SERVICE_HOST": "10.96.0.1",
                              "KUBERNETES_SERVICE_PORT": "443"}).status_url == \
        "https://10.96.0.1:443/apis/reel.dev/v1alpha1/namespaces/media/recordingsessions/s/status"
    assert Settings.from_env({"REEL_STATUS_TARGET": "m/s", "KUBERNETES_SERVICE_HOST": "fd00::1"}).status_url.startswith(
        "https://[fd00::1]:443/")
