"""A synthetic RTP sender for loopback tests of the ingest and output stages (no WebRTC, no Janus).

It plays the part of a Janus RTP forwarder: H.264 video and Opus audio as plain RTP to UDP ports, paced in
real time, with random RTP timestamp bases as real senders have. Video frames are black with a white flash
at every whole second of media time; audio is silence with a 1 kHz beep at the same instants, so a recording
can be checked for A/V sync. PLIs received on ``pli_port`` make the next video frame a keyframe.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from fractions import Fraction

import av
import numpy as np

FLASH_SECONDS = 0.1


class RtpSource:
    def __init__(
        self,
        addr: str,
        *,
        video_port: int | None,
        audio_port: int | None,
        duration: float,
        fps: float = 30.0,
        size: tuple[int, int] = (320, 240),
        gop: int = 60,
        video_delay: float = 0.0,
        resize_at: float | None = None,
        pli_port: int | None = None,
        video_pkt_size: int | None = None,
    ):
        """``video_pkt_size``: the largest video RTP packet (smaller: frames in more FU-A fragments)."""
        self.addr = addr
        self.video_port, self.audio_port = video_port, audio_port
        self.duration, self.fps, self.size, self.gop = duration, fps, size, gop
        self.video_delay, self.resize_at = video_delay, resize_at
        self.pli_port = pli_port
        self.video_pkt_size = video_pkt_size
        self.frames_sent = 0
        self.samples_sent = 0
        self.keyframes_on_request = 0
        self._force_key = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.t0 = 0.0

    # -- control -------------------------------------------------------------------------------------------
    def start(self) -> RtpSource:
        self.t0 = time.monotonic() + 0.05
        if self.video_port:
            self._threads.append(threading.Thread(target=self._video, daemon=True))
        if self.audio_port:
            self._threads.append(threading.Thread(target=self._audio, daemon=True))
        if self.pli_port:
            self._pli_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._pli_sock.bind((self.addr, self.pli_port))
            self._pli_sock.settimeout(0.2)
            self._threads.append(threading.Thread(target=self._pli, name="pli", daemon=True))
        for t in self._threads:
            t.start()
        return self

    def wait(self, timeout: float | None = None) -> None:
        """Until the media has been sent (or ``timeout``); then the PLI listener stops too."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            if t.name != "pli":
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if not any(t.is_alive() for t in self._threads if t.name != "pli"):
            self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)

    def _sleep_until(self, t: float) -> bool:
        delay = self.t0 + t - time.monotonic()
        if delay > 0:
            return not self._stop.wait(delay)
        return not self._stop.is_set()

    def _pli(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._pli_sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) >= 12 and data[1] == 206:
                self._force_key.set()
        self._pli_sock.close()

    # -- media ---------------------------------------------------------------------------------------------
    def _video(self) -> None:
        query = f"?pkt_size={self.video_pkt_size}" if self.video_pkt_size else ""
        out = av.open(f"rtp://{self.addr}:{self.video_port}{query}", "w", format="rtp")
        stream = None
        size = None
        n = 0
        try:
            while True:
                t = self.video_delay + n / self.fps
                if t >= self.duration or not self._sleep_until(t):
                    break
                want = self.size if self.resize_at is None or t < self.resize_at else (
                    self.size[0] * 2, self.size[1] * 2)
                if want != size:
                    size = want
                    if stream is None:
                        stream = out.add_stream("libx264", rate=int(self.fps))
                        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                                          "x264-params": f"keyint={self.gop}:min-keyint={self.gop}:scenecut=0"
                                                         ":repeat-headers=1"}
                        stream.pix_fmt = "yuv420p"
                        stream.width, stream.height = size
                        stream.codec_context.time_base = Fraction(1, 90000)
                    frames = self._frames(size)
                    force = True
                else:
                    force = False
                flash = (t % 1.0) < FLASH_SECONDS
                frame = frames[1 if flash else 0]
                frame.pts = round(t * 90000)
                frame.time_base = Fraction(1, 90000)
                if force or self._force_key.is_set():
                    if not force:
                        self.keyframes_on_request += 1
                    self._force_key.clear()
                    frame.pict_type = av.video.frame.PictureType.I
                else:
                    frame.pict_type = av.video.frame.PictureType.NONE  # frames are reused: reset the mark
                if size != (stream.width, stream.height):
                    break  # resolution change of a running libx264 stream is not supported by PyAV
                for p in stream.encode(frame):
                    out.mux(p)
                self.frames_sent += 1
                n += 1
        finally:
            if stream is not None:
                for p in stream.encode(None):
                    out.mux(p)
            out.close()

    def _frames(self, size):
        w, h = size
        black = av.VideoFrame.from_ndarray(np.zeros((h, w, 3), np.uint8), format="rgb24").reformat(
            format="yuv420p")
        white = av.VideoFrame.from_ndarray(np.full((h, w, 3), 255, np.uint8), format="rgb24").reformat(
            format="yuv420p")
        return black, white

    def _audio(self) -> None:
        rate, spf = 48000, 960
        out = av.open(f"rtp://{self.addr}:{self.audio_port}", "w", format="rtp")
        stream = out.add_stream("libopus", rate=rate, layout="stereo")
        stream.codec_context.time_base = Fraction(1, rate)
        n = 0
        try:
            while True:
                t = n * spf / rate
                if t >= self.duration or not self._sleep_until(t):
                    break
                idx = np.arange(n * spf, (n + 1) * spf)
                secs = idx / rate
                beep = (secs % 1.0) < FLASH_SECONDS
                samples = (0.5 * np.sin(2 * math.pi * 1000 * secs) * beep).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(np.stack([samples, samples]).reshape(1, -1),
                                                   format="flt", layout="stereo")
                frame.sample_rate = rate
                frame.pts = n * spf
                frame.time_base = Fraction(1, rate)
                for p in stream.encode(frame):
                    out.mux(p)
                self.samples_sent += spf
                n += 1
        finally:
            for p in stream.encode(None):
                out.mux(p)
            out.close()
