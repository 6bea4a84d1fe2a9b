"""A participant's writer: their media written as HLS segments and, with ``outputs: [hls, mp4]``, as an MP4.

HLS: segments cut at keyframes, H.264 copied; the segment files and the audio by ``segment_format``
(output/formats.py): MPEG-TS with Opus → AAC (output/ts.py, output/audio.py), or fMP4/CMAF (output/fmp4.py)
with AAC or Opus as sent (output/opus.py). Each segment is its own file written by an FFmpeg muxer (through
PyAV) whose timestamps are the recording's timeline, so the segments of a playlist form one timeline. The
writer decides where to cut, for every format alike; it knows nothing about playlists or where the files go
afterwards: each closed segment is handed to ``on_segment`` (output/catalog.py lists it in the playlist and the
manifest). An fMP4 segment comes with the init segment it needs (``SegmentInfo.init``): a new one at the first
segment of each run and whenever the init changes (new parameter sets: a segment is cut there).

MP4: every packet written to a segment also goes to the participant's ``ParticipantMp4`` (output/mp4.py): the
same H.264 and AAC, a second muxer, no second encoder.

Spool: with every packet the writer asks its ``spool_gate`` (storage/spool.py SpoolBudget). When the spool is
full, it closes the open segment at once and drops the participant's media (counted: the segments it would have
written, seconds); once the gate admits again, recording starts as a new run (a keyframe first, after an
``#EXT-X-DISCONTINUITY``).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av

from ..errors import DISK_FULL, RecorderError
from ..layout import init_name, segment_name
from ..media import av1, h264, vp9
from .audio import RATE
from .fmp4 import Fmp4Segment, InitSegment, write_init
from .formats import TS_AAC, SegmentFormat
from .mp4 import Mp4Info, ParticipantMp4, picture_size
from .ts import TsSegment

log = logging.getLogger(__name__)

VIDEO_RATE = 90000
VIDEO_TB = Fraction(1, VIDEO_RATE)
AUDIO_TB = Fraction(1, RATE)
EARLY_CUT = 0.25  # a keyframe this close before the target duration may start the next segment
KEYFRAME_LEAD = 0.15  # ask for a keyframe this long before the segment reaches its target
VIDEO_STALL = 1.0  # no video for this long, in media time and on arrival: cut on audio time instead (camera off)
VIDEO_WAIT = 1.0  # at the start of a run, hold audio this long for the first keyframe (one segment, both tracks);
# fMP4: output/formats.py (longer: a player takes its tracks from the first init segment)


@dataclass(frozen=True)
class SegmentInfo:
    participant: str  # folder name
    index: int
    name: str  # file name, as listed in the playlist
    path: Path
    start: float  # recording time of the first sample
    duration: float
    size: int
    sha256: str
    discontinuity: bool
    has_video: bool
    has_audio: bool
    init: InitSegment | None = None  # fMP4: the init segment it needs (``new``: first needed by this segment)


class SpoolGate(Protocol):
    """What a writer asks with every packet (storage/spool.py SpoolBudget); called with the writer's lock held."""

    def admit(self) -> bool: ...
    def dropped(self, *, segments: int = 0, seconds: float = 0.0) -> None: ...


class ParticipantWriter:
    """Records one participant into a folder of HLS segments (in the spool), and their MP4 when asked.

    Thread-safe: the ingest's media threads (forward: a feed thread, ingest/rtp.py; WebRTC: a pump
    thread per stream, ingest/pump.py) call ``video``/``audio``, possibly concurrently.
    """

    def __init__(
        self,
        folder: str,
        spool: Path,
        *,
        segment_seconds: float,
        on_segment: Callable[[SegmentInfo], None],
        request_keyframe: Callable[[], None] | None = None,
        expect_audio: bool = True,
        expect_video: bool = True,
        mp4: bool = False,
        on_mp4: Callable[[Mp4Info], None] | None = None,
        first_index: int = 0,
        spool_gate: SpoolGate | None = None,
        audio_transcoder: Callable | None = None,
        segment_format: SegmentFormat | None = None,
        video_codec: str = "h264",
        clock: Callable[[], float] = time.monotonic,
    ):
        """``segment_format``: TS with AAC by default (output/formats.py). ``audio_transcoder`` makes what turns
        the audio packets given to ``audio`` into the segments' audio (one per run; same members as
        ``OpusToAac``): by default the format's (Opus from the ingest → AAC, or Opus copied); the composite's AAC
        passes through (composite/encoder.py). ``video_codec``: h264 (copied, cut at IDRs with parameter sets), or
        vp9/av1 (fMP4 only: outputs.plan_streams; cut at keyframes, a new init segment at a new picture size).
        ``clock``: when the media arrives (seconds; tests give one that follows their media time)."""
        self.folder = folder
        self.dir = spool / folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_seconds = segment_seconds
        self.on_segment = on_segment
        self.request_keyframe = request_keyframe or (lambda: None)
        self.expect_audio = expect_audio
        self.expect_video = expect_video
        self.video_codec = video_codec
        self._sequence_header = b""  # AV1: the run's
        self._lock = threading.Lock()
        self._seg: TsSegment | Fmp4Segment | None = None
        self._index = first_index  # a resumed recording continues the numbering of its earlier runs
        self.format = segment_format or TS_AAC
        self._new_transcoder = audio_transcoder or self.format.audio_path()
        self._transcoder = self._new_transcoder()
        self._video_started = False  # a keyframe with parameter sets seen in this run
        self._parameter_sets = b""
        self._picture: tuple[int, int] | None = None  # fMP4: the picture size of the parameter sets
        self._init: tuple[bytes, InitSegment] | None = None  # fMP4: the run's current init segment
        self._carry: list[av.Packet] = []  # fMP4: audio from after a cut, for the next segment (output/fmp4.py)
        self._last_video_t: float | None = None
        self._last_video_seen = 0.0  # ``clock()`` when that picture came
        self._clock = clock
        self._last_video_dur = 1 / 30
        self._pending_discontinuity = first_index > 0  # ... after a discontinuity
        self._audio_wait: list[tuple[av.Packet, float]] = []  # AAC held while waiting for the first keyframe
        self.spool_gate = spool_gate
        self._dropping = False  # the spool gate refused a segment: media is dropped until it admits again
        self._drop_start: float | None = None  # media time the segment we would be writing began
        self._drop_last: float | None = None  # media time of the last dropped packet
        self.mp4 = ParticipantMp4(self.dir / "recording.mp4", audio_template=self._transcoder.template,
                                  expect_video=expect_video, expect_audio=expect_audio,
                                  video_codec=video_codec) if mp4 else None
        self.on_mp4 = on_mp4
        self.closed = False

    # -- media entry points (media threads) ----------------------------------------------------------------
    def video(self, packet: av.Packet, t: float) -> None:
        data = bytes(packet)
        with self._lock:
            if self.closed:
                return
            if self._spool_refuses(t):
                return
            key = packet.is_keyframe and h264.is_idr(data)
            new_sets = False
            if self.video_codec != "h264":
                key, new_sets = self._keyframe_without_sets(data)
            elif key:
                sets = h264.parameter_sets(data)
                if sets:
                    new_sets = sets != self._parameter_sets
                    if new_sets and self.format.needs_init:
                        self._picture = picture_size(data)  # the init segment states it
                    self._parameter_sets = sets
                elif self._parameter_sets:
                    data = self._parameter_sets + data  # every segment must start decodable
                else:
                    key = False
            if not self._video_started:
                if not key:
                    self.request_keyframe()
                    return  # nothing decodable before the first IDR with SPS/PPS
                self._video_started = True
                log.info("%s: first keyframe at %.3f s", self.folder, t)
            if self._last_video_t is not None and t <= self._last_video_t:
                return
            if key and (self._should_cut(t, keyframe=True) or (new_sets and self._new_init_needed())):
                self._cut(t)
            elif self._seg is not None and not key:
                self._maybe_request_keyframe(t)
            if self._seg is None:
                self._open(min([t] + [pt for _, pt in self._audio_wait[:1]]))
                self._release_audio_wait()
            if self._last_video_t is not None:
                self._last_video_dur = min(max(t - self._last_video_t, 1 / 120), 0.5)
            self._last_video_t = t
            self._last_video_seen = self._clock()
            out = av.Packet(data)
            out.pts = out.dts = round(t * VIDEO_RATE)
            out.time_base = VIDEO_TB
            if key:
                out.is_keyframe = True
            self._write(out, self._seg.video, t + self._last_video_dur)

    def audio(self, packet: av.Packet, t: float) -> None:
        with self._lock:
            if self.closed:
                return
            if self._spool_refuses(t):
                return
            encoded = self._transcoder.encode(packet, t)
            for p in encoded:
                pt = p.pts / RATE  # = float(pts * AUDIO_TB), without a Fraction per packet
                if self._seg is None and self.expect_video and not self._video_started:
                    self._audio_wait.append((p, pt))
                    if pt - self._audio_wait[0][1] < self.format.video_wait:
                        continue  # give the first keyframe a moment, so the run starts with both tracks
                    self._open(self._audio_wait[0][1])
                    self._release_audio_wait()
                    continue
                if self._should_cut(pt, keyframe=False):
                    if self._video_started:
                        log.info("%s: no picture for %.1f s of sound: segment cut on audio time at %.3f s",
                                 self.folder, pt - self._last_video_t, pt)
                    self._cut(pt)
                if self._seg is None:
                    self._open(pt)
                self._write_audio(p, pt)

    # -- run boundaries (recorder thread) ------------------------------------------------------------------
    def pause(self) -> None:
        """The participant left: close the open segment; a later return starts after a discontinuity."""
        with self._lock:
            self._finish_run()
            self._pending_discontinuity = self._index > 0
            self._drop_start = self._drop_last = None

    def close(self, *, hand_over_mp4: bool = True) -> None:
        """End of the recording for this participant: close the segment (and the MP4). ``hand_over_mp4=False``:
        this recorder is interrupted; its MP4 covers one run only and is dropped (the recorder that ends the
        recording builds the whole one from the stored segments, output/mp4.py)."""
        with self._lock:
            if self.closed:
                return
            self._finish_run(final=True)
            self.closed = True
            if self.mp4 is not None:
                info = self.mp4.close()
                if info is not None and self.on_mp4 is not None and hand_over_mp4:
                    self.on_mp4(info)

    # -- internals (lock held) -----------------------------------------------------------------------------
    def _should_cut(self, t: float, *, keyframe: bool) -> bool:
        seg = self._seg
        if seg is None:
            return False
        elapsed = t - seg.start
        if keyframe:
            # a segment opened without video (audio came first) ends at the first keyframe
            return seg.video is None or elapsed >= self.segment_seconds - EARLY_CUT
        # Audio decides only when there is no video to cut at: no picture for VIDEO_STALL of the sound's time, and
        # none has come for as long. Pictures that still come, only late (a sender whose video runs behind its
        # sound, a busy encoder), are live: a cut on audio time then would start the next segment with pictures
        # that need the ones before it (a TS segment decoded on its own: "non-existing PPS", seen in CI).
        video_live = (seg.video is not None and self._last_video_t is not None
                      and (t - self._last_video_t < VIDEO_STALL or self._clock() - self._last_video_seen < VIDEO_STALL))
        return not video_live and elapsed >= self.segment_seconds

    def _keyframe_without_sets(self, data: bytes) -> tuple[bool, bool]:
        """VP9, AV1: (a keyframe, that needs a new init segment: another picture size, another AV1 sequence
        header)."""
        if self.video_codec == "av1":
            header = av1.sequence_header(data)
            if header is None:
                return False, False
            changed, self._sequence_header = header != self._sequence_header, header
            if changed:
                self._picture = picture_size(data, "av1")
            return True, changed
        if not vp9.is_keyframe(data):
            return False, False
        size = vp9.picture_size(data)
        changed = size != self._picture
        self._picture = size
        return True, changed

    def _new_init_needed(self) -> bool:
        """fMP4: new parameter sets start a segment (its init segment states them)."""
        return self.format.needs_init and self._seg is not None and self._seg.video is not None

    def _maybe_request_keyframe(self, t: float) -> None:
        seg = self._seg
        if t - seg.start >= self.segment_seconds - KEYFRAME_LEAD:
            self.request_keyframe()  # rate-limited by the requester

    def _spool_refuses(self, t: float) -> bool:
        """Ask the spool gate (every packet). Refused: the open segment ends here, the media is dropped (not even
        encoded) as after a pause; once the gate admits again, the next segment starts a new run (keyframe first,
        after a discontinuity). True when this packet is to be dropped."""
        gate = self.spool_gate
        if gate is None:
            return False
        if gate.admit():
            if self._dropping:
                log.info("%s: the spool has room again: recording resumes", self.folder)
                self._dropping = False
                self._drop_start = self._drop_last = None
            return False
        if not self._dropping:
            log.warning("%s: the spool is full: not recording until uploads make room", self.folder)
            self._dropping = True
            if self._seg is not None:
                self._cut(t, run_end=True)
            self._audio_wait = []
            self._carry = []
            self._transcoder = self._new_transcoder()  # what the encoder holds is dropped with the rest
            self._video_started = False
            self._init = None  # the next run gets its own init segment
            self._last_video_t = None
            self._pending_discontinuity = self._pending_discontinuity or self._index > 0
        self._drop(t)
        return True

    def _drop(self, t: float) -> None:
        """Count media dropped for a full spool: a segment every ``segment_seconds`` of media time, and the time
        it spans (a silence of more than VIDEO_STALL counts as VIDEO_STALL)."""
        segments = 0
        if self._drop_start is None or t - self._drop_start >= self.segment_seconds:
            self._drop_start, segments = t, 1
        seconds = 0.0
        if self._drop_last is not None and t > self._drop_last:
            seconds = min(t - self._drop_last, VIDEO_STALL)
        if self._drop_last is None or t > self._drop_last:
            self._drop_last = t
        if segments or seconds:
            self.spool_gate.dropped(segments=segments, seconds=seconds)

    def _open(self, t: float) -> None:
        name = segment_name(self._index, self.format.extension)
        self._seg = self.format.segment(
            self._index, self.dir / name, t,
            has_video=self._video_started, has_audio=self.expect_audio,
            audio_template=self._transcoder.template, discontinuity=self._pending_discontinuity,
            picture=self._picture, parameter_sets=self._parameter_sets,
            run_start=self._init is None,  # fMP4: the run's tracks start together (output/fmp4.py)
            video_codec=self.video_codec,
        )
        self._pending_discontinuity = False
        self._index += 1
        carried, self._carry = self._carry, []
        for packet in carried if self._seg.audio is not None else ():  # fMP4: sound from after the cut
            packet.stream = self._seg.audio
            self._seg.mux(packet)
            self._seg.end = max(self._seg.end, float(packet.pts * AUDIO_TB) + (packet.duration or 1024) / RATE)

    def _write(self, packet: av.Packet, stream, end: float) -> None:
        seg = self._seg
        if self.mp4 is not None:  # before the segment's muxer takes the packet
            video = stream is seg.video
            self.mp4.add("video" if video else "audio", packet, VIDEO_TB if video else AUDIO_TB)
        packet.stream = stream
        try:
            seg.mux(packet)
        except OSError as err:
            self._fail(err)
        seg.end = max(seg.end, end)

    def _write_audio(self, packet: av.Packet, t: float) -> None:
        if self._seg.audio is None:
            return
        self._write(packet, self._seg.audio, t + (packet.duration or 1024) / RATE)

    def _release_audio_wait(self) -> None:
        held, self._audio_wait = self._audio_wait, []
        for p, pt in held:
            self._write_audio(p, pt)

    def _cut(self, t: float, run_end: bool = False) -> None:
        seg = self._seg
        seg.end = max(t, seg.start)  # the next segment starts here: durations tile the timeline
        self._close_segment(run_end)

    def _finish_run(self, final: bool = False) -> None:
        # Drain the AAC encoder completely: what it holds belongs to this run, not to the next one.
        tail = [(p, float(p.pts * AUDIO_TB)) for p in self._transcoder.close()]
        if not final:
            self._transcoder = self._new_transcoder()
        if self._seg is None and (self._audio_wait or tail):
            self._open((self._audio_wait or tail)[0][1])
        if self._seg is not None:
            self._release_audio_wait()
            for p, pt in tail:
                self._write_audio(p, pt)
            self._close_segment(run_end=True)
        self._video_started = False
        self._last_video_t = None
        self._init = None  # the next run gets its own init segment
        self._carry = []

    def _close_segment(self, run_end: bool = False) -> None:
        seg, self._seg = self._seg, None
        init = None
        try:
            seg.close(seg.end, run_end=run_end)  # fMP4: the run's tracks end together (output/fmp4.py)
            self._carry = list(getattr(seg, "leftover", ()))
            init = self._init_for(seg)
        except OSError as err:
            self._fail(err)
        duration = max(seg.end - seg.start, 0.001)
        name = seg.file.path.name
        info = SegmentInfo(
            participant=self.folder, index=seg.index, name=name, path=seg.file.path,
            start=seg.start,
            duration=duration, size=seg.file.size, sha256=seg.file.sha.hexdigest(),
            discontinuity=seg.discontinuity, has_video=seg.video is not None, has_audio=seg.audio is not None,
            init=init,
        )
        self.on_segment(info)

    def _init_for(self, seg) -> InitSegment | None:
        """The init segment ``seg`` needs: the run's current one, or a new one (written to the spool, named after
        the first segment that needs it) at a run's first segment and when the init changed."""
        if seg.init is None:
            return None
        if self._init is not None and self._init[0] == seg.init:
            return replace(self._init[1], new=False)
        made = write_init(self.dir / init_name(seg.index), seg.init)
        self._init = (seg.init, made)
        return made

    def _fail(self, err: OSError):
        if err.errno == errno.ENOSPC:
            raise RecorderError(DISK_FULL, f"the recording spool {self.dir} is full: give the recorder more "
                                           "disk (spec resources / emptyDir size limit)") from err
        raise err
