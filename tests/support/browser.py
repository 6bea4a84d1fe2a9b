"""Playing a stored HLS recording in a real browser: hls.js (npm) in headless Chromium (Debian's ``chromium``).

``play_in_chromium(folder)`` serves ``folder`` and a tiny page from 127.0.0.1 (a thread of the test), starts
headless Chromium on it and waits for the page's report: hls.js loads ``index.m3u8`` into a muted ``<video>``,
plays it, and POSTs what happened when ``ended`` fires (or on a fatal hls.js error; and a snapshot every 5 s,
returned with ``timedOut`` when nothing else came in time): the end time, the media
duration, the seconds actually played (``timeupdate`` steps), the buffered ranges, the decoded and dropped
frames, every hls.js error. Both come from ``hack/deps.sh`` (apt ``chromium``; ``npm install hls.js`` into
``$REEL_CACHE/npm``).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

HLS_JS = Path(os.environ.get("REEL_CACHE", Path.home() / ".cache" / "reel")) / "npm/node_modules/hls.js/dist/hls.min.js"

PAGE = """<!doctype html><meta charset="utf-8"><video id="v" muted playsinline></video>
<script src="/hls.min.js"></script><script>
const v = document.getElementById('v'), errors = [];
let played = 0, last = null;
function report(extra) {
  const buffered = [];
  for (let i = 0; i < v.buffered.length; i++) buffered.push([v.buffered.start(i), v.buffered.end(i)]);
  const q = v.getVideoPlaybackQuality();
  fetch('/report', {method: 'POST', body: JSON.stringify(Object.assign({currentTime: v.currentTime,
    duration: v.duration, played, buffered, errors, decodedFrames: q.totalVideoFrames,
    droppedFrames: q.droppedVideoFrames, hlsVersion: Hls.version}, extra))});
}
if (!Hls.isSupported()) report({fatal: 'hls.js is not supported (no MediaSource)'});
const hls = new Hls();
hls.on(Hls.Events.ERROR, (_, d) => {
  errors.push({type: d.type, details: d.details, fatal: d.fatal});
  if (d.fatal) report({fatal: d.details});
});
hls.on(Hls.Events.MANIFEST_PARSED, () => v.play().catch(e => report({fatal: 'play(): ' + e})));
v.addEventListener('timeupdate', () => {
  if (last !== null && v.currentTime > last && v.currentTime - last < 1) played += v.currentTime - last;
  last = v.currentTime;
});
v.addEventListener('ended', () => report({ended: true}));
setInterval(() => report({progress: true, readyState: v.readyState, paused: v.paused}), 5000);
hls.loadSource('/media/index.m3u8');
hls.attachMedia(v);
</script>"""


def _handler(folder: Path, reports: list):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.startswith("/media/"):
                self.path = self.path[len("/media"):]
                return super().do_GET()
            body, kind = {"/": (PAGE.encode(), "text/html"),
                          "/hls.min.js": (HLS_JS.read_bytes(), "application/javascript")}.get(self.path, (None, None))
            if body is None:
                return self.send_error(404)
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            reports.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

    Handler.extensions_map = {**Handler.extensions_map, ".m3u8": "application/vnd.apple.mpegurl",
                              ".m4s": "video/iso.segment", ".mp4": "video/mp4", ".ts": "video/mp2t"}
    return Handler


def missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if shutil.which("chromium") is None:
        return "no chromium (Debian package chromium): run hack/deps.sh"
    if not HLS_JS.is_file():
        return f"no hls.js at {HLS_JS}: run hack/deps.sh (npm install hls.js)"
    return None


def play_in_chromium(folder: Path, *, timeout: float = 180.0) -> dict:
    """Play ``folder``'s ``index.m3u8`` to its end in hls.js in headless Chromium; the page's report (see the
    module docstring), plus ``wall`` (seconds from start to report)."""
    reports: list = []  # the page's: a progress snapshot every 5 s, and the final one
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(folder, reports))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="reel-chromium-")
    t0 = time.monotonic()
    # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start
    browser = subprocess.Popen(
        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio", "--no-first-run",
         "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}",
         f"http://127.0.0.1:{server.server_address[1]}/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not _final(reports) and time.monotonic() - t0 < timeout and browser.poll() is None:
            time.sleep(0.1)
    finally:
        browser.terminate()
        try:
            _, err = browser.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            browser.kill()
            _, err = browser.communicate()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    if not reports:
        raise AssertionError(f"no report from the page within {timeout:.0f} s; chromium said:\n"
                             f"{err.decode(errors='replace')[-3000:]}")
    return {**(_final(reports) or {**reports[-1], "timedOut": True}), "wall": time.monotonic() - t0}


def _final(reports: list) -> dict | None:
    return next((r for r in reports if not r.get("progress")), None)
