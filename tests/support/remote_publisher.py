"""A publisher of VP9 or AV1 video (and Opus) for a real Janus room: a VideoRoom "remote publisher".

aiortc sends VP8 and H.264 only. Janus 1.1's VideoRoom takes plain RTP from elsewhere as a *remote publisher*
(``add_remote_publisher``, made for cascading Janus instances): it answers with an address and a port, takes every
stream's RTP there, tells the streams apart by SSRC (``1000 + 10 * mindex``) and announces the publisher to the
room like any other (a ``publishers`` event with the streams' codecs); ``remove_remote_publisher`` makes them
leave. The RTP comes from FFmpeg's own RTP muxers (through PyAV): libvpx-vp9 or SVT-AV1 for a synthetic picture
(a moving gradient, a white flash every second), libopus for a tone (a beep with each flash), one muxer per
stream, paced in real time by a thread of the test. Janus and this sender talk over the test's network namespace
addresses (the harness's veth), never loopback or the machine's own interface.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import av
import numpy as np

BASE_SSRC, SSRC_STEP = 1000, 10  # Janus's remote publisher demultiplexing (janus_videoroom.c)
ENCODERS = {"vp9": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                                   "row-mt": "1"}),
            "av1": ("libsvtav1", {"preset": "12", "svtav1-params": "pred-struct=1:lp=1"})}
PAYLOAD_TYPES = {"vp9": 98, "av1": 45, "opus": 111}


@dataclass
class SentCounts:
    video_frames: int = 0
    audio_packets: int = 0
    flashes: list[float] = field(default_factory=list)  # seconds since the first frame


class RemotePublisher:
    """``janus`` (tests/harness/janus.Janus), a room, ``host``: Janus's address in the test's network namespace
    (Janus binds the remote publisher's port there), and what to send: ``codec`` "vp9" or "av1" video at ``fps``
    with a keyframe every ``gop`` frames, Opus audio, for ``seconds``. ``start()`` adds the publisher and starts
    sending; ``wait()`` waits for the end of the media and removes the publisher (returns the counts)."""

    def __init__(self, janus, room_id: int, host: str, *, codec: str = "vp9", display: str = "remote",
                 seconds: float = 6.0, fps: int = 30, gop: int = 30, size: tuple[int, int] = (320, 240),
                 publisher_id: int | None = None):
        if codec not in ENCODERS:
            raise ValueError(f"codec {codec!r}: vp9 or av1")
        self.janus, self.room_id, self.host, self.codec, self.display = janus, room_id, host, codec, display
        self.seconds, self.fps, self.gop, self.size = seconds, fps, gop, size
        self.publisher_id = publisher_id
        self.sent = SentCounts()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> RemotePublisher:
        body = {"request": "add_remote_publisher", "room": self.room_id, "display": self.display,
                "iface": self.host, "streams": [
            {"type": "video", "mindex": 0, "mid": "0", "codec": self.codec},
            {"type": "audio", "mindex": 1, "mid": "1", "codec": "opus", "stereo": True}]}
        if self.publisher_id is not None:
            body["id"] = self.publisher_id
        reply = self.janus.videoroom_request(body)
        self.publisher_id, self._target = reply["id"], (reply.get("ip") or self.host, reply["port"])
        self._thread = threading.Thread(target=self._send_all, name="remote-publisher", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float = 60.0) -> SentCounts:
        self._thread.join(timeout)
        self.janus.videoroom_request({"request": "remove_remote_publisher", "room": self.room_id,
                                      "id": self.publisher_id})
        if self._error is not None:
            raise self._error
        return self.sent

    # -- the sender thread ------------------------------------------------------------------------------------
    def _muxer(self, ssrc: int, pt: int):
        host, port = self._target
        return av.open(f"rtp://{host}:{port}", "w", format="rtp",
                       options={"ssrc": str(ssrc), "payload_type": str(pt), "strict": "experimental"})

    def _send_all(self) -> None:
        try:
            self._send()
        except BaseException as err:  # reported by wait()
            self._error = err

    def _send(self) -> None:
        width, height = self.size
        video_out = self._muxer(BASE_SSRC, PAYLOAD_TYPES[self.codec])
        audio_out = self._muxer(BASE_SSRC + SSRC_STEP, PAYLOAD_TYPES["opus"])
        name, options = ENCODERS[self.codec]
        video = video_out.add_stream(name, rate=self.fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = self.gop
        video.codec_context.options = options
        audio = audio_out.add_stream("libopus", rate=48000, layout="stereo")
        # each picture and each 20 ms of sound is encoded and sent at its capture time (as aiortc's tracks pace
        # their frames), in time order: the arrival of each tells the recorder when it was captured
        flashes = [(k + 0.5) for k in range(int(self.seconds))]  # seconds; the picture and the beep start there
        gradient = np.tile(np.linspace(0, 200, width, dtype=np.uint8), (height, 1))
        frame_count, audio_count = int(self.seconds * self.fps), int(self.seconds * 50)
        i = n = 0
        try:
            start = time.monotonic()
            while i < frame_count or n < audio_count:
                video_due = i / self.fps if i < frame_count else float("inf")
                audio_due = n * 0.02 if n < audio_count else float("inf")
                due = min(video_due, audio_due)
                delay = start + due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if video_due <= audio_due:
                    flash = any(abs(video_due - f) < 0.5 / self.fps for f in flashes)
                    luma = np.full((height, width), 235, np.uint8) if flash else np.roll(gradient, i * 4, axis=1)
                    frame = av.VideoFrame.from_ndarray(np.stack([luma] * 3, axis=-1), format="rgb24")
                    frame = frame.reformat(format="yuv420p")
                    frame.pts = i
                    if flash:
                        self.sent.flashes.append(video_due)
                    for packet in video.encode(frame):
                        video_out.mux(packet)
                    self.sent.video_frames += 1
                    i += 1
                else:
                    for packet in audio.encode(self._tone(n, flashes)):
                        audio_out.mux(packet)
                        self.sent.audio_packets += 1
                    n += 1
        finally:
            for out in (video_out, audio_out):
                out.close()

    @staticmethod
    def _tone(n: int, flash_at: list[float]) -> av.AudioFrame:
        t0 = n * 960 / 48000
        times = t0 + np.arange(960) / 48000
        beep = np.zeros(960)
        for f in flash_at:
            beep += ((times >= f) & (times < f + 0.1)) * np.sin(2 * np.pi * 1000 * times)
        samples = (beep * 12000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(samples[None, :], 2, axis=0).reshape(1, -1), format="s16",
                                           layout="stereo")
        frame.sample_rate, frame.pts = 48000, n * 960
        return frame
