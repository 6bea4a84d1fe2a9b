"""One fMP4 (CMAF) HLS segment being written (``spec.recording.segmentFormat: fmp4``).

Each segment is written by its own FFmpeg MP4 muxer (through PyAV) in fragmented mode: ``empty_moov`` (the
sample tables go into the fragments), ``frag_keyframe`` (a fragment at every video keyframe; the rest at
close), ``default_base_moof`` and ``cmaf`` (CMAF brands and layout), ``frag_discont`` with
``avoid_negative_ts=disabled`` and no edit list (the first fragment's ``tfdt`` is the first packet's own
timestamp, so every segment carries the recording's timeline, as the TS segments do: ``tfdt`` runs on across a
run's segments). The muxer writes into a :class:`BoxSplitter`: its top-level boxes are routed by type only
(size + type, nothing deeper): ``ftyp`` and ``moov`` are the init segment (kept in memory, ``init``), ``moof``,
``mdat`` (and any other box) are the media segment (the ``.m4s`` file, hashed on the way), the trailer's
``mfra`` is dropped (``skip_trailer`` avoids it anyway).

The writer (output/writer.py) stores an init segment once per run, and again when a segment's init differs
from the one before (a new picture size: new parameter sets); a segment's playlist entry names its init
(``#EXT-X-MAP``). Segments of one run with the same tracks and parameter sets have byte-identical inits.

Sample durations: MP4 gives each sample a duration (the next sample's time comes from it), and the muxer takes
the last one of each fragment from the packet. The video packet is held back until the next one arrives (or
the segment ends), so its duration is exact: the last picture of a segment lasts until the cut, and segments
tile the timeline without holes. Audio packets carry their own durations (AAC frames, Opus packets).

Audio at the cut: a picture reaches the writer later than the sound of the same instant (its frame is assembled
first), so sound from after a cut would land in the segment before it. In MP4 that matters: a player's buffer is
where both tracks are, and a last segment without sound never lets playback reach its end (hls.js in Chromium
stalled so). So audio waits in the segment until a picture at least as late has come (at most ``AUDIO_LEAD`` of
sound: a picture that lags more, or a camera that stopped, holds nothing up); at ``close`` the waiting audio from
the cut on is handed back (``leftover``), and the writer puts it at the start of the next segment.

A run's edges: both tracks of a run start and end together, so its segments leave no hole in a player's buffer at a
discontinuity (hls.js in Chromium stalled 60 ms before the end of a recording whose sound ended one audio frame
before its picture, and jumped a hole of that size at a rejoin). In a run's first segment (``run_start``) the first
picture is moved back to the sound's start when the sound came first (shown from there: a still for as long as the
picture came later, at most ``formats.FMP4_VIDEO_WAIT``), and silent audio frames (output/silence.py) go in front
of the sound when the picture came first (the picture then moved back to the silence's start, less than one audio
frame; when the sound comes only after the first picture was written, the picture starts that much later than the
silence). Before any is written, the first pictures wait for the first sound (at most ``SOUND_WAIT``): it can come
after them, though it starts before the first picture (each stream's aligner hands out its first half second at
once, and AAC's encoder hands out a run's first frame, which starts 1024 samples before the sound it was given,
only once it has the next); written after the first picture, it began before its segment's listed start, and
hls.js's buffer ran that much past the recording's end (CI, a rejoin: 17 ms; here under load: 30 ms). In a run's
last segment (``close(..., run_end=True)``) the sound is padded with silent frames to the end of the last picture,
and the last picture lasts until the sound's end (less than one frame later). The MP4 output (output/mp4.py) keeps
the packets as they came.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from ..media import h264
from .audio import RATE
from .silence import silent_frame
from .ts import VIDEO_TB, HashingFile
from .video_track import add_video_track

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+frag_discont+cmaf+skip_trailer"
MUXER_OPTIONS = {"movflags": MOVFLAGS, "avoid_negative_ts": "disabled", "use_editlist": "0"}
AUDIO_TB = Fraction(1, RATE)
AUDIO_LEAD = 0.5  # seconds of sound that wait at most for the pictures of the same time
SOUND_WAIT = 1.5  # seconds of a run's first pictures that wait at most for its first sound: the stream aligners
# (clock.py) hand out a stream's first 0.5 s at once, the sound's possibly after the pictures'; AAC adds a frame
INIT_BOXES = frozenset({"ftyp", "moov"})
DROPPED_BOXES = frozenset({"mfra"})


def top_level_boxes(data: bytes) -> list[tuple[str, int, int]]:
    """(type, offset, size) of each top-level box of an MP4 byte string. Raises ValueError when the data does
    not end at a box boundary or a size is impossible."""
    out, i = [], 0
    while i < len(data):
        if len(data) - i < 8:
            raise ValueError(f"truncated box header at {i}")
        size, kind = struct.unpack_from(">I4s", data, i)
        if size == 1:
            if len(data) - i < 16:
                raise ValueError(f"truncated large box header at {i}")
            size = struct.unpack_from(">Q", data, i + 8)[0]
        if size < 8 or i + size > len(data):
            raise ValueError(f"box {kind!r} at {i} has an impossible size {size}")
        out.append((kind.decode("latin-1"), i, size))
        i += size
    return out


class BoxSplitter:
    """A write-only file for the muxer: routes each top-level box, as its bytes arrive, to ``init`` (ftyp, moov),
    to ``media`` (every other box), or nowhere (mfra). No ``seek``: the muxer sees a stream, as fragmented
    output needs."""

    def __init__(self, media) -> None:
        self.media = media
        self.init = bytearray()
        self._header = bytearray()  # the box header being read
        self._left = 0  # bytes of the current box not seen yet (its header included while in _header)
        self._to = None  # where the current box's bytes go: self.init, self.media or None (dropped)

    def write(self, data) -> int:
        view = memoryview(data)
        n = len(view)
        while view:
            if self._left == 0:
                view = self._read_header(view)
                continue
            part, view = view[: self._left], view[self._left:]
            self._left -= len(part)
            self._emit(part)
        return n

    def _read_header(self, view: memoryview) -> memoryview:
        need = 16 if len(self._header) >= 8 and struct.unpack_from(">I", self._header)[0] == 1 else 8
        take = view[: need - len(self._header)]
        self._header += take
        view = view[len(take):]
        if len(self._header) < need:
            return view
        size, kind = struct.unpack_from(">I4s", self._header)
        if size == 1 and need == 8:
            return view  # a 64-bit size follows
        if size == 1:
            size = struct.unpack_from(">Q", self._header, 8)[0]
        if size < len(self._header):
            raise ValueError(f"MP4 box {kind!r} with an impossible size {size}")
        name = kind.decode("latin-1")
        self._to = self.init if name in INIT_BOXES else None if name in DROPPED_BOXES else self.media
        header, self._header = bytes(self._header), bytearray()
        self._left = size - len(header)
        self._emit(header)
        return view

    def _emit(self, part) -> None:
        if self._to is self.init:
            self.init += part
        elif self._to is not None:
            self._to.write(bytes(part))

    def complete(self) -> bool:
        """Every box written whole."""
        return self._left == 0 and not self._header


class Fmp4Segment:
    """A CMAF media segment (``.m4s``) and, after ``close``, the init segment it needs (``init``: ftyp + moov).
    Same members as output/ts.py TsSegment. ``picture``: the video's width and height (from the first keyframe's
    parameter sets), which the init segment states. ``run_start``: the first segment of a run (its tracks are
    made to start together; the module's docstring). ``video_codec``: h264, or vp9/av1 (copied as FFmpeg's RTP
    depacketizer hands them over; the muxer takes their codec configuration from the first keyframe)."""

    def __init__(self, index: int, path: Path, start: float, has_video: bool, has_audio: bool,
                 audio_template, discontinuity: bool, picture: tuple[int, int] | None = None,
                 parameter_sets: bytes = b"", run_start: bool = False, video_codec: str = "h264"):
        self.index = index
        self.start = start
        self.end = start
        self.discontinuity = discontinuity
        self.file = HashingFile(path)
        self._split = BoxSplitter(self.file)
        self.container = av.open(self._split, "w", format="mp4", options=dict(MUXER_OPTIONS))
        self.video = None
        if has_video:
            width, height = picture or (0, 0)
            self.video = add_video_track(self.container, video_codec, width, height)
        self.audio = self.container.add_stream_from_template(audio_template) if has_audio else None
        self.keyframe_requested = False
        self.init: bytes | None = None
        self._held: av.Packet | None = None  # the last video packet, until its duration is known
        self._early: list[tuple[av.Packet, int]] = []  # a run's first pictures (and durations), until its first sound
        self._parameter_sets = parameter_sets  # until the first video packet has been given them
        self._audio: list[av.Packet] = []  # audio waiting for the pictures of its time
        self._video_t: float | None = None  # time of the latest picture
        self.leftover: list[av.Packet] = []  # after ``close``: audio from the cut on, for the next segment
        self._video_duration = 3000  # the last picture's duration (1/90000), for one whose next never comes
        self._run_start = run_start and self.video is not None and self.audio is not None
        self._h264 = video_codec == "h264"
        self._first_audio: float | None = None  # time of the first sound given (seconds)
        self._audio_end: int | None = None  # end of the sound written so far (1/RATE), None: none written yet
        self._video_start: float | None = None  # time of the first picture written (seconds)

    def mux(self, packet: av.Packet) -> None:
        if packet.dts is not None and packet.dts < 0:
            return  # before the timeline's start (AAC priming at time 0): MP4 fragments start at tfdt >= 0
        if self.video is None:
            self.container.mux(packet)
            return
        if packet.stream is not self.video:
            if self._first_audio is None:
                self._first_audio = float(packet.pts * packet.time_base)
                self._flush_early()
            self._audio.append(packet)
            self._release_audio()
            return
        if self._held is not None and packet.pts <= self._held.pts:
            return  # MP4 needs a later time for every sample of a track
        if self._h264 and not h264.has_picture(bytes(packet)):
            return  # an access unit without a picture (a lone AUD): an MP4 sample must hold one (TS merges it)
        if self._parameter_sets:
            packet = self._with_parameter_sets(packet)
        held, self._held = self._held, packet
        if held is not None:
            self._picture(held, packet.pts - held.pts)
        self._video_t = float(packet.pts * packet.time_base)
        self._release_audio()

    def close(self, end: float | None = None, run_end: bool = False) -> None:
        """Write the held picture (lasting until ``end``, recording time), finish the muxer, keep the init.
        ``run_end``: the run's last segment: the sound is padded to the picture's end and the picture lasts until
        the sound's end (``end`` then moves to it, less than one audio frame later)."""
        self._flush_early()
        held, self._held = self._held, None
        for packet in self._audio:
            if end is None or float(packet.pts * packet.time_base) < end:
                self._mux_audio(packet)
            else:
                self.leftover.append(packet)
        self._audio = []
        if held is not None:
            until = round(end / VIDEO_TB) if end is not None else held.pts + self._video_duration
            if run_end and self.audio is not None and self._audio_end is not None:
                audio_end = self._pad_audio(self._audio_end, until * VIDEO_TB)
                until = max(until, math.ceil(audio_end / VIDEO_TB))
                self.end = max(self.end, float(until * VIDEO_TB))
            self._mux_held(held, until - held.pts)
        self.container.close()
        self.file.close()
        if not self._split.complete():
            raise ValueError(f"{self.file.path.name}: the MP4 muxer's output does not end at a box boundary")
        self.init = bytes(self._split.init)

    def _release_audio(self) -> None:
        """Mux the waiting audio up to the latest picture's time, and any that waited ``AUDIO_LEAD``."""
        newest = float(self._audio[-1].pts * self._audio[-1].time_base) if self._audio else 0.0
        while self._audio:
            t = float(self._audio[0].pts * self._audio[0].time_base)
            if not ((self._video_t is not None and t <= self._video_t) or newest - t >= AUDIO_LEAD):
                break
            self._mux_audio(self._audio.pop(0))

    def _mux_audio(self, packet: av.Packet) -> None:
        """Write a sound packet; the run's first one after silence up to the first picture (``run_start``)."""
        if self._audio_end is None and self._run_start and self._video_start is not None:
            t = float(packet.pts * packet.time_base)
            if t - self._video_start >= VIDEO_TB:  # (less: the picture was moved to it, rounded to its ticks)
                self.start = min(self.start, float(self._pad_before(t, self._video_start)))
        self.container.mux(packet)
        end = packet.pts + (packet.duration or 0)
        end = round(end * packet.time_base * RATE)
        self._audio_end = end if self._audio_end is None else max(self._audio_end, end)

    def _silence(self) -> tuple[bytes, int]:
        cc = self.audio.codec_context
        frame = silent_frame(cc.name, cc.channels)
        return frame.data, frame.samples

    def _mux_silence(self, pts: int, count: int) -> None:
        data, size = self._silence()
        for i in range(count):
            p = av.Packet(data)
            p.pts = p.dts = pts + i * size
            p.duration, p.time_base, p.stream = size, AUDIO_TB, self.audio
            self.container.mux(p)

    def _pad_before(self, sound: float, picture: float) -> Fraction:
        """Silent frames ending at ``sound`` (seconds) from at or before ``picture``; their start (none: ``sound``;
        none either when they would start before the timeline)."""
        _, size = self._silence()
        first = round(sound * RATE)
        count = math.ceil((first - picture * RATE) / size)
        start = first - count * size
        if count <= 0 or start < 0:
            return Fraction(first, RATE)
        self._mux_silence(start, count)
        self._audio_end = first
        return Fraction(start, RATE)

    def _pad_audio(self, audio_end: int, until: Fraction) -> Fraction:
        """Silent frames from ``audio_end`` (1/RATE) to at least ``until`` (seconds); the sound's new end."""
        _, size = self._silence()
        count = max(0, math.ceil((until * RATE - audio_end) / size))
        self._mux_silence(audio_end, count)
        self._audio_end = audio_end + count * size
        return Fraction(self._audio_end, RATE)

    def _with_parameter_sets(self, packet: av.Packet) -> av.Packet:
        """The segment's first video packet, with the run's SPS and PPS in front when it has none: the muxer
        builds the init segment's avcC from the first video packet it gets, and a segment may start without a
        keyframe (cut on audio time while the video stalled)."""
        sets, self._parameter_sets = self._parameter_sets, b""
        data = bytes(packet)
        if h264.has_parameter_sets(data):
            return packet
        out = av.Packet(sets + data)
        out.pts, out.dts, out.time_base, out.stream = packet.pts, packet.dts, packet.time_base, packet.stream
        out.is_keyframe = packet.is_keyframe
        return out

    def _picture(self, packet: av.Packet, duration: int) -> None:
        """A picture whose duration is known: muxed, unless it is among a run's first ones and no sound has come
        yet (``run_start``): those wait for the first sound (at most ``SOUND_WAIT``), so that the first picture can
        still move back to it. The sound of the same instant can come later than the picture: each stream's first
        half second comes at once when its aligner fixes its offset, and AAC's encoder hands out its first frame
        (which starts 1024 samples before the sound it was given) only once it has the next one."""
        if self._run_start and self._first_audio is None and self._video_start is None:
            first = self._early[0][0] if self._early else packet
            if (packet.pts - first.pts) * VIDEO_TB < SOUND_WAIT:
                self._early.append((packet, duration))
                return
        self._flush_early()
        self._mux_held(packet, duration)

    def _flush_early(self) -> None:
        early, self._early = self._early, []
        for packet, duration in early:
            self._mux_held(packet, duration)

    def _mux_held(self, packet: av.Packet, duration: int) -> None:
        if self._video_start is None:
            duration += self._align_first_picture(packet)
            self._video_start = float(packet.pts * packet.time_base)
        if duration > 0:
            self._video_duration = duration
        packet.duration = self._video_duration
        self.container.mux(packet)

    def _align_first_picture(self, packet: av.Packet) -> int:
        """A run's first picture moved to where its sound starts (``run_start``): back to the first sound, or, when
        the picture came first, back to the silence put before the sound. Returns the ticks (1/90000) it moved
        back by (its duration grows by as much)."""
        if not self._run_start or self._first_audio is None:
            return 0
        picture = float(packet.pts * packet.time_base)
        start = self._first_audio
        if start > picture and self._audio_end is None:
            start = float(self._pad_before(start, picture))
        target = round(start / VIDEO_TB)
        if target >= packet.pts:
            return 0
        moved = packet.pts - target
        packet.pts = packet.dts = target
        self.start = min(self.start, float(target * VIDEO_TB))
        return moved


@dataclass(frozen=True)
class InitSegment:
    """An init segment file in the spool, and whether this segment is the first to need it (``new``: store it)."""

    name: str
    path: Path
    size: int
    sha256: str
    new: bool


def write_init(path: Path, data: bytes) -> InitSegment:
    """Write an init segment (ftyp + moov) to the spool."""
    with open(path, "wb") as f:
        f.write(data)
    return InitSegment(path.name, path, len(data), hashlib.sha256(data).hexdigest(), new=True)
