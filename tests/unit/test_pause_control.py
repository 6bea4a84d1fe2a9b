"""reel_recorder.control: spec.paused, read from a local server standing in for the API server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.waiting import wait_for

from reel_api import load_session
from reel_recorder.control import HttpGetter, PauseControl, SpecPoller, poller_for
from reel_recorder.settings import Settings

SESSION = {"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession", "metadata": {"name": "s"},
           "spec": {"room": {"server": "ws://janus:8188", "id": 1}, "storage": {"local": {"path": "/recordings"}}}}


class FakeApiServer:
    """GET .../status answers with the session whose spec.paused is ``paused``; or fails while ``failing``."""

    def __init__(self):
        self.paused = False
        self.failing = False
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers["Authorization"]))
                if outer.failing:
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b'{"message": "unavailable"}')
                    return
                body = json.dumps({"kind": "RecordingSession", "spec": {"paused": outer.paused},
                                   "status": {"phase": "Recording"}}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_port

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def wait(pred, timeout=5.0):
    wait_for(pred, timeout, interval=0.01)


def test_the_api_accepts_paused_and_resumed_sessions():
    assert load_session({**SESSION, "spec": {**SESSION["spec"], "paused": True}}).spec.paused is True
    assert load_session(SESSION).spec.paused is False


def test_poller_follows_spec_paused_and_keeps_the_state_when_the_api_server_fails(tmp_path):
    api = FakeApiServer()
    try:
        (tmp_path / "token").write_text("tok\n")
        control = PauseControl(False)
        url = f"http://127.0.0.1:{api.port}/apis/reel.dev/v1alpha1/namespaces/media/recordingsessions/s/status"
        poller = SpecPoller(HttpGetter(url, str(tmp_path)), control, interval=0.05).start()
        try:
            wait(lambda: poller.polls >= 1)
            assert control.paused is False
            api.paused = True
            wait(lambda: control.paused)
            api.failing = True  # a failing read changes nothing
            n = len(api.requests)
            wait(lambda: len(api.requests) >= n + 3)
            assert control.paused is True
            api.failing, api.paused = False, False
            wait(lambda: not control.paused)
        finally:
            poller.stop()
        assert api.requests[0] == ("/apis/reel.dev/v1alpha1/namespaces/media/recordingsessions/s/status", "Bearer tok")
    finally:
        api.close()


def test_poller_only_in_a_pod():
    assert poller_for(Settings.from_env({}), PauseControl()) is None
