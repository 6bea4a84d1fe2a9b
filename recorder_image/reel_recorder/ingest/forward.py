"""Forward ingest: Janus forwards each recorded publisher's RTP to us (VideoRoom ``rtp_forward``).

Needs the room secret (and the admin key when Janus locks forwarding). Janus sends each stream to a port picked
at random in the range (rtp.PortAllocator), owned by the RTP gate (relay.py, gate.py): one thread for every
stream, taking packets from Janus's address only (``janus_addr``: the room server's, or REEL_JANUS_MEDIA_ADDRESS
when Janus sends media from another address) and with the SSRC we asked Janus to use (a random one per stream),
depacketizing whole frames in Python and handing them to the feed threads (rtp.py ``FeedPool``, ``FrameFeed``),
which align them and call the participant's writer. No FFmpeg demuxer: FFmpeg only muxes (and encodes AAC).
The WebRTC ingest (webrtc.py), for rooms where the recorder may not forward, offers the same methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import av

from reel_api.vocabulary import SkipReason

from ..clock import RecordingClock
from ..errors import RecorderError
from ..room.janus import JanusRequestError, JanusRoom
from ..room.presence import PublishedStream, Publisher
from .cut import cut_streams
from .gate import MediaCounts, StreamGate
from .relay import GatedStream, RtpGate
from .rtp import RTP_CODECS, FeedPool, FrameFeed, KeyframeRequester, PortAllocator

log = logging.getLogger(__name__)

# Payload types we ask Janus to use on the forward leg, so the gate never depends on the publisher's offer.
# Which codecs each kind of recording can take is outputs.py's business (plan_streams).
PAYLOAD_TYPES = {"h264": 96, "vp8": 100, "vp9": 101, "av1": 45, "opus": 111}
ERR_NO_SUCH_FEED = 428  # VideoRoom: no such publisher (they left while we asked)
FORWARD_ATTEMPTS = 2  # an rtp_forward that timed out is asked once more


class ForwardFailed(Exception):
    """Janus did not forward a publisher's media. ``gone``: they left meanwhile, or the connection to Janus is
    down (nothing to skip: their Down, or the reconnect, follows); else Janus refused them (``message``), or
    (the WebRTC ingest) the connection did not come up: ``reason``, the skipped streams' reason."""

    def __init__(self, message: str, *, gone: bool, reason: str = SkipReason.FORWARD_FAILED):
        super().__init__(message)
        self.message, self.gone, self.reason = message, gone, reason


class MediaSink:
    """What the ingest feeds: one per participant (the HLS writer implements it)."""

    def video(self, packet: av.Packet, t: float) -> None: ...
    def audio(self, packet: av.Packet, t: float) -> None: ...

    request_keyframe: Callable[[], None]


@dataclass
class _Forwarded:
    mid: str
    kind: str
    port: int  # ours, where Janus sends (the gate's)
    feed: FrameFeed | None
    ssrc: int = 0  # the SSRC we ask Janus to send with
    gated: GatedStream | None = None
    stream_id: int | None = None
    requester: KeyframeRequester | None = None
    _first_seen: threading.Event = field(default_factory=threading.Event)

    def set_requester(self, requester: KeyframeRequester) -> None:
        self.requester = requester
        requester.request()
        if self._first_seen.is_set():
            requester.request(force=True)

    def keyframe_needed(self, new: bool = True) -> None:
        """The gate waits for a keyframe (gate thread): the stream's start (the first packets are rarely one),
        or a frame lost. Asked at once at the start and at each ``new`` loss (the keyframe asked before came),
        past the rate limit; else at most every 0.3 s."""
        first = not self._first_seen.is_set()
        self._first_seen.set()
        if self.requester is not None:
            self.requester.request(force=first or new)


class ForwardIngest:
    def __init__(self, room: JanusRoom, *, local_addr: str, janus_addr: str, clock: RecordingClock,
                 secret: str | None, admin_key: str | None, ports: PortAllocator | None = None):
        self.room = room
        self.local_addr = local_addr
        self.janus_addr = janus_addr
        self.clock = clock
        self.secret = secret
        self.admin_key = admin_key
        self.ports = ports or PortAllocator(local_addr)
        self.gate = RtpGate(local_addr, janus_addr, now=clock.now)
        self.feeds = FeedPool()
        self._streams: dict[object, dict[str, _Forwarded]] = {}
        # forwarders left on Janus when the connection was lost (they belong to the publisher, not to our session):
        # stopped once the room is back (``_reclaim``), their ports kept until then (never two forwarders on one)
        self._orphans: list[tuple[object, _Forwarded]] = []

    async def update(self, pub: Publisher, streams: list[PublishedStream], sink: MediaSink,
                     counts: MediaCounts | None = None) -> None:
        """Forward exactly ``streams`` of ``pub`` into ``sink``; starts new ones, stops dropped ones. Raises
        ForwardFailed when Janus does not forward them (a timeout is asked again once), RecorderError when it
        refuses the credentials (that cannot get better). ``counts``: the participant's, where each new stream's
        gate counts (frames dropped, packets rejected)."""
        await self._reclaim()
        current = self._streams.setdefault(pub.id, {})
        wanted = {s.mid: s for s in streams}
        await self._stop_all([(pub.id, current.pop(mid)) for mid in [m for m in current if m not in wanted]])
        new = [s for mid, s in wanted.items() if mid not in current]
        if not new:
            return
        started: list[_Forwarded] = []
        for s in new:
            codec = s.codec.lower()
            fwd = _Forwarded(mid=s.mid, kind=s.kind, port=0, feed=None, ssrc=secrets.randbits(32) or 1)
            # The gate asks for a keyframe as soon as video flows (the first packets are rarely one), not only
            # once the writer sees them after the clock alignment window; and again after a frame is lost.
            gate = StreamGate(codec, RTP_CODECS[codec][1], payload_type=PAYLOAD_TYPES[codec], ssrc=fwd.ssrc,
                              request_keyframe=fwd.keyframe_needed if s.kind == "video" else None)
            target = sink.video if s.kind == "video" else sink.audio
            fwd.feed = FrameFeed(s.kind, RTP_CODECS[codec][1], target, name=f"{pub.id}-{s.kind}", pool=self.feeds,
                                 key=pub.id)
            fwd.feed.start()
            fwd.port, fwd.gated = self._open_gate(gate, fwd.feed)
            if counts is not None:
                counts.add(gate)
            current[s.mid] = fwd
            started.append(fwd)
        request = [{"mid": f.mid, "port": f.port, "pt": PAYLOAD_TYPES[wanted[f.mid].codec.lower()], "ssrc": f.ssrc,
                    **({"rtcp_port": f.port + 1} if f.kind == "video" else {})} for f in started]
        try:
            forwarders = await self._forward(pub, request)
        except BaseException:
            await self._stop_all([(pub.id, current.pop(f.mid)) for f in started], janus=False)
            raise
        # Janus's answer names each forwarder by our port (it does not repeat the mid)
        by_port = {f.get("port"): f for f in forwarders}
        for f in started:
            info = by_port.get(f.port, {})
            f.stream_id = info.get("stream_id")
            log.info("forwarding %s %s of %r (%s) to %s:%d (Janus RTCP port %s)", f.kind, f.mid, pub.display,
                     pub.id, self.local_addr, f.port, info.get("local_rtcp_port"))
            if f.kind == "video" and info.get("local_rtcp_port"):
                requester = KeyframeRequester(self.janus_addr, int(info["local_rtcp_port"]), clock=self.clock)
                log.info("keyframe requests for %r go to %s:%s", pub.display, *requester.target)
                sink.request_keyframe = requester.request
                f.set_requester(requester)  # the multistream forward sends no PLI itself: start with a keyframe

    def _open_gate(self, gate: StreamGate, feed: FrameFeed) -> tuple[int, GatedStream]:
        """A public port pair for Janus, bound by the gate at once, whose frames go to ``feed``."""
        for _ in range(8):
            port = self.ports.allocate()
            try:
                return port, self.gate.open(port, gate, feed.put)
            except OSError:  # taken meanwhile (another process): try the next pair
                self.ports.release(port)
        feed.stop()
        raise RuntimeError(f"no free UDP port pair for the RTP gate on {self.local_addr}")

    async def _forward(self, pub: Publisher, request: list[dict]) -> list[dict]:
        for attempt in range(1, FORWARD_ATTEMPTS + 1):
            try:
                return await self.room.rtp_forward(pub.id, self.local_addr, request, secret=self.secret,
                                                   admin_key=self.admin_key)
            except JanusRequestError as err:
                if not self.room.connected or err.code == ERR_NO_SUCH_FEED:
                    raise ForwardFailed(f"{pub.display!r} left, or Janus is gone: {err}", gone=True) from err
                if err.code is not None or attempt == FORWARD_ATTEMPTS:
                    raise ForwardFailed(f"Janus did not forward the media of {pub.display!r} ({pub.id}): {err}",
                                        gone=False) from err
                log.warning("rtp_forward for %r timed out; asking again", pub.display)
        raise AssertionError("unreachable")

    def packets_of(self, pub_id) -> dict[str, int]:
        """Packets received so far from each forwarded stream of ``pub_id`` (kind -> count): the watchdog's."""
        return {f.kind: f.feed.packets for f in self._streams.get(pub_id, {}).values() if f.feed is not None}

    async def remove(self, pub_id) -> None:
        """Stop everything forwarded for ``pub_id`` (it left, or the recording ends)."""
        await self._stop_all([(pub_id, f) for f in self._streams.pop(pub_id, {}).values()])

    async def close(self) -> None:
        """End every stream of every publisher at one instant (ingest/cut.py: the streams running late deliver
        what they had from before it), then stop them (the ingest can be used again afterwards)."""
        await cut_streams((f.feed.aligner for fs in self._streams.values() for f in fs.values() if f.feed),
                          self.clock)
        streams, self._streams = self._streams, {}
        await self._stop_all([(pub_id, f) for pub_id, fs in streams.items() for f in fs.values()])
        await asyncio.to_thread(self.feeds.close)
        await self._reclaim()

    async def _reclaim(self) -> None:
        """After a reconnect (room/reconnect.py): stop the forwarders the lost connection left behind, free their
        ports. Harmless after a Janus restart (they died with it: Janus answers "no such feed")."""
        if not self._orphans or not self.room.connected:
            return
        orphans, self._orphans = self._orphans, []
        await asyncio.gather(*(self._stop_forwarder(pub_id, f) for pub_id, f in orphans))
        for _, fwd in orphans:
            self.ports.release(fwd.port)

    def take_failed(self) -> list[tuple[object, ForwardFailed]]:
        """Participants whose media failed after ``update`` (the WebRTC ingest's connections): never here."""
        return []

    def failures(self) -> list[BaseException]:
        return [f.feed.error for fs in self._streams.values() for f in fs.values() if f.feed and f.feed.error]

    def packets(self) -> int:
        return sum(f.feed.packets for fs in self._streams.values() for f in fs.values() if f.feed)

    async def _stop_all(self, items: list[tuple[object, _Forwarded]], *, janus: bool = True) -> None:
        """End several streams at the same instant: all forwarders first, then all gates, then all feeds.

        The gate first: what Janus sent before, still queued on the socket, passes (or not), a frame still
        incomplete is dropped, nothing more is put; then each feed delivers what it holds and ends. A
        participant's streams end together (no stream's feed waits for another's).
        """
        lost = janus and not self.room.connected  # their forwarders outlive the connection: ``_reclaim``
        if janus and not lost:
            await asyncio.gather(*(self._stop_forwarder(pub_id, f) for pub_id, f in items if f.stream_id is not None))
        await asyncio.gather(*(asyncio.to_thread(self.gate.close, fwd.gated) for _, fwd in items if fwd.gated))
        await asyncio.gather(*(asyncio.to_thread(fwd.feed.stop) for _, fwd in items if fwd.feed))
        for pub_id, fwd in items:
            if fwd.requester:
                fwd.requester.close()
            if lost and fwd.stream_id is not None:
                self._orphans.append((pub_id, fwd))
            else:
                self.ports.release(fwd.port)

    async def _stop_forwarder(self, pub_id, fwd: _Forwarded) -> None:
        with contextlib.suppress(JanusRequestError, RecorderError, TimeoutError):
            # Fails harmlessly when the publisher already left: Janus removed its forwarders then.
            await self.room.stop_rtp_forward(pub_id, fwd.stream_id, secret=self.secret, admin_key=self.admin_key)
