"""A private Janus (Debian package) for tests, running inside a :class:`~tests.harness.netns.TestNetwork`.

Config is generated into a private folder (``/etc/janus`` is left alone): only the VideoRoom plugin and the
HTTP and WebSocket transports are loaded, the jsonlog logger is disabled, ICE uses only the namespace
interface, the VideoRoom plugin has an ``admin_key`` and ``lock_rtp_forward = true``.

Room management goes over Janus's HTTP API from the pytest process (root namespace, reaching the namespace
address through the veth pair); the publishers and the recorder use the WebSocket API (``ws_url``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .netns import TestNetwork

JANUS_BIN = "janus"
LIB_DIR = "/usr/lib/x86_64-linux-gnu/janus"

HTTP_PORT = 8088
WS_PORT = 8188
ADMIN_HTTP_PORT = 7088


class JanusError(RuntimeError):
    def __init__(self, message: str, code: int | None = None, reply: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.reply = reply


def janus_available() -> bool:
    return shutil.which(JANUS_BIN) is not None and Path(LIB_DIR, "plugins", "libjanus_videoroom.so").exists()


def _plugin_list(folder: str, keep: set[str]) -> str:
    names = sorted(p.name for p in Path(LIB_DIR, folder).glob("*.so"))
    return ",".join(n for n in names if n not in keep)


class Janus:
    """Janus inside ``net``.  ``start()`` / ``stop()`` or use as a context manager.

    Attributes: ``ws_url`` (ws://ADDR:8188), ``http_url`` (http://ADDR:8088/janus), ``admin_key`` (VideoRoom
    admin key: needed to create rooms and for rtp_forward), ``admin_secret`` (Janus admin API),
    ``log_path``, ``conf_dir``.
    """

    def __init__(
        self,
        net: TestNetwork,
        workdir: str | os.PathLike | None = None,
        *,
        admin_key: str | None = None,
        admin_secret: str | None = None,
        rtp_port_range: str = "20000-20999",
        token_auth: bool = False,
        debug_level: int = 4,
        session_timeout: int = 60,
        http_port: int = HTTP_PORT,
        ws_port: int = WS_PORT,
        admin_port: int = ADMIN_HTTP_PORT,
    ) -> None:
        self.net = net
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="reel-janus-"))
        self.conf_dir = self.workdir / "conf"
        self.log_path = self.workdir / "janus.log"
        self.admin_key = admin_key or "rk-" + secrets.token_hex(8)
        self.admin_secret = admin_secret or "as-" + secrets.token_hex(8)
        self.rtp_port_range = rtp_port_range
        self.token_auth = token_auth
        self.debug_level = debug_level
        self.session_timeout = session_timeout
        self.proc: subprocess.Popen | None = None
        self.host = net.addr
        self.http_port, self.ws_port, self.admin_port = http_port, ws_port, admin_port
        self.ws_url = f"ws://{self.host}:{ws_port}"
        self.http_url = f"http://{self.host}:{http_port}/janus"
        self.admin_url = f"http://{self.host}:{admin_port}/admin"
        self.startup_seconds: float | None = None

    # -- config -------------------------------------------------------------------------------------------
    def write_config(self) -> None:
        c = self.conf_dir
        c.mkdir(parents=True, exist_ok=True)
        plugins_off = _plugin_list("plugins", {"libjanus_videoroom.so"})
        transports_off = _plugin_list("transports", {"libjanus_http.so", "libjanus_websockets.so"})
        events_off = _plugin_list("events", set())
        token = "true" if self.token_auth else "false"
        (c / "janus.jcfg").write_text(f"""
general: {{
    configs_folder = "{c}"
    plugins_folder = "{LIB_DIR}/plugins"
    transports_folder = "{LIB_DIR}/transports"
    events_folder = "{LIB_DIR}/events"
    loggers_folder = "{LIB_DIR}/loggers"
    debug_level = {self.debug_level}
    debug_timestamps = true
    admin_secret = "{self.admin_secret}"
    token_auth = {token}
    session_timeout = {self.session_timeout}
    server_name = "reel-test-{self.net.ns}"
}}
certificates: {{
}}
media: {{
    rtp_port_range = "{self.rtp_port_range}"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{self.net.inner_if}"
}}
plugins: {{
    disable = "{plugins_off}"
}}
transports: {{
    disable = "{transports_off}"
}}
loggers: {{
    disable = "libjanus_jsonlog.so"
}}
events: {{
    broadcast = false
    disable = "{events_off}"
}}
""")
        (c / "janus.transport.http.jcfg").write_text(f"""
general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    ip = "{self.host}"
    port = {self.http_port}
    https = false
}}
admin: {{
    admin_base_path = "/admin"
    admin_http = true
    admin_ip = "{self.host}"
    admin_port = {self.admin_port}
    admin_https = false
}}
cors: {{
}}
""")
        (c / "janus.transport.websockets.jcfg").write_text(f"""
general: {{
    json = "compact"
    ws = true
    ws_ip = "{self.host}"
    ws_port = {self.ws_port}
    wss = false
}}
admin: {{
    admin_ws = false
    admin_wss = false
}}
""")
        (c / "janus.plugin.videoroom.jcfg").write_text(f"""
general: {{
    admin_key = "{self.admin_key}"
    lock_rtp_forward = true
    events = false
}}
""")

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> Janus:
        self.write_config()
        t0 = time.monotonic()
        self._log = open(self.workdir / "janus.stdout", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = self.net.popen(
            [JANUS_BIN, "-F", str(self.conf_dir), "-C", str(self.conf_dir / "janus.jcfg"), "-o", "-N",
             "-L", str(self.log_path)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        try:
            self._wait_ready(t0 + timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, deadline: float) -> None:
        last_err: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"janus exited with {self.proc.returncode}\n{self.log_tail()}")
            try:
                info = self._http_json("GET", self.http_url + "/info", timeout=2)
                if info.get("janus") == "server_info" and "janus.plugin.videoroom" in info.get("plugins", {}):
                    with socket.create_connection((self.host, self.ws_port), timeout=2):
                        return
            except (OSError, urllib.error.URLError, ValueError) as e:
                last_err = e
            time.sleep(0.05)
        raise TimeoutError(f"janus not ready ({last_err})\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Janus:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        out = []
        for p in (self.log_path, self.workdir / "janus.stdout"):
            try:
                text = p.read_text(errors="replace").splitlines()
            except OSError:
                continue
            out.append(f"--- {p} (last {lines} lines)\n" + "\n".join(text[-lines:]))
        return "\n".join(out)

    # -- HTTP API -----------------------------------------------------------------------------------------
    @staticmethod
    def _http_json(method: str, url: str, body: dict | None = None, timeout: float = 10) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read())
        except (http.client.RemoteDisconnected, ConnectionResetError) as e:
            # Janus's HTTP transport (libmicrohttpd) closed a connection without answering once in CI (a room
            # fixture's teardown after the half-open WebSocket test): ask once more; a repeated destroy answers
            # "No such room", which the fixtures accept, and a repeated create fails loudly.
            print(f"janus HTTP {method} {url}: {e!r}; asking once more", file=sys.stderr)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def _post(self, url: str, body: dict, token: str | None = None) -> dict:
        body = {**body, "transaction": secrets.token_hex(6)}
        if token:
            body["token"] = token
        reply = self._http_json("POST", url, body)
        if reply.get("janus") == "error":
            err = reply.get("error", {})
            raise JanusError(f"janus error {err.get('code')}: {err.get('reason')}", err.get("code"), reply)
        return reply

    def videoroom_request(self, body: dict, token: str | None = None) -> dict:
        """Send one synchronous VideoRoom request (create, destroy, listparticipants, rtp_forward, ...) over a
        short-lived HTTP session; returns the plugin's data.  Raises :class:`JanusError` on an error reply."""
        sess = self._post(self.http_url, {"janus": "create"}, token)["data"]["id"]
        try:
            handle = self._post(f"{self.http_url}/{sess}",
                                {"janus": "attach", "plugin": "janus.plugin.videoroom"}, token)["data"]["id"]
            reply = self._post(f"{self.http_url}/{sess}/{handle}", {"janus": "message", "body": body}, token)
        finally:
            with contextlib.suppress(JanusError, OSError):
                self._post(f"{self.http_url}/{sess}", {"janus": "destroy"}, token)
        data = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise JanusError(f"videoroom error {data.get('error_code')}: {data.get('error')}",
                             data.get("error_code"), data)
        return data

    def admin_request(self, body: dict) -> dict:
        """Janus admin API request (e.g. ``{"janus": "add_token", "token": "t"}``)."""
        return self._post(self.admin_url, {**body, "admin_secret": self.admin_secret})

    def add_token(self, token: str) -> None:
        """With ``token_auth=True``: allow ``token`` (for all plugins)."""
        self.admin_request({"janus": "add_token", "token": token, "plugins": ["janus.plugin.videoroom"]})

    # -- rooms --------------------------------------------------------------------------------------------
    def create_room(
        self,
        room_id: int,
        *,
        videocodec: str = "h264",
        audiocodec: str = "opus",
        fir_freq: int | None = 2,
        notify_joining: bool = True,
        publishers: int = 16,
        bitrate: int | None = 512_000,
        secret: str | None = None,
        pin: str | None = None,
        token: str | None = None,
        **extra: Any,
    ) -> dict:
        """Create a VideoRoom room (not permanent).  ``extra`` goes into the request as-is."""
        body: dict[str, Any] = {
            "request": "create", "room": room_id, "admin_key": self.admin_key, "permanent": False,
            "description": f"reel test room {room_id}", "videocodec": videocodec, "audiocodec": audiocodec,
            "notify_joining": notify_joining, "publishers": publishers,
        }
        if fir_freq is not None:
            body["fir_freq"] = fir_freq
        if bitrate is not None:
            body["bitrate"] = bitrate
        if secret is not None:
            body["secret"] = secret
        if pin is not None:
            body["pin"] = pin
        body.update(extra)
        return self.videoroom_request(body, token)

    def destroy_room(self, room_id: int, secret: str | None = None, token: str | None = None) -> dict:
        body: dict[str, Any] = {"request": "destroy", "room": room_id, "permanent": False}
        if secret is not None:
            body["secret"] = secret
        return self.videoroom_request(body, token)

    def room_exists(self, room_id: int, token: str | None = None) -> bool:
        return bool(self.videoroom_request({"request": "exists", "room": room_id}, token).get("exists"))

    def list_participants(self, room_id: int, token: str | None = None) -> list[dict]:
        """The room's participants as Janus lists them (``id``, ``display``, ``publisher`` bool, ...)."""
        return self.videoroom_request({"request": "listparticipants", "room": room_id}, token)["participants"]

    def wait_for_publishers(self, room_id: int, n: int, timeout: float = 30.0, exact: bool = False,
                            token: str | None = None) -> list[dict]:
        """Poll ``listparticipants`` until at least (with ``exact``: exactly) ``n`` participants publish;
        returns them.  Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        pubs: list[dict] = []
        while time.monotonic() < deadline:
            pubs = [p for p in self.list_participants(room_id, token) if p.get("publisher")]
            if (len(pubs) == n) if exact else (len(pubs) >= n):
                return pubs
            time.sleep(0.1)
        raise TimeoutError(f"room {room_id}: {len(pubs)} publishers after {timeout}s, wanted {n}: {pubs}")

    def list_forwarders(self, room_id: int, secret: str | None = None,
                        token: str | None = None) -> list[dict]:
        body: dict[str, Any] = {"request": "listforwarders", "room": room_id}
        if secret is not None:
            body["secret"] = secret
        return self.videoroom_request(body, token).get("publishers", [])

    def rtp_forward(self, room_id: int, publisher_id: int, host: str, streams: list[dict],
                    secret: str | None = None, token: str | None = None) -> dict:
        """Multistream rtp_forward (``streams=[{"mid": "0", "port": 5000}, ...]``) with the admin key."""
        body: dict[str, Any] = {"request": "rtp_forward", "room": room_id, "publisher_id": publisher_id,
                                "admin_key": self.admin_key, "host": host, "host_family": "ipv4",
                                "streams": streams}
        if secret is not None:
            body["secret"] = secret
        return self.videoroom_request(body, token)

    def stop_rtp_forward(self, room_id: int, publisher_id: int, stream_id: int,
                         secret: str | None = None, token: str | None = None) -> dict:
        body: dict[str, Any] = {"request": "stop_rtp_forward", "room": room_id, "publisher_id": publisher_id,
                                "stream_id": stream_id, "admin_key": self.admin_key}
        if secret is not None:
            body["secret"] = secret
        return self.videoroom_request(body, token)

    def cleanup(self) -> None:
        """Stop Janus and remove the private folder if we created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
