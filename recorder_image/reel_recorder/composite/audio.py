"""The composite's sound: every participant's audio decoded, put on the recording clock, mixed and limited.

``AudioMixer`` takes each participant's Opus packets as the ingest demuxes them (``push``; or decoded frames,
``push_frame``), decodes them (one FFmpeg Opus decoder per participant, through PyAV), resamples to the
mix format (48 kHz, stereo, float planar) and buffers the samples by their sample index on the recording
clock (index = round(t x 48000)). Consecutive packets are kept sample-contiguous (an arrival-time jitter of a
few milliseconds is absorbed); a gap stays a gap, so lost audio is silence and never shifts what follows.

``mix(t0, t1)`` returns exactly the samples of [t0, t1): the participants summed in float (a participant
without audio there is silence), then through a peak limiter (limiter.py, FFmpeg ``alimiter``: no clipping,
and a single speaker under the limit passes unchanged). Calls must follow each other (t0 = the previous t1)
within a run; ``start(t)`` begins a run, ``finish()`` ends it. Audio that arrives for a time already mixed is
dropped and counted (``late_samples``).

``loudness(at)`` gives each participant's RMS level (dBFS) over the last ``window`` seconds before ``at``;
``SpeakerChoice`` turns that into the speaker of the speaker layout, without flapping.

Threads and the lock:
- ``push``/``push_frame`` for a participant come from that participant's audio ingest thread; its decoder,
  resampler and continuity state are that thread's own. The lock is taken only to append the samples.
- ``mix``, ``start``, ``finish``, ``loudness`` run on the compositor thread (engine.py); ``add``/``remove``
  on any thread. The limiter is the compositor thread's own.
- ``_lock`` guards ``_parts`` (each participant's buffered chunks and level history), ``_fed`` (the first
  sample not yet mixed: earlier audio is late) and the counters.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

import av
import numpy as np

from ..output.audio import OPUS_PRE_SKIP
from .limiter import LIMIT_DB, Limiter

log = logging.getLogger(__name__)

RATE = 48000
SNAP = 480  # a packet this close (10 ms) to where the previous one ended continues it exactly
KEEP = 10.0  # seconds of audio buffered ahead of the mix at most (a participant's clock far ahead)
SILENT_DB = -120.0


@dataclass
class _Participant:
    codec: str
    decoder: av.CodecContext | None = None  # ingest thread
    resampler: av.AudioResampler | None = None  # ingest thread
    next_index: int | None = None  # ingest thread: where the previous packet ended
    removed: bool = False
    chunks: deque = field(default_factory=deque)  # (first sample index, channels x n float32), in order
    levels: deque = field(default_factory=deque)  # (end index, sum of squares, samples)


class AudioMixer:
    def __init__(self, *, rate: int = RATE, layout: str = "stereo", limit_db: float = LIMIT_DB,
                 window: float = 2.0):
        self.rate, self.layout = rate, layout
        self.channels = av.AudioLayout(layout).nb_channels
        self.limit_db = limit_db
        self.window = window
        self._lock = threading.Lock()
        self._parts: dict[Hashable, _Participant] = {}
        self._fed: int | None = None  # None: no run
        self._out = 0  # sample index of the next limited sample mix() returns
        self._held = np.zeros((self.channels, 0), np.float32)  # limited samples from _out on, not returned yet
        self._limiter: Limiter | None = None
        self.late_samples = 0
        self.decode_errors = 0

    # -- who is heard (any thread) ---------------------------------------------------------------------------
    def add(self, pid: Hashable, codec: str = "opus") -> None:
        with self._lock:
            part = self._parts.get(pid)
            if part is None or part.removed:
                self._parts[pid] = _Participant(codec)

    def remove(self, pid: Hashable) -> None:
        """No more audio from ``pid``; what is buffered is still mixed."""
        with self._lock:
            if pid in self._parts:
                self._parts[pid].removed = True

    # -- input (the participant's audio ingest thread) --------------------------------------------------------
    def push(self, pid: Hashable, packet: av.Packet, t: float) -> None:
        """One encoded packet (Opus) whose first sample plays at recording time ``t``."""
        with self._lock:
            part = self._parts.get(pid)
        if part is None or part.removed:
            return
        if part.decoder is None:
            part.decoder = av.CodecContext.create(part.codec, "r")
            part.decoder.sample_rate = RATE
            part.decoder.layout = "stereo"
        index = round(t * self.rate)
        if part.codec == "opus":  # the decoder's output starts with older samples (output/audio.py OPUS_PRE_SKIP)
            index -= round(OPUS_PRE_SKIP * self.rate / 48000)
        try:
            frames = part.decoder.decode(av.Packet(bytes(packet)))
        except av.FFmpegError as err:
            self.decode_errors += 1
            if self.decode_errors <= 3:
                log.info("composite: audio packet not decoded (%s): silence there", err)
            return
        for frame in frames:
            index = self._take(pid, part, frame, index)

    def push_frame(self, pid: Hashable, frame: av.AudioFrame, t: float) -> None:
        """Decoded audio (any rate and layout) whose first sample plays at recording time ``t``."""
        with self._lock:
            part = self._parts.get(pid)
        if part is not None and not part.removed:
            self._take(pid, part, frame, round(t * self.rate))

    def _take(self, pid: Hashable, part: _Participant, frame: av.AudioFrame, index: int) -> int:
        if part.resampler is None:
            part.resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        if part.next_index is not None and abs(index - part.next_index) <= SNAP:
            index = part.next_index
        for out in part.resampler.resample(frame):
            samples = out.to_ndarray().astype(np.float32, copy=False)
            self._append(part, index, samples)
            index += samples.shape[1]
        part.next_index = index
        return index

    def _append(self, part: _Participant, index: int, samples: np.ndarray) -> None:
        n = samples.shape[1]
        with self._lock:
            if self._fed is not None and index < self._fed:  # (partly) for a time already mixed
                late = min(self._fed - index, n)
                self.late_samples += late
                samples, index, n = samples[:, late:], index + late, n - late
                if n == 0:
                    return
            if part.chunks and index < part.chunks[-1][0] + part.chunks[-1][1].shape[1]:
                last_end = part.chunks[-1][0] + part.chunks[-1][1].shape[1]
                skip = min(last_end - index, n)  # overlaps what we have (a step back): keep the earlier audio
                samples, index, n = samples[:, skip:], index + skip, n - skip
                if n == 0:
                    return
            part.chunks.append((index, samples))
            part.levels.append((index + n, float(np.square(samples).sum()), n * samples.shape[0]))
            horizon = index + n - round(self.window * self.rate)
            while part.levels and part.levels[0][0] < horizon:
                part.levels.popleft()
            limit = index + n - round(KEEP * self.rate)
            while part.chunks and part.chunks[0][0] < limit:  # nobody mixes (no run): do not grow
                part.chunks.popleft()

    # -- mixing (the compositor thread) -------------------------------------------------------------------------
    def start(self, t: float) -> None:
        """A run begins at recording time ``t``: the first ``mix`` starts there."""
        index = round(t * self.rate)
        with self._lock:
            self._fed = index
        self._out = index
        self._held = np.zeros((self.channels, 0), np.float32)
        self._limiter = Limiter(self.rate, self.layout, self.limit_db)

    def finish(self) -> None:
        """The run ends: forget the limiter (it holds only look-ahead beyond the last ``mix``)."""
        with self._lock:
            self._fed = None
        self._limiter = None
        self._held = np.zeros((self.channels, 0), np.float32)

    def mix(self, t0: float, t1: float) -> np.ndarray:
        """The mixed, limited samples of [t0, t1) (channels x n float32); t0 must be where the last mix ended."""
        if self._limiter is None:
            self.start(t0)
        s0, s1 = round(t0 * self.rate), round(t1 * self.rate)
        if s0 != self._out:
            log.debug("composite audio: mix from %d, expected %d", s0, self._out)
            s1 = self._out + (s1 - s0)
        want = max(s1 - self._out, 0)
        for _ in range(8):
            if self._held.shape[1] >= want:
                break
            need = want - self._held.shape[1]
            self._held = np.concatenate([self._held, self._limiter.process(self._sum(need))], axis=1)
        if self._held.shape[1] < want:  # the limiter kept more than its look-ahead: should not happen
            pad = np.zeros((self.channels, want - self._held.shape[1]), np.float32)
            self._held = np.concatenate([self._held, pad], axis=1)
        out, self._held = self._held[:, :want], self._held[:, want:]
        self._out += want
        return np.clip(out, -1.0, 1.0)

    def _sum(self, n: int) -> np.ndarray:
        """The next ``n`` samples from ``_fed`` on, summed over the participants; consumes them."""
        out = np.zeros((self.channels, n), np.float32)
        with self._lock:
            a = self._fed
            b = a + n
            for pid in list(self._parts):
                part = self._parts[pid]
                chunks = part.chunks
                for start, samples in chunks:
                    if start >= b:
                        break
                    end = start + samples.shape[1]
                    lo, hi = max(start, a), min(end, b)
                    if lo < hi:
                        out[:, lo - a:hi - a] += samples[:, lo - start:hi - start]
                while chunks and chunks[0][0] + chunks[0][1].shape[1] <= b:
                    chunks.popleft()
                if part.removed and not chunks:
                    del self._parts[pid]
            self._fed = b
        return out

    # -- levels (the compositor thread) ------------------------------------------------------------------------
    def loudness(self, at: float) -> dict[Hashable, float]:
        """Each participant's RMS level (dBFS) over the ``window`` seconds before ``at``."""
        lo = round((at - self.window) * self.rate)
        out: dict[Hashable, float] = {}
        with self._lock:
            for pid, part in self._parts.items():
                energy = count = 0
                for end, sumsq, n in part.levels:
                    if end > lo:
                        energy += sumsq
                        count += n
                out[pid] = 10 * math.log10(energy / count) if energy > 0 and count else SILENT_DB
        return out


class SpeakerChoice:
    """Who is the speaker: the loudest participant, changed only when someone else is clearly louder
    (``margin`` dB, or the speaker fell silent) and the speaker has held the tile for ``hold`` seconds.
    Pure; the compositor thread's own."""

    def __init__(self, *, margin_db: float = 6.0, hold: float = 2.0, silent_db: float = -50.0):
        self.margin_db, self.hold, self.silent_db = margin_db, hold, silent_db
        self.current: Hashable | None = None
        self._since = -math.inf

    def update(self, levels: dict[Hashable, float], at: float) -> Hashable | None:
        if self.current not in levels:
            self.current = None
        loud = max(levels, key=levels.get) if levels else None
        if loud is None or levels[loud] <= self.silent_db:
            return self.current
        if self.current is None:
            self.current, self._since = loud, at
        elif loud != self.current and at - self._since >= self.hold:
            mine = levels[self.current]
            if mine <= self.silent_db or levels[loud] >= mine + self.margin_db:
                self.current, self._since = loud, at
        return self.current
