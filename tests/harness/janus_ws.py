"""A small asyncio client for the Janus WebSocket API (sessions, handles, transactions, events).

Used by the test publishers and by tests that need to watch a room.  Not the recorder's client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import Any

import websockets


class JanusWSError(RuntimeError):
    def __init__(self, message: str, code: int | None = None, reply: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.reply = reply


class Handle:
    """A plugin handle; ``events`` receives every message Janus sends for it that answers no transaction
    (plugin events, ``webrtcup``, ``media``, ``hangup``, ``slowlink``, ...)."""

    def __init__(self, client: JanusWS, handle_id: int) -> None:
        self.client = client
        self.id = handle_id
        self.events: asyncio.Queue[dict] = asyncio.Queue()

    async def message(self, body: dict, jsep: dict | None = None, timeout: float = 30.0) -> dict:
        """Send a plugin message and return Janus's final answer (the ``event`` or ``success``, never
        ``ack``).  Raises :class:`JanusWSError` if Janus or the plugin reports an error."""
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        reply = await self.client.request(msg, handle=self.id, timeout=timeout)
        data = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise JanusWSError(f"plugin error {data['error_code']}: {data.get('error')}",
                               data["error_code"], reply)
        return reply

    async def trickle_done(self) -> None:
        await self.client.request({"janus": "trickle", "candidate": {"completed": True}}, handle=self.id)

    async def next_event(self, predicate=None, timeout: float = 30.0) -> dict:
        """Wait for the next event on this handle that satisfies ``predicate`` (others are dropped)."""
        async def _wait() -> dict:
            while True:
                ev = await self.events.get()
                if predicate is None or predicate(ev):
                    return ev
        return await asyncio.wait_for(_wait(), timeout)

    async def detach(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.request({"janus": "detach"}, handle=self.id, timeout=5)
        self.client.handles.pop(self.id, None)


class JanusWS:
    """One Janus session over one WebSocket."""

    def __init__(self, url: str, token: str | None = None, apisecret: str | None = None) -> None:
        self.url = url
        self.token = token
        self.apisecret = apisecret
        self.session_id: int | None = None
        self.handles: dict[int, Handle] = {}
        self.session_events: asyncio.Queue[dict] = asyncio.Queue()
        self._ws: Any = None
        self._pending: dict[str, tuple[asyncio.Future, bool]] = {}
        self._reader: asyncio.Task | None = None
        self._keepalive: asyncio.Task | None = None
        self.closed = asyncio.Event()

    async def connect(self, timeout: float = 15.0) -> JanusWS:
        self._ws = await asyncio.wait_for(
            websockets.connect(self.url, subprotocols=["janus-protocol"], max_size=None,
                               ping_interval=None), timeout)
        self._reader = asyncio.create_task(self._read())
        reply = await self.request({"janus": "create"}, timeout=timeout)
        self.session_id = reply["data"]["id"]
        self._keepalive = asyncio.create_task(self._keepalive_loop())
        return self

    async def _keepalive_loop(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(20)
                await self.request({"janus": "keepalive"}, timeout=10)

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                msg = json.loads(raw)
                tr = msg.get("transaction")
                kind = msg.get("janus")
                if tr in self._pending:
                    fut, accept_ack = self._pending[tr]
                    if kind == "ack" and not accept_ack:
                        continue
                    self._pending.pop(tr)
                    if not fut.done():
                        fut.set_result(msg)
                    continue
                sender = msg.get("sender")
                if sender in self.handles:
                    self.handles[sender].events.put_nowait(msg)
                else:
                    self.session_events.put_nowait(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for fut, _ in self._pending.values():
                if not fut.done():
                    fut.set_exception(JanusWSError("websocket closed"))
            self._pending.clear()

    async def request(self, msg: dict, handle: int | None = None, timeout: float = 30.0) -> dict:
        tr = secrets.token_hex(8)
        msg = {**msg, "transaction": tr}
        if self.session_id is not None and msg["janus"] != "create":
            msg["session_id"] = self.session_id
        if handle is not None:
            msg["handle_id"] = handle
        if self.token:
            msg["token"] = self.token
        if self.apisecret:
            msg["apisecret"] = self.apisecret
        accept_ack = msg["janus"] in ("keepalive", "trickle")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[tr] = (fut, accept_ack)
        await self._ws.send(json.dumps(msg))
        try:
            reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(tr, None)
        if reply.get("janus") == "error":
            err = reply.get("error", {})
            raise JanusWSError(f"janus error {err.get('code')}: {err.get('reason')}", err.get("code"), reply)
        return reply

    async def attach(self, plugin: str = "janus.plugin.videoroom") -> Handle:
        reply = await self.request({"janus": "attach", "plugin": plugin})
        h = Handle(self, reply["data"]["id"])
        self.handles[h.id] = h
        return h

    async def close(self) -> None:
        if self._keepalive:
            self._keepalive.cancel()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                if self.session_id is not None:
                    await self.request({"janus": "destroy"}, timeout=3)
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 3)
