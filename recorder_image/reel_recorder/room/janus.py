"""A small client for the Janus WebSocket API and its VideoRoom plugin: what the recorder needs.

One WebSocket, one Janus session, one plugin handle joined to the room as a publisher that never publishes
(that is how presence events arrive), plus the synchronous VideoRoom requests for RTP forwarding, and subscriber
handles of the same session for the WebRTC ingest (``subscribe``/``start_subscription``/``detach``: they die with
the session, so a reconnect subscribes afresh).

Two keepalives, for two different things:

- WebSocket pings (``PING_INTERVAL``, ``PING_TIMEOUT``) notice a dead peer. A half-open TCP connection (Janus's
  host or pod gone without a FIN, a NAT or firewall that forgot the flow) shows nothing on a socket we mostly
  read: without pings the recorder would wait for events that never come, and TCP itself gives up only after
  ~15 min of retransmissions. Janus's WebSocket transport (libwebsockets) answers a ping with a pong by itself,
  in its service thread, whatever the Janus core is doing, so 10 s without a pong means the peer or the path is
  gone, not a busy Janus. After a missed pong the socket is closed (``CLOSE_TIMEOUT`` for a close handshake
  that cannot complete) and ``closed`` is set, at most PING_INTERVAL + PING_TIMEOUT + CLOSE_TIMEOUT (25 s)
  after the connection died; the recorder then reconnects as for any lost Janus connection (room/reconnect.py). Shorter
  intervals would buy little (what a dead connection loses first is presence: joins and leaves go unseen) and
  risk a false alarm on a congested link; a ping costs a few bytes. tests/integration/test_janus_client.py
  checks that Janus answers the pings and that a silently dropped connection closes.
- The Janus ``keepalive`` request (every ``KEEPALIVE_SECONDS``) keeps the Janus *session* alive: Janus destroys
  a session that sent nothing for its ``session_timeout`` (60 s by default), pings or not (they never reach the
  Janus core).

A lost connection (``closed`` set, ``error`` says why) is not the end: ``connect()`` may be called again on the
same object, and starts afresh (a new socket, Janus session and handle; the old session's events dropped), so
``join()`` rejoins (room/reconnect.py drives that, with backoff). Requests that fail transiently: a timed-out
``rtp_forward`` is asked once more (ingest/forward.py); a keepalive that times out is ignored (the next one
follows); a connect or join that fails while reconnecting is one failed attempt, the next follows after the
backoff. A request is never resent on the same connection otherwise: Janus may have done it already.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
from typing import Any

import websockets

from ..errors import (
    FORWARD_UNAUTHORIZED,
    JANUS_ERROR,
    JANUS_UNREACHABLE,
    ROOM_NOT_FOUND,
    ROOM_UNAUTHORIZED,
    RecorderError,
)

log = logging.getLogger(__name__)

VIDEOROOM = "janus.plugin.videoroom"
# VideoRoom error codes (janus_videoroom.c) and Janus core codes that mean "your credentials are wrong".
ERR_NO_SUCH_ROOM = 426
ERR_UNAUTHORIZED = 433
ERR_CORE_UNAUTHORIZED = 403
ERR_CORE_UNAUTHORIZED_PLUGIN = 405

PING_INTERVAL = 10.0  # seconds between WebSocket pings (see the module docstring)
PING_TIMEOUT = 10.0  # seconds to wait for the pong before the connection is taken for dead
CLOSE_TIMEOUT = 5.0  # seconds for the close handshake; a dead peer never answers it
KEEPALIVE_SECONDS = 20.0  # Janus session keepalive; well within Janus's default session_timeout (60 s)


class JanusRequestError(Exception):
    def __init__(self, code: int | None, reason: str):
        super().__init__(f"{reason} (Janus error {code})")
        self.code = code
        self.reason = reason


class JanusRoom:
    """Connection to one VideoRoom room. Use ``connect()``, then ``join()``; events arrive on ``events``."""

    def __init__(self, url: str, room: int | str, *, token: str | None = None, request_timeout: float = 10.0,
                 ping_interval: float = PING_INTERVAL, ping_timeout: float = PING_TIMEOUT,
                 close_timeout: float = CLOSE_TIMEOUT):
        self.url = url
        self.room = room
        self.token = token
        self.request_timeout = request_timeout
        self.ping_interval, self.ping_timeout, self.close_timeout = ping_interval, ping_timeout, close_timeout
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.error: str | None = None  # why the last connection ended (set with ``closed``)
        self._ws = None
        self._session: int | None = None
        self._handle: int | None = None
        self._pending: dict[str, tuple[asyncio.Future, bool]] = {}  # tx -> (reply, skip the ack)
        self._tx = (f"reel-{secrets.token_hex(4)}-{n}" for n in itertools.count())
        self._tasks: list[asyncio.Task] = []

    # -- connection ----------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """A session with a VideoRoom handle on a live socket: requests can be made. False from a loss (``closed``)
        until a reconnect has attached again, including the moment between the two where ``closed`` was cleared
        for the new connection but nothing is attached yet (room/reconnect.py runs beside the Recorder's loop)."""
        return self._ws is not None and self._handle is not None and not self.closed.is_set()

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect, create a Janus session and attach a VideoRoom handle; again after a loss: starts afresh."""
        await self._reset()
        try:
            self._ws = await asyncio.wait_for(
                websockets.connect(self.url, subprotocols=["janus-protocol"], max_size=None,
                                   ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
                                   close_timeout=self.close_timeout, open_timeout=timeout),
                timeout)
        except (OSError, TimeoutError, websockets.InvalidURI, websockets.InvalidHandshake) as err:
            raise RecorderError(JANUS_UNREACHABLE, f"cannot reach the Janus server at {self.url}: {err or 'timeout'}"
                                " — check spec.room.server and that Janus's WebSocket transport is listening"
                                ) from err
        self._tasks.append(asyncio.create_task(self._reader(), name="janus-reader"))
        try:
            reply = await self._request({"janus": "create"})
            self._session = reply["data"]["id"]
            reply = await self._request({"janus": "attach", "plugin": VIDEOROOM})
            self._handle = reply["data"]["id"]
        except JanusRequestError as err:
            await self.close()
            if err.code in (ERR_CORE_UNAUTHORIZED, ERR_CORE_UNAUTHORIZED_PLUGIN):
                raise RecorderError(ROOM_UNAUTHORIZED, f"Janus at {self.url} refused the session: {err.reason}"
                                    " — check the token key of the room credentials Secret") from err
            raise RecorderError(JANUS_ERROR, f"Janus at {self.url}: {err}") from err
        self._tasks.append(asyncio.create_task(self._keepalive(), name="janus-keepalive"))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                if self._session is not None:
                    await asyncio.wait_for(self._send({"janus": "destroy"}), 2)
            with contextlib.suppress(Exception):
                await self._ws.close()
        self.closed.set()

    async def _reset(self) -> None:
        """Forget an earlier connection: its tasks, socket, session, pending requests and unread events."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 1)
        self._ws, self._session, self._handle, self.error = None, None, None, None
        self._pending.clear()
        while not self.events.empty():
            self.events.get_nowait()
        self.closed.clear()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            with contextlib.suppress(JanusRequestError, TimeoutError):
                await self._request({"janus": "keepalive"})

    async def _send(self, msg: dict) -> None:
        if self._session is not None and "session_id" not in msg:
            msg["session_id"] = self._session
        if self.token:
            msg["token"] = self.token
        if self._ws is None:  # lost, and a reconnect has not opened its socket yet
            raise JanusRequestError(None, "not connected to Janus")
        await self._ws.send(json.dumps(msg))

    async def _request(self, msg: dict, *, wait_event: bool = False) -> dict:
        """Send and wait for the reply. Asynchronous plugin requests (join) answer with an ack, then an event."""
        tx = next(self._tx)
        msg["transaction"] = tx
        fut = asyncio.get_running_loop().create_future()
        self._pending[tx] = (fut, wait_event)
        try:
            await self._send(msg)
            reply = await asyncio.wait_for(fut, self.request_timeout)
        except TimeoutError as err:
            raise JanusRequestError(None, f"no answer from Janus to {msg.get('janus')}"
                                          f" {msg.get('body', {}).get('request', '')}".strip()) from err
        except websockets.ConnectionClosed as err:
            raise JanusRequestError(None, "the Janus connection closed") from err
        finally:
            self._pending.pop(tx, None)
        if reply.get("janus") == "error":
            err = reply.get("error", {})
            raise JanusRequestError(err.get("code"), err.get("reason", "error"))
        data = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise JanusRequestError(data["error_code"], data.get("error", "error"))
        return reply

    async def _reader(self) -> None:
        try:
            async for raw in self._ws:
                msg = json.loads(raw)
                fut, skip_ack = self._pending.get(msg.get("transaction") or "", (None, False))
                if skip_ack and msg.get("janus") == "ack":
                    continue  # an asynchronous request: its answer is the event that follows
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                elif msg.get("janus") == "event" and msg.get("sender") == self._handle:
                    await self.events.put(msg.get("plugindata", {}).get("data", {}))
                elif msg.get("janus") == "timeout" or (msg.get("janus") == "detached" and
                                                        msg.get("sender") in (None, self._handle)):
                    # (a subscriber handle of the WebRTC ingest being detached is not the end of the session)
                    log.warning("Janus ended the session: %s", msg)
                    self.error = f"Janus ended the session ({msg.get('janus')})"
                    break
        except websockets.ConnectionClosed as err:  # Janus closed it, or a missed pong did (a dead peer)
            log.warning("the connection to Janus at %s closed: %s", self.url, err)
            self.error = f"the connection closed: {err}"
        finally:
            self.error = self.error or "the connection closed"
            self.closed.set()
            for fut, _ in self._pending.values():
                if not fut.done():
                    fut.set_exception(websockets.ConnectionClosed(None, None))

    async def message(self, body: dict, *, wait_event: bool = False) -> dict:
        reply = await self._request({"janus": "message", "handle_id": self._handle, "body": body},
                                    wait_event=wait_event)
        return reply.get("plugindata", {}).get("data", {})

    # -- VideoRoom -----------------------------------------------------------------------------------------
    async def join(self, display: str, pin: str | None = None) -> dict:
        """Join as a publisher that never publishes; returns the 'joined' data (with current publishers)."""
        body: dict[str, Any] = {"request": "join", "ptype": "publisher", "room": self.room, "display": display}
        if pin:
            body["pin"] = pin
        try:
            return await self.message(body, wait_event=True)
        except JanusRequestError as err:
            if err.code == ERR_NO_SUCH_ROOM:
                raise RecorderError(ROOM_NOT_FOUND, f"room {self.room!r} does not exist on {self.url}"
                                    " — check spec.room.id, or create the room first") from err
            if err.code == ERR_UNAUTHORIZED:
                raise RecorderError(ROOM_UNAUTHORIZED, f"room {self.room!r} refused to join: {err.reason}"
                                    " — check the pin key of the room credentials Secret") from err
            raise RecorderError(JANUS_ERROR, f"joining room {self.room!r} failed: {err}") from err

    async def rtp_forward(self, publisher_id, host: str, streams: list[dict], *,
                          secret: str | None, admin_key: str | None) -> list[dict]:
        body: dict[str, Any] = {"request": "rtp_forward", "room": self.room, "publisher_id": publisher_id,
                                "host": host, "host_family": "ipv4", "streams": streams}
        if secret:
            body["secret"] = secret
        if admin_key:
            body["admin_key"] = admin_key
        try:
            data = await self.message(body)
        except JanusRequestError as err:
            if err.code == ERR_UNAUTHORIZED:
                raise RecorderError(FORWARD_UNAUTHORIZED, f"Janus refused to forward media of room {self.room!r}:"
                                    f" {err.reason} — check the secret and adminKey keys of the room credentials"
                                    " Secret (RTP forwarding needs the room secret and, when Janus locks"
                                    " forwarding, its admin key)") from err
            raise
        return data.get("forwarders", [])

    async def subscribe(self, feed, mids: list[str], *, pin: str | None = None) -> tuple[int, dict, dict[str, str]]:
        """A subscriber handle of our own for ``mids`` of publisher ``feed`` (the WebRTC ingest, ingest/webrtc.py):
        attached on this session, joined as ptype subscriber; returns (handle id, Janus's JSEP offer, the offer's
        mids -> the publisher's: Janus numbers a subscription's streams afresh). Detach it with ``detach`` (also
        when anything after this fails). Raises JanusRequestError."""
        reply = await self._request({"janus": "attach", "plugin": VIDEOROOM})
        handle = reply["data"]["id"]
        body: dict[str, Any] = {"request": "join", "ptype": "subscriber", "room": self.room,
                                "streams": [{"feed": feed, "mid": mid} for mid in mids]}
        if pin:
            body["pin"] = pin
        try:
            reply = await self._request({"janus": "message", "handle_id": handle, "body": body}, wait_event=True)
        except BaseException:
            await self.detach(handle)
            raise
        jsep = reply.get("jsep")
        if not jsep or jsep.get("type") != "offer":
            await self.detach(handle)
            raise JanusRequestError(None, f"Janus's answer to the subscription has no offer: {reply}")
        streams = reply.get("plugindata", {}).get("data", {}).get("streams") or []
        feed_mids = {str(st["mid"]): str(st["feed_mid"]) for st in streams if "mid" in st and "feed_mid" in st}
        return handle, jsep, feed_mids

    async def start_subscription(self, handle: int, answer_sdp: str) -> None:
        """Our SDP answer to a subscription's offer (``subscribe``): Janus starts sending (ICE, DTLS, SRTP)."""
        await self._request({"janus": "message", "handle_id": handle, "body": {"request": "start"},
                             "jsep": {"type": "answer", "sdp": answer_sdp}}, wait_event=True)

    async def detach(self, handle: int) -> None:
        """Leave and detach a subscriber handle; harmless when it (or the connection) is already gone."""
        if not self.connected:
            return
        with contextlib.suppress(JanusRequestError, TimeoutError, websockets.ConnectionClosed):
            await self._request({"janus": "detach", "handle_id": handle})

    async def stop_rtp_forward(self, publisher_id, stream_id: int, *, secret: str | None,
                               admin_key: str | None) -> None:
        body: dict[str, Any] = {"request": "stop_rtp_forward", "room": self.room, "publisher_id": publisher_id,
                                "stream_id": stream_id}
        if secret:
            body["secret"] = secret
        if admin_key:
            body["admin_key"] = admin_key
        await self.message(body)
