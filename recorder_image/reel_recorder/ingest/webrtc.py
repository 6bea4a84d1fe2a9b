"""WebRTC ingest: the recorder subscribes to each recorded publisher like any participant (aiortc).

For rooms whose secret (or Janus's admin key) the recorder is not given: no ``rtp_forward``, a subscription
instead. Per recorded publisher: a subscriber handle on the recorder's Janus session (room/janus.py
``subscribe``), Janus's offer for the wanted mids answered by an ``RTCPeerConnection`` with only the ICE servers
the session names (``RTCConfiguration(iceServers=[])`` otherwise), ``start`` with our answer. The same interface
as ingest/forward.py (``update``, ``remove``, ``close``, ``failures``, ``packets_of``, ``packets``,
``take_failed``), the same packets into the same sinks, so output, stop reasons, pausing and presence are the
forward path's.

Media: aiortc does SRTP, reordering, NACK (video) and PLI on loss; frames are passed through undecoded
(ingest/passthrough.py: H.264 Annex-B access units, VP8 frames, Opus packets). Threads: aiortc runs on the event
loop (ICE, DTLS, SRTP, jitter buffer) and one ``<kind>-decoder`` thread per stream (the stand-in decoder: a copy
of the frame); the event loop moves each frame from the track to the stream's pump thread (``webrtc-<pub>-<kind>``,
a queue), which places it on the recording clock and calls the sink (the writer: muxing, Opus → AAC for TS): the
heavy work never runs on the event loop, as on the forward path's feed threads (ingest/rtp.py).

Timing: aiortc hands a frame over when the next one has begun (audio: four packets later, its jitter buffer's
prefetch), so the time a frame leaves aiortc is late by a varying amount. Each stream's receiver is therefore
watched as packets come in (the event loop, its ``_handle_rtp_packet``): the arrival of each RTP timestamp's first
packet is kept, and the stream is placed on the recording clock from those arrivals (clock.py ``StreamAligner``),
as the forward path does with the RTP gate's arrival times. No RTCP sender reports are used (aiortc does not
expose them).

Failures: ICE or DTLS that do not reach ``connected`` within ``connect_timeout`` (REEL_WEBRTC_CONNECT_SECONDS,
10 s), or that fail before, end that participant's subscription; ``take_failed`` hands the failure to
``Outputs.watch`` (about once a second), which lists their streams as skipped with reason ``ConnectFailed``; the
others are recorded all the same. Janus refusing the subscription raises ``ForwardFailed`` from ``update``, as a
refused forward does.

Whole frames only (frames.py): an H.264 frame aiortc hands over without all its packets, or after one that was
dropped (its jitter buffer, overflowing or reset, starts again anywhere), is not recorded, nor anything until a
whole keyframe, which is asked for.

Counts (``MediaCounts``): ``packetsLost``: sequence numbers of the media SSRC never received, less the
retransmissions received (what NACK did not recover); ``droppedFrames`` and ``incompleteFrames`` (H.264, frames.py);
``packetsRejected`` stays 0 (SRTP authenticates every packet: aiortc drops what fails, without telling).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidAccessError, OperationError
from aiortc.mediastreams import MediaStreamError

from reel_api.vocabulary import SkipReason

from ..clock import RecordingClock
from ..room.janus import JanusRequestError, JanusRoom
from ..room.presence import PublishedStream, Publisher
from . import passthrough
from .cut import cut_streams
from .forward import ERR_NO_SUCH_FEED, ForwardFailed
from .pump import FramePump

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0  # seconds for ICE + DTLS to connect (REEL_WEBRTC_CONNECT_SECONDS)
TRACK_END_WAIT = 1.0  # seconds a closed connection's tracks get to end (their last frames reach the pumps)
PLI_INTERVAL = 0.3  # at most one keyframe request per stream this often (as the forward path's KeyframeRequester)


@dataclass
class _Subscription:
    pub: Publisher
    mids: tuple[str, ...]
    handle: int | None
    pc: RTCPeerConnection
    pumps: dict[str, FramePump] = field(default_factory=dict)  # mid -> pump
    tasks: list[asyncio.Task] = field(default_factory=list)


class WebRtcIngest:
    def __init__(self, room: JanusRoom, *, clock: RecordingClock, pin: str | None = None,
                 ice_servers: list[RTCIceServer] | None = None, connect_timeout: float = CONNECT_TIMEOUT):
        passthrough.install()
        self.room, self.clock, self.pin = room, clock, pin
        self.ice_servers = list(ice_servers or [])
        self.connect_timeout = connect_timeout
        self._subs: dict[object, _Subscription] = {}
        self._failed: list[tuple[object, ForwardFailed]] = []

    async def update(self, pub: Publisher, streams: list[PublishedStream], sink, counts=None) -> None:
        """Receive exactly ``streams`` of ``pub`` into ``sink`` (a new subscription when they change). Raises
        ForwardFailed when Janus refuses the subscription; ICE/DTLS failing later goes to ``take_failed``."""
        unknown = [s for s in streams if (s.codec or "").lower() not in passthrough.PASSED]
        if unknown:  # e.g. VP9/AV1, which fMP4 could carry: aiortc 1.16 cannot receive them
            log.warning("%r (%s): %s not received over WebRTC (aiortc takes H.264, VP8 and Opus)", pub.display,
                        pub.id, ", ".join(f"{s.kind} {s.codec}" for s in unknown))
            streams = [s for s in streams if s not in unknown]
            if not streams:
                raise ForwardFailed(f"ingest webrtc cannot receive {', '.join(s.codec for s in unknown)} of "
                                    f"{pub.display!r} ({pub.id}) (aiortc takes H.264, VP8 and Opus): use ingest "
                                    "forward", gone=False, reason=SkipReason.CODEC_UNSUPPORTED)
        mids = tuple(sorted(s.mid for s in streams))
        current = self._subs.get(pub.id)
        if current is not None and current.mids == mids:
            return
        if current is not None:
            await self.remove(pub.id)
        if not mids:
            return
        by_mid = {s.mid: s for s in streams}
        log.debug("subscribing to %r (%s)", pub.display, pub.id)
        try:
            handle, offer, feed_mids = await self.room.subscribe(pub.id, list(mids), pin=self.pin)
        except JanusRequestError as err:
            gone = not self.room.connected or err.code == ERR_NO_SUCH_FEED
            raise ForwardFailed(f"Janus did not let us subscribe to {pub.display!r} ({pub.id}): {err}",
                                gone=gone) from err
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers))
        sub = _Subscription(pub, mids, handle, pc)
        self._subs[pub.id] = sub
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            for tr in pc.getTransceivers():
                stream = by_mid.get(feed_mids.get(tr.mid, tr.mid))  # the offer's mid -> the publisher's
                if stream is None:
                    continue
                codec = (stream.codec or "").lower()
                target = sink.video if stream.kind == "video" else sink.audio
                pump = FramePump(tr.receiver, codec, target, self.clock, name=f"{pub.id}-{stream.kind}",
                                 loop=asyncio.get_running_loop(), pli_interval=PLI_INTERVAL)
                sub.pumps[tr.mid] = pump
                if counts is not None:
                    counts.add(pump.counts)
                if stream.kind == "video":
                    sink.request_keyframe = pump.request_keyframe
                pump.start()
                sub.tasks.append(asyncio.create_task(self._consume(tr.receiver.track, pump),
                                                     name=f"webrtc-track-{pub.id}-{stream.kind}"))
            await pc.setLocalDescription(await pc.createAnswer())
            await self.room.start_subscription(handle, pc.localDescription.sdp)
        except JanusRequestError as err:
            await self.remove(pub.id)
            raise ForwardFailed(f"Janus did not start sending {pub.display!r} ({pub.id}) to us: {err}",
                                gone=not self.room.connected) from err
        except (OperationError, InvalidAccessError) as err:  # aiortc cannot take Janus's offer: that one only
            await self.remove(pub.id)
            raise ForwardFailed(f"ingest webrtc cannot take Janus's offer for {pub.display!r} ({pub.id}): {err} "
                                "(aiortc takes H.264 with packetization-mode 1, VP8 and Opus): use ingest forward",
                                gone=False, reason=SkipReason.CODEC_UNSUPPORTED) from err
        except BaseException:
            await self.remove(pub.id)
            raise
        log.info("subscribed to %s of %r (%s)", ", ".join(f"{by_mid[m].kind} {m}" for m in mids), pub.display,
                 pub.id)
        sub.tasks.append(asyncio.create_task(self._watch_connection(sub), name=f"webrtc-connect-{pub.id}"))

    @staticmethod
    async def _consume(track, pump: FramePump) -> None:
        """The event loop's part: each frame from the track to the stream's pump thread."""
        try:
            while True:
                pump.put(await track.recv())
        except MediaStreamError:
            pass
        finally:
            pump.put(None)

    async def _watch_connection(self, sub: _Subscription) -> None:
        """ICE + DTLS must be connected within ``connect_timeout``; else (or failed before) the participant is
        handed to ``take_failed`` with what was reached."""
        pc, deadline = sub.pc, time.monotonic() + self.connect_timeout
        while pc.connectionState not in ("connected", "failed", "closed") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if pc.connectionState == "connected":
            log.info("WebRTC connected for %r (%s)", sub.pub.display, sub.pub.id)
            return
        if self._subs.get(sub.pub.id) is not sub:
            return  # removed meanwhile
        what = "failed" if pc.connectionState == "failed" else f"did not connect within {self.connect_timeout:g} s"
        message = (f"WebRTC from Janus to the recorder {what} for {sub.pub.display!r} ({sub.pub.id}): ICE "
                   f"{pc.iceConnectionState}, connection {pc.connectionState} (ICE servers: "
                   f"{', '.join(u for s in self.ice_servers for u in _urls(s)) or 'none'}): check that the "
                   "recorder can reach Janus's media address over UDP (Janus's nat settings, a NetworkPolicy), or "
                   "use ingest: forward")
        log.warning("%s", message)
        self._failed.append((sub.pub.id, ForwardFailed(message, gone=False, reason=SkipReason.CONNECT_FAILED)))

    def take_failed(self) -> list[tuple[object, ForwardFailed]]:
        """Participants whose connection failed since the last call (their streams are to be skipped)."""
        failed, self._failed = self._failed, []
        return failed

    def packets_of(self, pub_id) -> dict[str, int]:
        """Frames received so far from each stream of ``pub_id`` (kind -> count): the watchdog's."""
        sub = self._subs.get(pub_id)
        return {p.kind: p.packets for p in sub.pumps.values()} if sub else {}

    async def remove(self, pub_id) -> None:
        """End ``pub_id``'s subscription: the peer connection closed, the pumps drained, the handle detached."""
        sub = self._subs.pop(pub_id, None)
        if sub is not None:
            await self._end([sub])

    async def close(self) -> None:
        """End every subscription at one instant (ingest/cut.py: the streams running late deliver what they had
        from before it), then close them (the ingest can be used again afterwards)."""
        await cut_streams((p.aligner for s in self._subs.values() for p in s.pumps.values()), self.clock)
        subs, self._subs = list(self._subs.values()), {}
        self._failed = []
        await self._end(subs)

    async def _end(self, subs: list[_Subscription]) -> None:
        """All at the same instant: the peer connections closed (their receivers stop, aiortc's decoder threads
        end, the tracks end), then every pump drains what it holds, then the handles are detached."""
        await asyncio.gather(*(s.pc.close() for s in subs), return_exceptions=True)
        tasks = [t for s in subs for t in s.tasks]
        if tasks:  # a track whose receiver never started (no connection) never ends by itself: cancelled
            _, pending = await asyncio.wait(tasks, timeout=TRACK_END_WAIT)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        pumps = [p for s in subs for p in s.pumps.values()]
        for p in pumps:
            p.put(None)
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in pumps))
        await asyncio.gather(*(self.room.detach(s.handle) for s in subs if s.handle is not None))

    def failures(self) -> list[BaseException]:
        return [p.error for s in self._subs.values() for p in s.pumps.values() if p.error]

    def packets(self) -> int:
        return sum(p.packets for s in self._subs.values() for p in s.pumps.values())


def _urls(server: RTCIceServer) -> list[str]:
    return [server.urls] if isinstance(server.urls, str) else list(server.urls)


def ice_servers(urls: list[str], username: str | None, credential: str | None) -> list[RTCIceServer]:
    """The session's ICE servers (spec.room.iceServers) with the TURN username/credential of the room's
    credentials: aiortc's RTCIceServer list (empty: host candidates only)."""
    return [RTCIceServer(urls=url, username=username if url.startswith("turn") else None,
                         credential=credential if url.startswith("turn") else None) for url in urls]

