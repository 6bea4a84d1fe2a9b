"""Per-participant MP4 (``spec.recording.outputs: [hls, mp4]``): the packets of the HLS segments, in one file.

The HLS writer hands every packet it writes to a segment to ``add`` as well (H.264 as received, the same AAC),
so the MP4 costs a second muxer, not a second encoder. FFmpeg's MP4 muxer (through PyAV) builds the avcC box
from the first keyframe's parameter sets; only the picture size must be known when the file starts, so the
first keyframe is decoded once for it. The tracks are fixed when the file starts: at the first keyframe
(audio that came earlier is held), at the first audio for a participant without video, or with audio only
when no keyframe came within ``AUDIO_HOLD`` seconds (a camera that stays off). Timestamps stay on the
recording's timeline, shifted to start at 0: a pause or a rejoin is a gap in the file. The MP4 is written
while recording and handed over when the participant's recording ends (``close``); a failure here is
logged and leaves the HLS output alone.

A resumed recording (resume.py) has no whole MP4 in any one recorder: the earlier runs' spools are gone. The
recorder that ends it builds each participant's MP4 from the stored segments instead (``mp4_from_segments``:
the same packets demuxed from each TS segment in playlist order, one segment in memory at a time), so the file
covers every run, with the interruptions as gaps. A recorder that is interrupted itself hands over no MP4.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.bitstream

from .video_track import add_video_track

log = logging.getLogger(__name__)

VIDEO_TB = Fraction(1, 90000)
TS_SYNC = b"\x47"  # an MPEG-TS segment's first byte; an fMP4 one starts with a box (its init's ftyp)
AUDIO_HOLD = 10.0  # seconds of audio held for the first keyframe; then the MP4 starts with audio only
# Fragmented MP4, a fragment at a keyframe at least every 2 s: the muxer's sample index is flushed with each
# fragment (a plain MP4 keeps it all in memory: ~15 MiB per participant-hour), and a file cut short by a
# crash still plays up to its last fragment.
MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "min_frag_duration": "2000000"}


@dataclass(frozen=True)
class Mp4Info:
    path: Path
    size: int
    sha256: str
    duration: float


class ParticipantMp4:
    """Not thread-safe: the HLS writer calls it with its own lock held."""

    def __init__(self, path: Path, *, audio_template, expect_video: bool, expect_audio: bool,
                 video_codec: str = "h264"):
        """``video_codec``: h264 (Annex B), or vp9/av1 (fMP4 recordings: outputs.plan_streams)."""
        self.path = path
        self.video_codec = video_codec
        self.audio_template = audio_template
        self.expect_video = expect_video
        self.expect_audio = expect_audio
        self.error: str | None = None
        self._container = None
        self._streams: dict[str, object] = {}
        self._base: dict[str, int] = {}
        self._last_dts: dict[str, int] = {}
        self._held: list[tuple[bytes, int, int, Fraction]] = []  # audio before the file starts
        self._first_t: float | None = None
        self._last_t = 0.0

    def add(self, kind: str, packet: av.Packet, time_base: Fraction) -> None:
        """A packet as written to a segment (its pts in ``time_base``, on the recording's timeline)."""
        if self.error is not None:
            return
        try:
            self._add(kind, bytes(packet), packet.pts, packet.duration or 0, time_base, bool(packet.is_keyframe),
                      float(packet.pts * time_base))
        except Exception as err:  # the MP4 is extra: never let it break the HLS recording
            self._give_up(f"{type(err).__name__}: {err}")

    def close(self) -> Mp4Info | None:
        """Finish the file; None when nothing was written (or it failed: see ``error``)."""
        if self._container is None and self._held and self.error is None:
            try:  # audio, and never a keyframe: an MP4 with the audio
                self._start(None, float(self._held[0][1] * self._held[0][3]))
            except Exception as err:
                self._give_up(f"{type(err).__name__}: {err}")
        container, self._container = self._container, None
        if container is None:
            return None
        try:
            container.close()
        except Exception as err:
            self._give_up(f"{type(err).__name__}: {err}")
            return None
        if self.error is not None:
            return None
        sha = hashlib.sha256()
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
        return Mp4Info(self.path, self.path.stat().st_size, sha.hexdigest(),
                       max(0.0, self._last_t - (self._first_t or 0.0)))

    # -- internals -----------------------------------------------------------------------------------------
    def _add(self, kind: str, data: bytes, pts: int, duration: int, time_base: Fraction, key: bool,
             t: float) -> None:
        if self._container is None:
            if kind == "audio" and self.expect_video:
                self._held.append((data, pts, duration, time_base))
                if float((pts - self._held[0][1]) * time_base) < AUDIO_HOLD:
                    return
                log.info("%s: no keyframe within %.0f s: the MP4 has audio only", self.path.name, AUDIO_HOLD)
                self._start(None, t)  # the camera stays off: an MP4 with the audio
                return
            if kind == "video" and not key:
                return
            self._start(data if kind == "video" else None, t)
        self._write(kind, data, pts, duration, time_base, key=key)
        self._last_t = max(self._last_t, t)

    def _start(self, keyframe: bytes | None, t: float) -> None:
        """Start the file (video track only with a keyframe to size it) and write the audio held so far."""
        times = [t] + [float(pts * tb) for _, pts, _, tb in self._held[:1]]
        self._first_t = min(times)
        container = av.open(str(self.path), "w", format="mp4", options=MP4_OPTIONS)
        if self.expect_video and keyframe is not None:
            width, height = picture_size(keyframe, self.video_codec)
            self._streams["video"] = add_video_track(container, self.video_codec, width, height)
        if self.expect_audio:
            self._streams["audio"] = container.add_stream_from_template(self.audio_template)
        self._container = container
        log.info("%s: MP4 started", self.path.name)
        held, self._held = self._held, []
        for data, pts, duration, time_base in held:
            self._write("audio", data, pts, duration, time_base, key=False)
            self._last_t = max(self._last_t, float(pts * time_base))

    def _write(self, kind: str, data: bytes, pts: int, duration: int, time_base: Fraction, *, key: bool) -> None:
        stream = self._streams.get(kind)
        if stream is None:
            return
        base = self._base.setdefault(kind, round(self._first_t / time_base))
        ts = pts - base
        if ts < 0 or (kind in self._last_dts and ts <= self._last_dts[kind]):
            return  # the MP4 muxer needs strictly increasing timestamps per track
        self._last_dts[kind] = ts
        out = av.Packet(data)
        out.pts = out.dts = ts
        out.time_base = time_base
        if duration:
            out.duration = duration
        if key:
            out.is_keyframe = True
        out.stream = stream
        self._container.mux(out)

    def _give_up(self, message: str) -> None:
        self.error = message
        log.warning("%s: MP4 output stopped (the HLS output goes on): %s", self.path.name, message)
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(Exception):  # already failing; the message above says why
                container.close()


VIDEO_CODECS = {"h264": "h264", "vp9": "vp9", "libdav1d": "av1", "av1": "av1"}  # FFmpeg's decoder → codec


def demuxable_segments(record, read: Callable[[str], bytes]) -> Iterator[bytes]:
    """Each listed segment of a folder's record (manifest.ParticipantRecord) as bytes FFmpeg can demux on their
    own, in playlist order: a TS segment as stored, an fMP4 segment after its init segment (``read``: a key's
    bytes; each init is read once)."""
    inits = {i["name"]: i["key"] for i in list(record.inits)}
    init_name, init = None, b""
    for s in list(record.segments):
        data = read(s.key)
        if s.init:
            if s.init != init_name:
                init_name, init = s.init, read(inits.get(s.init) or f"{s.key.rsplit('/', 1)[0]}/{s.init}")
            data = init + data
        yield data


def mp4_from_segments(path: Path, segments: Iterable[bytes]) -> tuple[Mp4Info | None, str | None]:
    """One MP4 from a participant's segments (``demuxable_segments``: TS, or fMP4 after its init, in playlist
    order): (info, None), or (None, error) when it failed, or (None, None) when the segments held no media.
    Timestamps are the segments' (the recording's timeline), so a gap between runs stays a gap. The audio keeps
    its codec (AAC, or Opus from fMP4 segments), with the parameters the writer gave it."""
    from .audio import OpusToAac  # the same AAC parameters as the segments' audio
    from .opus import OpusCopy  # ... and the same OpusHead

    audio_path = None
    mp4: ParticipantMp4 | None = None
    try:
        for data in segments:
            with av.open(io.BytesIO(data), "r", format="mpegts" if data[:1] == TS_SYNC else "mp4") as ts:
                if mp4 is None:
                    opus = any(s.codec_context.name == "opus" for s in ts.streams.audio)
                    audio_path = OpusCopy() if opus else OpusToAac()
                    video = VIDEO_CODECS.get(next((s.codec_context.name for s in ts.streams.video), ""), "h264")
                    mp4 = ParticipantMp4(path, audio_template=audio_path.template, expect_video=True,
                                         expect_audio=any(s.type == "audio" for s in ts.streams), video_codec=video)
                # The MP4 writer takes what the live writer gives it: H.264 in Annex B, raw audio frames. AAC in TS
                # carries ADTS headers (FFmpeg's aac_adtstoasc takes them off); H.264 in fMP4 is length-prefixed
                # with the parameter sets in the init segment (h264_mp4toannexb puts them back in line).
                fmp4 = ts.format.name != "mpegts"
                filters = {s.index: av.bitstream.BitStreamFilterContext(
                    ("h264_mp4toannexb" if fmp4 and s.codec_context.name == "h264" else "null")
                    if s.type == "video" else
                    ("null" if fmp4 else "aac_adtstoasc"), s) for s in [*ts.streams.video, *ts.streams.audio]}
                for packet in ts.demux():
                    if packet.pts is None or packet.size == 0 or packet.stream.type not in ("video", "audio"):
                        continue
                    kind, time_base = packet.stream.type, packet.time_base
                    for out in filters[packet.stream.index].filter(packet):
                        mp4.add(kind, out, time_base)
            if mp4.error is not None:
                break
    except Exception as err:  # a segment that cannot be read (or fetched): no MP4 rather than a wrong one
        if mp4 is not None:
            mp4._give_up(f"{type(err).__name__}: {err}")
        return None, f"{type(err).__name__}: {err}"
    finally:
        if audio_path is not None:
            audio_path.close()
    if mp4 is None:
        return None, None
    info = mp4.close()
    return info, mp4.error


def picture_size(keyframe: bytes, codec: str = "h264") -> tuple[int, int]:
    """Width and height of a keyframe (H.264: with its parameter sets), by decoding it once."""
    if codec != "h264":  # libdav1d (FFmpeg's own av1 decoder is hardware only) holds its frames until flushed
        decoder = av.CodecContext.create({"av1": "libdav1d"}.get(codec, codec), "r")
        frames = decoder.decode(av.Packet(keyframe)) + decoder.decode(None)
        return (frames[0].width, frames[0].height) if frames else (decoder.width, decoder.height)
    decoder = av.CodecContext.create("h264", "r")
    decoder.decode(av.Packet(keyframe))
    return decoder.width, decoder.height
