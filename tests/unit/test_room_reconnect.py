"""Regaining a lost Janus connection (room/reconnect.py): the backoff and deadline policy, and RoomLink's states
against a fake room (the Recorder's side: tests/unit/test_recorder_lifecycle.py; real Janus:
tests/integration/test_janus_reconnect.py)."""

from __future__ import annotations

import asyncio

import pytest
from tests.support.fake_room import SERVER, FakeRoom, publisher

from reel_api.vocabulary import RoomState
from reel_recorder import errors
from reel_recorder.errors import RecorderError
from reel_recorder.manifest import ManifestData
from reel_recorder.room.janus import JanusRequestError, JanusRoom
from reel_recorder.room.reconnect import Backoff, RoomLink, next_attempt


def test_backoff_doubles_from_half_a_second_up_to_five():
    assert [Backoff().delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_attempts_stop_at_the_deadline_with_one_made_at_it():
    b = Backoff()
    assert next_attempt(b, 0, 0.0, 60) == 0.5
    assert next_attempt(b, 5, 30.0, 60) == 5.0
    assert next_attempt(b, 5, 58.0, 60) == 2.0  # cut short: the last attempt is at the deadline
    assert next_attempt(b, 6, 60.0, 60) is None
    assert next_attempt(b, 0, 0.0, 0) is None  # reconnectSeconds 0: give up at once


def test_the_schedule_of_a_minute():
    """Waits add up to the deadline: 0.5, 1, 2, 4, then every 5 s; 15 attempts in 60 s (attempts taking no time)."""
    b, elapsed, waits = Backoff(), 0.0, []
    while (wait := next_attempt(b, len(waits), elapsed, 60)) is not None:
        waits.append(wait)
        elapsed += wait
    assert waits[:5] == [0.5, 1.0, 2.0, 4.0, 5.0] and elapsed == 60 and len(waits) == 15


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


FAST = Backoff(0.01, 0.02)


def _link(room, limit=60.0, clock=None, backoff=FAST) -> tuple[RoomLink, ManifestData]:
    manifest = ManifestData(session={}, tag=None, room={}, recording_id="r", prefix="p/", started_at="t")
    link = RoomLink(room, room_id=1234, display="reel-recorder", pin="1234", limit=limit, manifest=manifest,
                    backoff=backoff, **({"clock": clock} if clock else {}))
    return link, manifest


def test_a_link_reports_nothing_before_the_first_join_then_its_gaps():
    async def main():
        room = FakeRoom([publisher(1, "alice")])
        link, manifest = _link(room)
        assert link.status() is None and link.connected
        link.joined()
        assert link.status()["state"] == RoomState.CONNECTED and link.status()["reconnects"] == 0
        room.drop("the connection closed: 1006")
        link.lost()
        status = link.status()
        assert status["state"] == RoomState.RECONNECTING and SERVER in status["message"] and "1006" in status["message"]
        assert manifest.room_gaps == [{"lostAt": status["since"], "reconnectedAt": None,
                                       "error": "the connection closed: 1006"}]
        joined = None
        while joined is None:
            joined = await link.wait(0.05)
        assert joined["publishers"][0]["id"] == 1 and link.connected and link.reconnects == 1
        assert room.calls == ["connect", "join reel-recorder pin=1234"]
        assert manifest.room_gaps[0]["reconnectedAt"] == link.status()["since"]

    asyncio.run(main())


def test_gap_seconds_add_up_over_gaps():
    async def main():
        clock = Clock()
        room = FakeRoom()
        room.reconnect_error = RecorderError(errors.JANUS_UNREACHABLE, "down")
        room.calls.append("connect")  # the first connect happened
        link, _ = _link(room, clock=clock, backoff=Backoff(0.001, 0.001))
        link.joined()
        room.drop()
        link.lost()
        clock.t += 3
        assert link.gap_seconds() == 3
        room.reconnect_error = None
        while await link.wait(0.01) is None:
            pass
        clock.t += 10
        assert link.gap_seconds() == 3  # connected: the clock runs, the gaps do not grow

    asyncio.run(main())


def test_giving_up_names_the_server_and_the_last_error():
    async def main():
        room = FakeRoom()
        room.calls.append("connect")
        room.reconnect_error = RecorderError(errors.ROOM_NOT_FOUND, "room 1234 does not exist on the server")
        link, _ = _link(room, limit=0.1)
        link.joined()
        room.drop()
        link.lost()
        with pytest.raises(RecorderError) as caught:
            while await link.wait(0.05) is None:
                pass
        return caught.value

    err = asyncio.run(main())
    assert err.reason == errors.JANUS_LOST and SERVER in err.message
    assert "last error: room 1234 does not exist" in err.message


def test_a_link_closed_while_reconnecting_stops_trying():
    async def main():
        room = FakeRoom()
        room.calls.append("connect")
        room.reconnect_error = RecorderError(errors.JANUS_UNREACHABLE, "down")
        link, _ = _link(room)
        link.joined()
        room.drop()
        link.lost()
        await asyncio.sleep(0.1)
        await link.close()
        tries = room.calls.count("connect")
        await asyncio.sleep(0.1)
        assert room.calls.count("connect") == tries

    asyncio.run(main())


def test_a_request_while_reconnecting_is_a_janus_error_not_a_crash():
    """Between a loss and the reconnect's attach (room/reconnect.py resets the room, then connects) the Recorder's
    loop may still end the run: stopping forwarders then must fail as a request does (ingest/forward.py keeps
    them for ``_reclaim``), not with an AttributeError on the missing socket (seen in CI: InternalError)."""
    async def main():
        room = JanusRoom("ws://127.0.0.1:9/", 1234)
        assert not room.connected
        await room._reset()  # what connect() does first, before its socket is open
        assert not room.connected and not room.closed.is_set()
        with pytest.raises(JanusRequestError, match="not connected"):
            await room.stop_rtp_forward(1, 2, secret=None, admin_key=None)
        await room.detach(5)  # harmless, as documented

    asyncio.run(main())
