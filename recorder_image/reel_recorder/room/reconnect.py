"""Regaining a lost connection to Janus: backoff, a deadline, and what the gap looks like (status.room, manifest).

When the WebSocket drops or Janus restarts (``JanusRoom.closed``), the Recorder ends every participant's run as a
pause does (their forwarders died with Janus, or are stopped once it is back: ingest/forward.py ``_reclaim``) and
calls ``RoomLink.lost``: a task of its own reconnects on the same ``JanusRoom`` (a new socket, Janus session and
handle) and joins again as the same silent participant (display name, pin). Attempts follow ``Backoff`` (0.5 s
doubling to 5 s, ``next_attempt``) until ``spec.recording.reconnectSeconds`` have passed since the loss; then the
recording fails with ``JanusLost`` (the message names the server and the last error; 0 s: at once). Errors that
cannot get better (the pin, token, room secret or admin key refused) end it at once with their own reason; a room
that is not there is retried: after a Janus restart the application creates it again. Once joined, the Recorder
applies the join reply to a fresh ``Presence``: everyone publishing is recorded again, each playlist after an
``#EXT-X-DISCONTINUITY``, and the composite goes on after its own.

While the gap lasts the Recorder's loop goes on: the stop event and maxDurationSeconds end the recording as
usual, a pause is taken (a resume waits for the room), reports go on (heartbeatAt), and idle time
(maxIdleSeconds) does not count the gap (``gap_seconds``). The gap is ``status.room`` (``Reconnecting``, since,
message, reconnects) and an entry of the manifest's ``roomGaps`` (lostAt, reconnectedAt, error).

Threads: the event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reel_api.vocabulary import RoomState

from ..errors import FORWARD_UNAUTHORIZED, JANUS_LOST, ROOM_UNAUTHORIZED, RecorderError
from ..manifest import ManifestData
from ..progress import now_iso

if TYPE_CHECKING:
    from ..recorder import Room

log = logging.getLogger(__name__)

FIRST_DELAY = 0.5  # seconds before the first attempt after a loss
MAX_DELAY = 5.0  # the backoff doubles up to this
MIN_ATTEMPT = 2.0  # seconds an attempt may take even when the deadline is nearer (a connect and a join)
FATAL = frozenset({ROOM_UNAUTHORIZED, FORWARD_UNAUTHORIZED})  # credentials refused: retrying cannot help


@dataclass(frozen=True)
class Backoff:
    first: float = FIRST_DELAY
    cap: float = MAX_DELAY

    def delay(self, attempt: int) -> float:
        """The wait before attempt ``attempt`` (0: the first after the loss)."""
        return min(self.cap, self.first * 2 ** attempt)


def next_attempt(backoff: Backoff, attempt: int, elapsed: float, limit: float) -> float | None:
    """Seconds to wait before attempt ``attempt``, ``elapsed`` seconds after the loss; None: give up (``limit``
    reached). The last wait is cut short so that one attempt is made at the deadline."""
    if elapsed >= limit:
        return None
    return min(backoff.delay(attempt), limit - elapsed)


class RoomLink:
    """The recorder's connection to the room: Connected, or Reconnecting since a loss."""

    def __init__(self, room: Room, *, room_id, display: str, pin: str | None, limit: float, manifest: ManifestData,
                 backoff: Backoff = Backoff(), clock: Callable[[], float] = time.monotonic):
        self.room, self.room_id, self.display, self.pin = room, room_id, display, pin
        self.limit, self.manifest, self.backoff, self._clock = limit, manifest, backoff, clock
        self.state = RoomState.CONNECTED
        self.since: str | None = None  # None until the room is first joined
        self.message = ""
        self.reconnects = 0
        self._task: asyncio.Task | None = None
        self._lost_at = 0.0
        self._gaps = 0.0  # seconds of the gaps that ended

    @property
    def connected(self) -> bool:
        return self.state == RoomState.CONNECTED

    def status(self) -> dict | None:
        if self.since is None:
            return None
        return {"state": self.state, "since": self.since, "message": self.message, "reconnects": self.reconnects}

    def joined(self) -> None:
        self.since = now_iso()

    def gap_seconds(self) -> float:
        """Seconds without the room so far (the gaps that ended, and the one going on)."""
        return self._gaps + (self._clock() - self._lost_at if not self.connected else 0.0)

    def lost(self) -> None:
        """The connection is gone (``room.closed``): start regaining it."""
        error = self.room.error or "the connection closed"
        self.state, self.since, self._lost_at = RoomState.RECONNECTING, now_iso(), self._clock()
        self.message = f"lost the connection to Janus at {self.room.url}: {error}; reconnecting"
        self.manifest.room_gaps.append({"lostAt": self.since, "reconnectedAt": None, "error": error})
        log.warning("%s (for up to %s s)", self.message, self.limit)
        self._task = asyncio.create_task(self._reconnect(error), name="janus-reconnect")

    async def wait(self, timeout: float) -> dict | None:
        """The join reply once joined again (Connected), None while still reconnecting; raises the RecorderError
        that ends the recording (JanusLost after ``limit`` seconds, or credentials refused)."""
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            return None
        task, self._task = self._task, None
        joined = task.result()
        gap = self._clock() - self._lost_at
        self._gaps += gap
        self.state, self.since, self.reconnects = RoomState.CONNECTED, now_iso(), self.reconnects + 1
        self.message = f"reconnected to Janus at {self.room.url} after {gap:.1f} s"
        self.manifest.room_gaps[-1]["reconnectedAt"] = self.since
        log.warning("%s", self.message)
        return joined

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _reconnect(self, error: str) -> dict:
        attempt = 0
        while (delay := next_attempt(self.backoff, attempt, self._clock() - self._lost_at, self.limit)) is not None:
            await asyncio.sleep(delay)
            attempt += 1
            remaining = self.limit - (self._clock() - self._lost_at)
            try:
                async with asyncio.timeout(max(remaining, MIN_ATTEMPT)):
                    await self.room.connect()
                    return await self.room.join(self.display, pin=self.pin)
            except RecorderError as err:
                if err.reason in FATAL:
                    raise
                error = err.message
            except TimeoutError:
                error = "no answer from Janus (timeout)"
            self.message = f"reconnecting to Janus at {self.room.url} (attempt {attempt} failed: {error})"
            log.warning("%s", self.message)
            with contextlib.suppress(Exception):
                await self.room.close()  # a half-made session goes (the next connect starts afresh)
        raise RecorderError(JANUS_LOST, f"lost the connection to Janus at {self.room.url} and could not join room "
                            f"{self.room_id!r} again within spec.recording.reconnectSeconds ({self.limit:g} s); "
                            f"last error: {error}")
