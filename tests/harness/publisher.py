"""A synthetic VideoRoom publisher (aiortc) for tests.

Run it inside the test network namespace (``TestNetwork.popen``) from the repository root::

    python -m tests.harness.publisher --ws ws://10.213.x.2:8188 --room 1234 --display alice --duration 10

It joins the room as a publisher over the Janus WebSocket API, publishes synthetic media (video 640x480@30
test pattern with a frame-number barcode, see :mod:`tests.harness.media`, or one solid colour with ``--colour
"#RRGGBB"``; audio a 440 Hz sine, another frequency with ``--tone HZ``, Opus) and prints JSON lines on stdout::

    {"event": "joined", "id": <publisher id>, "private_id": ..., "room": ..., "display": ..., ...}
    {"event": "published", "id": ..., "streams": [{"type": "audio", "codec": "opus", ...}, ...], ...}
    {"event": "leaving", ...}                    (the leave request goes out: --leave-at, and at the end)
    {"event": "left", ...}                       (left: the request answered, the PeerConnection closed)
    {"event": "exit", "video_frames": N, "audio_samples": N, "flash_onsets": [...], "beep_onsets": [...], ...}

Every line carries ``wall`` (``time.time()``) and ``media`` (media time, see below).  Exit status 0 on
success.

**Media time** is one clock shared by audio and video: 0 is the moment the first track asked for its first
frame (i.e. once ICE/DTLS are up).  A video frame with media time ``t`` is handed to the sender no earlier
than ``t`` after that, with ``pts = t * 90000``; audio frame ``k`` (20 ms) has media time ``k * 0.02`` and
``pts = k * 960`` (1/48000).  All time options (``--duration``, ``--leave-at``, ``--rejoin-at``,
``--resolution-change-at``, ``--video-delay``, ``--video-lag``'s T) are media times.  After a rejoin, the clock
keeps running: the frames of the absence are simply never sent.

Counts in the ``exit`` line are taken inside the encoders (frames and samples actually handed to them).

**Keyframes**: aiortc's H.264 encoder (libx264, ``tune=zerolatency``, Baseline) leaves libx264's defaults:
a keyframe every 250 frames (~8.3 s at 30 fps), on scene cuts, whenever the codec is re-created (resolution
change, or a REMB bitrate change above 10 %) and when the receiver asks (PLI/FIR → ``force_keyframe``).
``--long-gop`` behaves like a browser: ``keyint=infinite``, ``scenecut=0``, ``forced-idr=1``, VBV on
(maxrate = bufsize = the target) so that bitrate changes (REMB) can be applied to the running encoder
(``x264_encoder_reconfig``, x264 needs VBV for that) instead of re-creating it, so IDR
frames come only at the start, on a resolution change, and on PLI/FIR.  The ``exit`` line lists the media
times of all IDR frames produced (``keyframes``) and the number of keyframe requests received
(``keyframe_requests``).  This works by replacing ``aiortc.rtcrtpsender.get_encoder`` (a module-level
lookup) with one returning subclasses of aiortc's own H.264 and Opus encoders: pinned to aiortc 1.16.0.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import fractions
import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field

import aiortc.rtcrtpsender
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import get_encoder as aiortc_get_encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from . import media
from .janus_ws import JanusWS, JanusWSError


def emit(event: str, **kw) -> None:
    kw = {"event": event, "wall": round(time.time(), 6), **kw}
    if CLOCK.started:
        kw.setdefault("media", round(CLOCK.now(), 6))
    print(json.dumps(kw), flush=True)


# -- clock and statistics ----------------------------------------------------------------------------------
class MediaClock:
    def __init__(self) -> None:
        self.t0: float | None = None
        self.wall0: float | None = None

    @property
    def started(self) -> bool:
        return self.t0 is not None

    def start(self) -> None:
        if self.t0 is None:
            self.t0 = time.monotonic()
            self.wall0 = time.time()

    def now(self) -> float:
        return time.monotonic() - self.t0 if self.t0 is not None else 0.0

    async def sleep_until(self, t: float) -> None:
        self.start()
        delay = self.t0 + t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class Session:
    index: int
    publisher_id: int | None = None
    video_frames: int = 0
    audio_samples: int = 0
    first_video: float | None = None
    last_video: float | None = None
    first_audio: float | None = None
    last_audio: float | None = None


@dataclass
class Stats:
    flash: bool = False
    sessions: list[Session] = field(default_factory=list)
    video_frames: int = 0
    audio_samples: int = 0
    video_sizes: dict[str, int] = field(default_factory=dict)
    flash_onsets: list[float] = field(default_factory=list)
    beep_onsets: list[float] = field(default_factory=list)
    keyframes: list[float] = field(default_factory=list)
    keyframe_requests: int = 0
    video_bytes: int = 0
    codec_restarts: int = 0
    bitrate_changes: int = 0

    @property
    def cur(self) -> Session:
        return self.sessions[-1]

    def on_video(self, frame: av.VideoFrame) -> None:
        t = round(float(frame.pts * frame.time_base), 6)
        s = self.cur
        s.video_frames += 1
        self.video_frames += 1
        key = f"{frame.width}x{frame.height}"
        self.video_sizes[key] = self.video_sizes.get(key, 0) + 1
        s.first_video = t if s.first_video is None else s.first_video
        s.last_video = t
        if self.flash and frame.pts % media.VIDEO_CLOCK == 0:
            self.flash_onsets.append(t)

    def on_audio(self, frame: av.AudioFrame) -> None:
        t = round(float(frame.pts * frame.time_base), 6)
        s = self.cur
        s.audio_samples += frame.samples
        self.audio_samples += frame.samples
        s.first_audio = t if s.first_audio is None else s.first_audio
        s.last_audio = t
        if self.flash and frame.pts % media.AUDIO_RATE == 0:
            self.beep_onsets.append(t)


CLOCK = MediaClock()
# A track that starts within this time after a slot still takes that slot (it is sent at once), so audio and
# video both start at media time 0 even though their senders start a few milliseconds apart.
START_GRACE = 0.015
STATS = Stats()
LONG_GOP = False
X264_PRESET: str | None = None


# -- encoders ----------------------------------------------------------------------------------------------
class HarnessH264Encoder(H264Encoder):
    """aiortc's H.264 encoder with counting, IDR logging and the --long-gop option."""

    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool):
        if self.codec and (frame.width != self.codec.width or frame.height != self.codec.height):
            self.buffer_data, self.buffer_pts, self.codec = b"", None, None
            STATS.codec_restarts += 1
        elif self.codec and abs(self.target_bitrate - self.codec.bit_rate) / self.codec.bit_rate > 0.1:
            if LONG_GOP:
                self.codec.bit_rate = self.target_bitrate  # libx264 reconfigures (VBV), no new IDR
                STATS.bitrate_changes += 1
            else:
                self.buffer_data, self.buffer_pts, self.codec = b"", None, None
                STATS.codec_restarts += 1
        if force_keyframe:
            STATS.keyframe_requests += 1
            frame.pict_type = av.video.frame.PictureType.I
        else:
            frame.pict_type = av.video.frame.PictureType.NONE
        if self.codec is None:
            self.codec = av.CodecContext.create("libx264", "w")
            self.codec.width = frame.width
            self.codec.height = frame.height
            self.codec.bit_rate = self.target_bitrate
            self.codec.pix_fmt = "yuv420p"
            self.codec.framerate = fractions.Fraction(30, 1)
            self.codec.time_base = fractions.Fraction(1, 30)
            options = {"level": "31", "tune": "zerolatency"}
            if X264_PRESET and X264_PRESET != "default":
                options["preset"] = X264_PRESET
            if LONG_GOP:
                options["x264-params"] = "keyint=infinite:scenecut=0"
                options["forced-idr"] = "1"
                # x264 changes the bitrate of a running encoder only with VBV on
                options["maxrate"] = options["bufsize"] = str(self.target_bitrate)
            self.codec.options = options
            self.codec.profile = "Baseline"
        STATS.on_video(frame)
        data = b"".join(bytes(p) for p in self.codec.encode(frame))
        if not data:
            return
        nals = list(self._split_bitstream(data))
        STATS.video_bytes += len(data)
        if any(n and (n[0] & 0x1F) == 5 for n in nals):
            STATS.keyframes.append(round(float(frame.pts * frame.time_base), 6))
        yield from nals


class HarnessOpusEncoder(OpusEncoder):
    def encode(self, frame, force_keyframe: bool = False):
        STATS.on_audio(frame)
        return super().encode(frame, force_keyframe)


def harness_get_encoder(codec):
    mime = codec.mimeType.lower()
    if mime == "video/h264":
        return HarnessH264Encoder()
    if mime == "audio/opus":
        return HarnessOpusEncoder()
    return aiortc_get_encoder(codec)


aiortc.rtcrtpsender.get_encoder = harness_get_encoder



# -- tracks ------------------------------------------------------------------------------------------------
class Source:
    """Everything the tracks of all (re)join sessions share: media schedule, precomputed frames, counters."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.flash_s = args.flash_ms / 1000.0
        w, h = args.resolution
        self.res_changes: list[tuple[float, tuple[int, int]]] = sorted(args.resolution_change_at)
        self.res_times = [t for t, _ in self.res_changes]
        self.base_res = (w, h)
        self._frames: dict[tuple[int, int], list[av.VideoFrame]] = {}
        self._flat: dict[tuple[int, int, int], av.VideoFrame] = {}
        self._slots: dict[int, list[float]] = {}
        self.frame_number = 0
        if args.flash_beep:
            self.audio_frames = media.make_beep_frames(self.flash_s)
        else:
            self.audio_frames = media.make_tone_frames(args.tone)
        # precompute video now, not while media is flowing
        for _, res in [(0.0, self.base_res), *self.res_changes]:
            self._video_frames_for(res)

    def resolution_at(self, t: float) -> tuple[int, int]:
        i = bisect.bisect_right(self.res_times, t)
        return self.base_res if i == 0 else self.res_changes[i - 1][1]

    def _video_frames_for(self, res: tuple[int, int]) -> list[av.VideoFrame]:
        if self.args.flash_beep:
            key_b, key_w = (*res, media.Y_BLACK), (*res, media.Y_WHITE)
            if key_b not in self._flat:
                self._flat[key_b] = media.make_flat_frame(*res, media.Y_BLACK)
                self._flat[key_w] = media.make_flat_frame(*res, media.Y_WHITE)
            return [self._flat[key_b], self._flat[key_w]]
        if res not in self._frames:
            if self.args.colour is not None:
                self._frames[res] = media.make_colour_frames(*res, self.args.colour, count=30, seed=self.args.seed)
            else:
                self._frames[res] = media.make_pattern_frames(*res, count=30, seed=self.args.seed)
        return self._frames[res]

    def slots(self, k: int) -> list[float]:
        if k not in self._slots:
            rng = np.random.default_rng(self.args.seed * 1_000_003 + k) if self.args.vfr else None
            self._slots[k] = media.video_slots_for_second(k, 30, self.args.vfr, rng)
        return self._slots[k]

    def next_slot(self, t: float) -> float:
        """First video slot at or after media time ``t`` (slots are exact multiples for CFR)."""
        k = max(0, math.floor(t))
        while True:
            for s in self.slots(k):
                if s >= t - 1e-9:
                    return s
            k += 1

    def video_frame(self, t: float) -> av.VideoFrame:
        res = self.resolution_at(t)
        frames = self._video_frames_for(res)
        if self.args.flash_beep:
            frame = frames[1] if (t - math.floor(t)) < self.flash_s - 1e-9 else frames[0]
        else:
            frame = frames[self.frame_number % len(frames)]
        media.stamp_barcode(frame, self.frame_number)
        self.frame_number += 1
        frame.pts = round(t * media.VIDEO_CLOCK)
        frame.time_base = media.VIDEO_TIME_BASE
        return frame


class SyntheticVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, source: Source, start_at: float) -> None:
        super().__init__()
        self.source = source
        self.start_at = start_at
        self._next: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        CLOCK.start()
        if self._next is None:
            self._next = self.source.next_slot(max(self.start_at, CLOCK.now() - START_GRACE))
        t = self._next
        lag, lag_at = self.source.args.video_lag
        await CLOCK.sleep_until(t + lag if lag and t >= lag_at else t)
        if self.readyState != "live":
            raise MediaStreamError
        frame = self.source.video_frame(t)
        self._next = self.source.next_slot(t + 1e-6)
        return frame


class SyntheticAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        self._k: int | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        CLOCK.start()
        if self._k is None:
            self._k = math.ceil((CLOCK.now() - START_GRACE) / 0.02 - 1e-9)
        k = self._k
        await CLOCK.sleep_until(k * 0.02)
        if self.readyState != "live":
            raise MediaStreamError
        frames = self.source.audio_frames
        frame = frames[k % len(frames)]
        frame.pts = k * media.AUDIO_FRAME
        frame.time_base = media.AUDIO_TIME_BASE
        frame.sample_rate = media.AUDIO_RATE
        self._k = k + 1
        return frame


# -- the publisher -----------------------------------------------------------------------------------------
class Publisher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.source = Source(args)
        self.stop = asyncio.Event()
        self.client: JanusWS | None = None

    def plan(self) -> list[tuple[float, float | None]]:
        a = self.args
        end = a.duration
        if a.leave_at is not None:
            sessions: list[tuple[float, float | None]] = [(0.0, a.leave_at)]
            if a.rejoin_at is not None:
                sessions.append((a.rejoin_at, end))
            return sessions
        return [(0.0, end)]

    async def _wait_media_time(self, t: float | None) -> bool:
        """Wait until media time ``t`` (forever if None); False if asked to stop first."""
        waits = [asyncio.ensure_future(self.stop.wait()),
                 asyncio.ensure_future(self.client.closed.wait())]
        if t is not None:
            waits.append(asyncio.ensure_future(CLOCK.sleep_until(t)))
        _done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
        if self.client.closed.is_set():
            raise JanusWSError("Janus closed the WebSocket")
        return not self.stop.is_set()

    async def run(self) -> int:
        a = self.args
        self.client = await JanusWS(a.ws, token=a.token).connect()
        emit("connected", session_id=self.client.session_id)
        try:
            for i, (start, end) in enumerate(self.plan()):
                if i > 0 and not await self._wait_media_time(start):
                    break
                STATS.sessions.append(Session(i))
                await self._session(i, end)
                if self.stop.is_set():
                    break
        finally:
            await self.client.close()
        return 0

    async def _session(self, index: int, end: float | None) -> None:
        a = self.args
        handle = await self.client.attach()
        join = {"request": "join", "ptype": "publisher", "room": a.room, "display": a.display}
        if a.id is not None:
            join["id"] = a.id  # the same id on every join: a rejoin Janus tells apart from a newcomer
        if a.pin is not None:
            join["pin"] = a.pin
        reply = await handle.message(join)
        data = reply["plugindata"]["data"]
        STATS.cur.publisher_id = data.get("id")
        emit("joined", id=data.get("id"), private_id=data.get("private_id"), room=a.room, display=a.display,
             session=index, publishers=[p.get("id") for p in data.get("publishers", [])])

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        tracks: list[MediaStreamTrack] = []
        if not a.no_audio:
            tracks.append(SyntheticAudioTrack(self.source))
        if not a.no_video:
            tracks.append(SyntheticVideoTrack(self.source, start_at=a.video_delay))
        for tr in tracks:
            transceiver = pc.addTransceiver(tr, direction="sendonly")
            if tr.kind == "video" and a.video_codec:  # offer this codec only (Janus picks among the room's)
                wanted = {f"video/{a.video_codec}", "video/rtx"}
                transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                                 if c.mimeType.lower() in wanted])
        try:
            await pc.setLocalDescription(await pc.createOffer())
            body = {"request": "publish", "display": a.display}
            if a.bitrate:
                body["bitrate"] = a.bitrate
            reply = await handle.message(body, jsep={"type": "offer", "sdp": pc.localDescription.sdp})
            data = reply["plugindata"]["data"]
            jsep = reply.get("jsep")
            if not jsep:
                raise JanusWSError(f"publish answered without jsep: {data}")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type=jsep["type"]))
            await handle.next_event(lambda e: e.get("janus") == "webrtcup", timeout=a.publish_timeout)
            emit("published", id=STATS.cur.publisher_id, session=index, streams=data.get("streams", []))
            await self._wait_media_time(end)
        finally:
            # Stop producing first, give the last frames time to reach Janus, then leave: the counts in the
            # exit report are then the frames that were sent while Janus still listened.
            for tr in tracks:
                tr.stop()
            await asyncio.sleep(0.25)
            emit("leaving", id=STATS.cur.publisher_id, session=index)  # the leave request goes out now
            with contextlib.suppress(Exception):
                await handle.message({"request": "leave"}, timeout=5)
            await pc.close()
            await handle.detach()
            emit("left", id=STATS.cur.publisher_id, session=index)


def _res(s: str) -> tuple[int, int]:
    w, h = s.lower().split("x")
    return int(w), int(h)


def _lag(s: str) -> tuple[float, float]:
    lag, at = s.split(":")
    return float(lag), float(at)


def _colour(s: str) -> tuple[int, int, int]:
    try:
        return media.parse_colour(s)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _res_change(s: str) -> tuple[float, tuple[int, int]]:
    t, res = s.split(":")
    return float(t), _res(res)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.harness.publisher",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--ws", required=True, help="Janus WebSocket URL, e.g. ws://10.213.1.2:8188")
    p.add_argument("--room", type=int, required=True)
    p.add_argument("--display", default="publisher")
    p.add_argument("--duration", type=float, help="media seconds to publish (default: until SIGTERM)")
    p.add_argument("--no-audio", action="store_true")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--video-delay", type=float, default=0.0, metavar="S",
                   help="video frames start at media time S (camera switched on after the microphone)")
    p.add_argument("--video-lag", type=_lag, default=(0.0, 0.0), metavar="S:T",
                   help="from media time T on, each video frame is handed to its encoder S seconds after its media "
                        "time (a sender whose video runs late against its audio: a busy encoder, a pacer)")
    p.add_argument("--resolution", type=_res, default=(640, 480), metavar="WxH")
    p.add_argument("--resolution-change-at", type=_res_change, action="append", default=[], metavar="T:WxH",
                   help="from media time T on, frames are WxH (repeatable)")
    p.add_argument("--vfr", action="store_true", help="variable frame rate, 20-30 frames in each second")
    p.add_argument("--long-gop", action="store_true", help="keyframes only at start and on PLI/FIR")
    p.add_argument("--flash-beep", action="store_true",
                   help="black/silent, with a white flash and a 1 kHz beep at every whole media second")
    p.add_argument("--flash-ms", type=float, default=60.0, help="flash/beep length, 40-100 ms (default 60)")
    p.add_argument("--colour", type=_colour, metavar="#RRGGBB",
                   help="video: this solid colour (with the barcode strip and a noisy patch) instead of the test "
                        "pattern")
    p.add_argument("--tone", type=float, default=440.0, metavar="HZ",
                   help="audio: a sine of this frequency (default 440; a whole number of Hz loops seamlessly)")
    p.add_argument("--leave-at", type=float, metavar="T", help="leave the room at media time T")
    p.add_argument("--rejoin-at", type=float, metavar="T", help="join again (same display) at media time T")
    p.add_argument("--pin")
    p.add_argument("--id", type=int, help="join with this publisher id (each join, rejoins too)")
    p.add_argument("--video-codec", choices=("h264", "vp8"), help="offer only this video codec")
    p.add_argument("--token")
    p.add_argument("--bitrate", type=int, help="bitrate cap sent with the publish request")
    p.add_argument("--x264-preset", default="veryfast",
                   help="libx264 preset (default veryfast: ~15 %% of a core per publisher instead of ~22 %% "
                        "with 'default' = libx264's own medium, which aiortc uses)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--publish-timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    if args.no_audio and args.no_video:
        p.error("--no-audio and --no-video together leave nothing to publish")
    if args.rejoin_at is not None and (args.leave_at is None or args.rejoin_at <= args.leave_at):
        p.error("--rejoin-at needs --leave-at before it")
    if not 40 <= args.flash_ms <= 100:
        p.error("--flash-ms must be within 40-100")
    if args.flash_beep and args.colour is not None:
        p.error("--colour and --flash-beep are two different pictures: choose one")
    if not 20 <= args.tone <= 20000:
        p.error("--tone must be within 20-20000 Hz")
    return args


async def amain(args: argparse.Namespace) -> int:
    global LONG_GOP, X264_PRESET
    LONG_GOP = args.long_gop
    X264_PRESET = args.x264_preset
    STATS.flash = args.flash_beep
    pub = Publisher(args)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, pub.stop.set)
    rc = 0
    try:
        rc = await pub.run()
    except (JanusWSError, OSError, TimeoutError) as e:
        emit("error", error=f"{type(e).__name__}: {e}")
        rc = 1
    emit("exit", rc=rc, video_frames=STATS.video_frames, audio_samples=STATS.audio_samples,
         video_sizes=STATS.video_sizes, flash_onsets=STATS.flash_onsets, beep_onsets=STATS.beep_onsets,
         keyframes=STATS.keyframes, keyframe_requests=STATS.keyframe_requests,
         video_bytes=STATS.video_bytes, codec_restarts=STATS.codec_restarts,
         bitrate_changes=STATS.bitrate_changes, last_frame_number=
         pub.source.frame_number - 1, wall_t0=CLOCK.wall0,
         sessions=[s.__dict__ for s in STATS.sessions])
    return rc


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.exit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
