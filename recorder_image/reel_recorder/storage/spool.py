"""The spool budget: how much of the recorder's spool is used, and whether new media may still go into it.

In a pod the spool is an emptyDir with a ``sizeLimit`` (the operator's REEL_RECORDER_SPOOL_SIZE_LIMIT, passed to
the recorder in bytes as REEL_SPOOL_LIMIT). The kubelet evicts the pod when the volume grows beyond it, and everything
not stored yet is lost with the pod. The spool grows when the stores take segments more slowly than the writers
close them (a store down for long), so the recorder keeps below the limit itself:

- Measured, not counted: ``measure`` walks the spool (``os.scandir``) and sums the disk blocks of every file,
  as the kubelet's ``du`` does: the unstored segments (the ledger knows those), but also the segments being
  written, the MP4s and anything else in the folder, which a count kept by the writers and the uploader would
  miss or get wrong. A walk over a few thousand files takes milliseconds; the Recorder runs it once a second,
  four times a second above the low-water mark (``SpoolState.near``).
- Hysteresis: at ``high`` (90 % of the limit) the spool is *full*: ``admit`` says no, so writers close their open
  segment and drop their media (``dropped`` counts it: segments and seconds not recorded). Nothing in the spool
  is deleted to make room: the oldest unstored data is kept and keeps being uploaded. Once uploads bring the
  spool below ``low`` (70 %) it is not full any more and writers start again, after an #EXT-X-DISCONTINUITY as
  after a pause. The room above the high-water mark is for what the writers write between two measurements
  (each participant's media of a fraction of a second, and the muxers' buffers).
- Episodes: each full stretch (``since``, ``until``, ``droppedSegments``, ``droppedSeconds``) goes into the
  manifest (``diskFull``); the totals into status.spool, from which the operator makes the DiskFull condition.

Threads: ``admit`` and ``dropped`` are called by the media threads (a ParticipantWriter, with its lock
held); ``measure`` by a worker thread of the event loop (``asyncio.to_thread``, once a second while recording,
once more after the upload); ``snapshot`` and ``finish`` by the event loop. ``_lock`` guards every field below
it; the walk runs without it, so a writer never waits for the disk.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..progress import now_iso

log = logging.getLogger("reel.spool")

HIGH_WATER = 0.90  # of the limit: the spool is full, new media is dropped
LOW_WATER = 0.70  # of the limit: uploads drained it, recording into the spool resumes

def parse_size(text: str) -> int:
    """A spool limit in bytes: a positive whole number (the operator turns the emptyDir's sizeLimit, a Kubernetes
    quantity, into bytes with the Kubernetes client's own parser). Raises ValueError for anything else."""
    try:
        size = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number of bytes") from None
    if size <= 0:
        raise ValueError(f"{text!r}: the size must be at least one byte")
    return size


def disk_usage(root: Path) -> int:
    """Bytes the files under ``root`` take on disk (their blocks, as ``du``; the size where blocks are unknown).
    Files that vanish during the walk (stored and deleted meanwhile) are skipped."""
    total = 0
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                            blocks = getattr(st, "st_blocks", None)
                            total += blocks * 512 if blocks is not None else st.st_size
                    except FileNotFoundError:
                        continue
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total


@dataclass(frozen=True)
class SpoolState:
    """The spool as last measured, and what a full spool cost so far (this recorder)."""

    limit: int
    used: int = 0
    full: bool = False
    dropped_segments: int = 0
    dropped_seconds: float = 0.0
    episodes: tuple[dict, ...] = ()  # copies: [{"since", "until", "droppedSegments", "droppedSeconds"}]
    near: bool = False  # full, or above the low-water mark: measure more often

    def as_status(self, earlier: tuple[int, float] = (0, 0.0)) -> dict:
        """RecordingSession status.spool (reel_api SpoolStatus). ``earlier``: segments and seconds not recorded
        by the earlier recorders of a resumed recording (from the manifest)."""
        return {"limitBytes": self.limit, "usedBytes": self.used, "full": self.full,
                "droppedSegments": self.dropped_segments + earlier[0],
                "droppedSeconds": round(self.dropped_seconds + earlier[1], 3)}


def episode_totals(episodes) -> tuple[int, float]:
    """Segments and seconds not recorded in these manifest ``diskFull`` episodes."""
    return (sum(int(e.get("droppedSegments") or 0) for e in episodes),
            sum(float(e.get("droppedSeconds") or 0.0) for e in episodes))


class SpoolBudget:
    """The gate the writers ask before each new segment, and the spool's measurements (module docstring)."""

    def __init__(self, path: Path, limit: int, *, high: float = HIGH_WATER, low: float = LOW_WATER,
                 usage: Callable[[Path], int] = disk_usage, clock: Callable[[], str] = now_iso):
        if limit <= 0:
            raise ValueError("the spool limit must be positive")
        if not 0 < low < high <= 1:
            raise ValueError("expected 0 < low < high <= 1")
        self.path = Path(path)
        self.limit = int(limit)
        self.high_bytes = int(limit * high)
        self.low_bytes = int(limit * low)
        self._usage = usage
        self._clock = clock
        self._lock = threading.Lock()
        # guarded by _lock:
        self._used = 0
        self._full = False
        self._finished = False  # no more media: no new episode starts
        self._dropped_segments = 0
        self._dropped_seconds = 0.0
        self._episodes: list[dict] = []

    # -- media threads -------------------------------------------------------------------------------------
    def admit(self) -> bool:
        """May a writer open a new segment? False while the spool is full."""
        with self._lock:
            return not self._full

    def dropped(self, *, segments: int = 0, seconds: float = 0.0) -> None:
        """A writer dropped media because the spool is full: ``segments`` it would have started, ``seconds`` of
        media. Counted in the current (or last) episode."""
        with self._lock:
            self._dropped_segments += segments
            self._dropped_seconds += seconds
            if self._episodes:
                episode = self._episodes[-1]
                episode["droppedSegments"] += segments
                episode["droppedSeconds"] += seconds

    # -- event loop (and its worker threads) ---------------------------------------------------------------
    def measure(self) -> SpoolState:
        """Walk the spool (without the lock), then move between full and not full (high/low water)."""
        used = self._usage(self.path)
        with self._lock:
            self._used = used
            if not self._full and used >= self.high_bytes and not self._finished:
                self._full = True
                self._episodes.append({"since": self._clock(), "until": None, "droppedSegments": 0,
                                       "droppedSeconds": 0.0})
                log.warning("spool full: %d of %d bytes used (high-water mark %d): new media is not recorded "
                            "until uploads bring it below %d bytes; nothing stored is lost", used, self.limit,
                            self.high_bytes, self.low_bytes)
            elif self._full and used < self.low_bytes:
                self._full = False
                self._end_episode_locked()
                log.warning("spool below its low-water mark again (%d of %d bytes): recording resumes", used,
                            self.limit)
            return self._state_locked()

    def snapshot(self) -> SpoolState:
        with self._lock:
            return self._state_locked()

    def finish(self) -> SpoolState:
        """The recording ended (no more media): an open episode ends now; none starts any more."""
        with self._lock:
            self._finished = True
            self._end_episode_locked()
            return self._state_locked()

    # -- internals (lock held) -----------------------------------------------------------------------------
    def _end_episode_locked(self) -> None:
        if self._episodes and self._episodes[-1]["until"] is None:
            self._episodes[-1]["until"] = self._clock()

    def _state_locked(self) -> SpoolState:
        episodes = tuple({**e, "droppedSeconds": round(e["droppedSeconds"], 3)} for e in self._episodes)
        return SpoolState(limit=self.limit, used=self._used, full=self._full,
                          dropped_segments=self._dropped_segments, dropped_seconds=self._dropped_seconds,
                          episodes=episodes, near=self._full or self._used >= self.low_bytes)
