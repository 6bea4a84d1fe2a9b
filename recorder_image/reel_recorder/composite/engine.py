"""The composite recording's clockwork: a thread that composes, mixes and encodes at a fixed frame rate.

Timeline: a *run* starts at the first media of a present participant (its recording time ``t``) and ends at
a ``pause``, when the last participant leaves (``remove``: no trailing idle time), or at ``close`` (the stop);
the next media after that starts a new run (a gap: the lead's writer marks a discontinuity, ``on_run_end``
tells it when). Tick ``n`` of a run is the picture of time ``T = T0 + n / fps`` and the audio of
[T, T + 1/fps). A tick is processed once the recording clock reaches ``T + latency`` (media for T has arrived
by then), deadlines computed from ``n``, so there is no drift. A tick processed more than ``drop_after`` late
(compose + encode slower than real time) gets no picture: ``dropped_frames`` counts them; its audio is mixed
all the same, so the sound never has holes. Keyframes at each run's start and every ``segment_seconds``.

Output: ``on_packet(kind, packet, t)`` with kind "video" (H.264 Annex-B, pts in 1/90000 = t x 90000,
SPS/PPS in-band with each IDR) or "audio" (AAC, pts in 1/48000 on the recording clock), t = pts in seconds,
and ``on_run_end()`` after the last packet of a run. Both are called on the compositor thread only. To record
them with the participants' HLS machinery, a ``ParticipantWriter`` for folder "composite" takes the video as is
(``writer.video(packet, t)``, as from the ingest) and the AAC through ``writer.audio(packet, t)`` once the writer
can be given its audio transcoder: a parameter ``audio_transcoder=lambda: AacPassthrough(engine.audio_template)``
used wherever it now builds ``OpusToAac()``; ``request_keyframe`` a no-op (keyframes are already at segment
boundaries); ``on_run_end`` → ``writer.pause()``; ``close()`` → then ``writer.close()``.

Threads and locks:
- ingest threads: ``tap(pid).video/audio`` → ``video``/``audio`` here: a brief look at the run state under
  ``_lock``, then the compositor's ``decode`` / the mixer's ``push`` (their own locks, held briefly). Never
  waits for the compositor thread.
- the recorder (any thread): ``add``, ``remove``, ``video_ended``, ``pause``, ``resume`` (brief, under
  ``_lock``); ``close`` waits for the compositor thread to finish (up to ``timeout``).
- ``reel-composite`` (``start``): ``pump`` → compose, mix, encode, ``on_packet``, ``on_run_end``. The encoders
  and the run's tick counter are that thread's own (``pump`` runs on the caller's thread when not started:
  tests).
- ``_lock`` guards ``_state``, ``_members``, ``_start_at``, ``_end_at``, ``_end_state``, ``_close_at``,
  ``_t0``, ``_n``, ``_last_end``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable

import av

from ..clock import RecordingClock
from .audio import AudioMixer, SpeakerChoice
from .config import CompositeConfig
from .encoder import RATE, AudioEncoder, VideoEncoder, aac_template
from .layout import SPEAKER
from .tee import ParticipantTap
from .video import VideoCompositor

log = logging.getLogger(__name__)

OnPacket = Callable[[str, av.Packet, float], None]
IDLE, RUNNING, PAUSED, CLOSED = "idle", "running", "paused", "closed"
SPEAKER_EVERY = 0.3  # seconds between speaker choices


class CompositeEngine:
    def __init__(self, config: CompositeConfig, clock: RecordingClock, on_packet: OnPacket, *,
                 on_run_end: Callable[[], None] | None = None):
        self.config, self.clock = config, clock
        self.on_packet, self.on_run_end = on_packet, on_run_end or (lambda: None)
        c = config
        self.compositor = VideoCompositor(c.width, c.height, fps=c.fps, layout=c.layout, background=c.background,
                                          show_names=c.show_names) if c.video else None
        self.mixer = AudioMixer(layout=c.audio_layout) if c.audio else None
        self._template = aac_template(layout=c.audio_layout, bit_rate=c.audio_bitrate) if c.audio else None
        self._video_enc = VideoEncoder(c.width, c.height, c.fps, bit_rate=c.video_bitrate, gop=c.gop,
                                       preset=c.preset, threads=c.encoder_threads) if c.video else None
        self._audio_enc: AudioEncoder | None = None
        self._speaker = SpeakerChoice()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._state = IDLE
        self._members: dict[Hashable, ParticipantTap] = {}
        self._start_at: float | None = None  # first media time while idle
        self._end_at: float | None = None  # the running run ends at this time
        self._end_state = IDLE  # ... and the engine goes to this state then
        self._close_at: float | None = None  # close() was called: nothing after this time
        self._t0 = 0.0
        self._n = 0
        self._last_end = -math.inf
        self._key_group = -1
        self._next_speaker = 0.0
        self._thread: threading.Thread | None = None
        self.frames = 0
        self.dropped_frames = 0
        self.runs = 0
        self.cpu_seconds = 0.0  # CPU time of the ticks (compose, mix, encode) on the compositor thread
        self.error: BaseException | None = None

    @property
    def audio_template(self):
        """The AAC stream whose parameters a muxer copies (None without audio)."""
        return self._template[1] if self._template else None

    # -- participants (the recorder) ---------------------------------------------------------------------------
    def add(self, pid: Hashable, display_name: str, joined_at: float | None = None, *, video_codec: str = "h264",
            audio_codec: str = "opus") -> ParticipantTap:
        """``pid`` is in the composite from ``joined_at`` (default: now); returns their tap."""
        at = self.clock.now() if joined_at is None else joined_at
        with self._lock:
            tap = self._members.get(pid) or ParticipantTap(self, pid)
            self._members[pid] = tap
            if self._state == RUNNING and self._end_state == IDLE:
                self._end_at = None  # someone came back before the empty room ended the run
        if self.compositor:
            self.compositor.add(pid, display_name, at, codec=video_codec, request_keyframe=tap.ask_keyframe)
        if self.mixer:
            self.mixer.add(pid, audio_codec)
        return tap

    def tap(self, pid: Hashable) -> ParticipantTap | None:
        with self._lock:
            return self._members.get(pid)

    def remove(self, pid: Hashable, at: float | None = None) -> None:
        """``pid`` left at ``at`` (default: now); the last one to leave ends the run there."""
        at = self.clock.now() if at is None else at
        with self._lock:
            if self._members.pop(pid, None) is None:
                return
            if not self._members and self._state == RUNNING and self._end_at is None:
                self._end_at, self._end_state = at, IDLE
        if self.compositor:
            self.compositor.remove(pid, at)
        if self.mixer:
            self.mixer.remove(pid)
        self._wake.set()

    def video_ended(self, pid: Hashable, at: float | None = None) -> None:
        """``pid`` stopped sending video (camera off): their name tile until video comes back."""
        if self.compositor:
            self.compositor.video_ended(pid, self.clock.now() if at is None else at)

    # -- media (ingest threads) ------------------------------------------------------------------------------
    def video(self, pid: Hashable, packet: av.Packet, t: float) -> None:
        if self.compositor and self._media(pid, t):
            self.compositor.decode(pid, packet, t)

    def audio(self, pid: Hashable, packet: av.Packet, t: float) -> None:
        if self.mixer and self._media(pid, t):
            self.mixer.push(pid, packet, t)

    def _media(self, pid: Hashable, t: float) -> bool:
        with self._lock:
            if pid not in self._members or self._state in (PAUSED, CLOSED):
                return False
            if self._end_at is not None and t >= self._end_at:
                return False
            if self._close_at is not None and t >= self._close_at:
                return False
            if self._state == IDLE and t > self._last_end:
                start = self._start_at is None
                self._start_at = t if start else min(self._start_at, t)
            else:
                start = False
        if start:
            self._wake.set()
        return True

    # -- runs (the recorder) -----------------------------------------------------------------------------------
    def pause(self, at: float | None = None) -> None:
        """The recording pauses at ``at`` (default: now): the run ends there; media is ignored until ``resume``."""
        at = self.clock.now() if at is None else at
        with self._lock:
            if self._state == RUNNING:
                self._end_at, self._end_state = at if self._end_at is None else min(self._end_at, at), PAUSED
            elif self._state == IDLE:
                self._state, self._start_at = PAUSED, None
        self._wake.set()

    def resume(self) -> None:
        """After a pause: the next media starts a new run."""
        with self._lock:
            if self._state == PAUSED:
                self._state = IDLE
            elif self._state == RUNNING and self._end_state == PAUSED:
                self._end_state = IDLE

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reel-composite", daemon=True)
        self._thread.start()

    def close(self, at: float | None = None, timeout: float = 10.0) -> None:
        """The recording stops at ``at`` (default: now): what is due up to then is composed at once, the
        encoders are flushed, ``on_run_end`` is called. Call it once the ingest has stopped."""
        at = self.clock.now() if at is None else at
        with self._lock:
            if self._state == CLOSED or self._close_at is not None:
                return
            self._close_at = at
            if self._state == RUNNING:
                self._end_at = at if self._end_at is None else min(self._end_at, at)
                self._end_state = CLOSED
            elif self._start_at is not None and self._start_at >= at:
                self._start_at = None
        if self._thread is not None:
            self._wake.set()
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("composite: did not finish within %.1f s", timeout)
        else:
            self._finish()

    # -- the compositor thread -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    closing = self._close_at is not None
                if closing:
                    self._finish()
                    return
                wait = self.pump(self.clock.now())
                self._wake.wait(min(max(wait, 0.0), 0.1))
                self._wake.clear()
        except BaseException as err:  # reported through .error; the participants' recordings go on
            self.error = err
            log.exception("composite: the compositor thread failed")
            with self._lock:
                self._state = CLOSED

    def _finish(self) -> None:
        self.pump(math.inf, final=True)
        with self._lock:
            running = self._state == RUNNING
        if running:
            self._end_run(CLOSED)
        if self._video_enc is not None:
            for p in self._video_enc.flush():
                self.on_packet("video", p, float(p.pts * p.time_base))
        with self._lock:
            self._state = CLOSED

    def pump(self, now: float, *, final: bool = False) -> float:
        """Process every tick due at clock time ``now``; returns the seconds until the next one is due.
        ``final`` (closing): everything up to the run's end is due now, and no picture is dropped."""
        while True:
            with self._lock:
                if self._state == IDLE and self._start_at is not None:
                    self._begin_locked(self._start_at)
                if self._state != RUNNING:
                    return 0.1
                n = self._n
                T = self._t0 + n / self.config.fps
                ending = (self._end_at is not None and self._end_at <= T) or (final and self._end_at is None)
                end_state, end_at = self._end_state, self._end_at
                due = T + self.config.latency
                if not ending and now < due:
                    return due - now
                self._n = n + 1
            if ending:
                self._end_run(end_state)
                continue
            started = time.thread_time()
            self._tick(n, T, late=not final and now - due > self.config.drop_after, end=end_at)
            self.cpu_seconds += time.thread_time() - started

    def _begin_locked(self, t0: float) -> None:
        self._state, self._t0, self._n, self._start_at = RUNNING, t0, 0, None
        self._end_at, self._end_state = None, IDLE
        if self._close_at is not None:  # media came just before the stop: a short last run
            self._end_at, self._end_state = self._close_at, CLOSED
        self._key_group = -1
        self.runs += 1
        if self.mixer:
            self.mixer.start(t0)
            self._audio_enc = AudioEncoder(layout=self.config.audio_layout, bit_rate=self.config.audio_bitrate)
        log.info("composite: run %d starts at %.3f s", self.runs, t0)

    def _tick(self, n: int, T: float, *, late: bool, end: float | None) -> None:
        """Tick ``n``: the picture of time T, the audio of [T, T + 1/fps) (of [T, end) in a run's last tick)."""
        fps = self.config.fps
        if self.compositor:
            if self.config.layout == SPEAKER and self.mixer and self._next_speaker <= T:
                self._next_speaker = T + SPEAKER_EVERY
                self.compositor.set_speaker(self._speaker.update(self.mixer.loudness(T + self.config.latency), T))
            if late:
                self.dropped_frames += 1
            else:
                group = n // self.config.gop
                key, self._key_group = group != self._key_group, group
                frame = self.compositor.compose(T)
                for p in self._video_enc.encode(frame, T, keyframe=key):
                    self.on_packet("video", p, float(p.pts * p.time_base))
                self.frames += 1
        if self.mixer:
            a0 = round(self._t0 * RATE)
            s0, s1 = a0 + round(n * RATE / fps), a0 + round((n + 1) * RATE / fps)
            if end is not None:
                s1 = max(s0, min(s1, round(end * RATE)))
            samples = self.mixer.mix(s0 / RATE, s1 / RATE)
            for p in self._audio_enc.encode(samples, s0):
                self.on_packet("audio", p, float(p.pts * p.time_base))

    def _end_run(self, state: str) -> None:
        if self._audio_enc is not None:
            for p in self._audio_enc.flush():
                self.on_packet("audio", p, float(p.pts * p.time_base))
            self._audio_enc = None
        if self.mixer:
            self.mixer.finish()
        with self._lock:
            self._last_end = self._end_at if self._end_at is not None else self._t0 + self._n / self.config.fps
            self._state = state
            self._end_at, self._end_state = None, IDLE
        log.info("composite: run %d ends at %.3f s", self.runs, self._last_end)
        self.on_run_end()

    # -- observations ---------------------------------------------------------------------------------------------
    def stats(self) -> dict:
        out = {"runs": self.runs, "frames": self.frames, "droppedFrames": self.dropped_frames,
               "cpuSeconds": round(self.cpu_seconds, 3)}
        if self.compositor:
            out["latePictures"] = self.compositor.late_pictures
        if self.mixer:
            out["lateAudioSamples"] = self.mixer.late_samples
        return out
