"""The HLS segment format and audio codec of a recording (``spec.recording.segmentFormat``, ``audioCodec``).

Pure choices, read once when a writer is made: which segment class writes the files (output/ts.py,
output/fmp4.py), the segment files' extension, and what the audio packets become (``OpusToAac``: AAC, or
``OpusCopy``: Opus as sent). The API refuses Opus in TS (browsers do not play it: an admission rule);
``audioCodec`` left out means AAC for TS and Opus (as sent) for fMP4.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .audio import OpusToAac
from .fmp4 import Fmp4Segment
from .opus import OpusCopy
from .ts import TsSegment

TS, FMP4 = "ts", "fmp4"
AAC, OPUS = "aac", "opus"
DEFAULT_AUDIO = {TS: AAC, FMP4: OPUS}
# fMP4: a run's first init segment fixes the tracks a player (hls.js, MSE) sets up, so its first segment should
# have the video track: audio waits up to this long for the first keyframe (the writer asks for one meanwhile);
# a camera that stays off longer gives audio-only segments, and a video track that comes later a new init.
FMP4_VIDEO_WAIT = 10.0


@dataclass(frozen=True)
class SegmentFormat:
    name: str  # ts | fmp4
    audio_codec: str  # aac | opus
    extension: str  # of the segment files: "ts", "m4s"
    segment: Callable  # (index, path, start, has_video, has_audio, audio_template, discontinuity, picture, ...)
    needs_init: bool  # segments need an init segment (#EXT-X-MAP)
    # at the start of a run, how long audio waits for the first keyframe before segments without video start
    video_wait: float = 1.0

    def audio_path(self) -> Callable[[], OpusToAac | OpusCopy]:
        """What the writer makes (once per run) to turn the ingest's Opus packets into the segments' audio."""
        return OpusCopy if self.audio_codec == OPUS else OpusToAac


def segment_format(name: str | None = TS, audio_codec: str | None = None) -> SegmentFormat:
    """The format of ``spec.recording``'s ``segmentFormat`` and ``audioCodec`` (None: the format's default).
    Raises ValueError for Opus in TS (the API refuses it at admission) or an unknown name."""
    name = name or TS
    codec = audio_codec or DEFAULT_AUDIO.get(name)
    if name == TS and codec == AAC:
        return SegmentFormat(TS, AAC, "ts", TsSegment, needs_init=False)
    if name == FMP4 and codec in (AAC, OPUS):
        return SegmentFormat(FMP4, codec, "m4s", Fmp4Segment, needs_init=True, video_wait=FMP4_VIDEO_WAIT)
    raise ValueError(f"segmentFormat {name!r} with audioCodec {codec!r} is not recordable (Opus needs fmp4)")


def format_of(recording) -> SegmentFormat:
    """The format a session's ``spec.recording`` (session.py view) asks for."""
    return segment_format(recording.segment_format, recording.audio_codec)


#: The default: MPEG-TS with AAC.
TS_AAC = segment_format(TS, AAC)
