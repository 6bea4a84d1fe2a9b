"""What a composite recording is asked to be: one immutable settings object, checked once.

``spec.recording.composite`` maps onto it; the API's pydantic model gives users the field-level messages, this
is the engine's own guard. Frozen: any thread may read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .labels import parse_colour
from .layout import LAYOUTS

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")


@dataclass(frozen=True)
class CompositeConfig:
    width: int = 1280
    height: int = 720
    fps: int = 15
    video_bitrate: int = 1_500_000  # bit/s
    audio_bitrate: int = 96_000  # bit/s (AAC)
    layout: str = "grid"  # grid | speaker
    background: str = "#000000"
    show_names: bool = True
    segment_seconds: float = 4.0  # keyframe spacing, so HLS cuts there
    video: bool = True  # False: a mixed-audio recording (streamTypes: audio)
    audio: bool = True
    audio_layout: str = "stereo"
    preset: str = "veryfast"
    encoder_threads: int = 1
    latency: float = 0.3  # the timeline runs this far behind the clock, so that media has arrived
    drop_after: float = 0.5  # further behind than this: the picture of a tick is dropped (audio never is)

    def __post_init__(self):
        problems = []
        if self.width % 2 or self.height % 2 or not (16 <= self.width <= 3840) or not (16 <= self.height <= 2160):
            problems.append(f"size {self.width}x{self.height}: even numbers, 16x16 to 3840x2160")
        if not 1 <= self.fps <= 60:
            problems.append(f"fps {self.fps}: 1 to 60")
        if not 50_000 <= self.video_bitrate <= 50_000_000:
            problems.append(f"videoBitrate {self.video_bitrate}: 50000 to 50000000 bit/s")
        if self.layout not in LAYOUTS:
            problems.append(f"layout {self.layout!r}: one of {', '.join(LAYOUTS)}")
        if self.preset not in PRESETS:
            problems.append(f"preset {self.preset!r}: one of {', '.join(PRESETS)}")
        if not 0.5 <= self.segment_seconds <= 60:
            problems.append(f"segmentSeconds {self.segment_seconds}: 0.5 to 60")
        if not (self.video or self.audio):
            problems.append("neither video nor audio")
        try:
            parse_colour(self.background)
        except ValueError as err:
            problems.append(f"background: {err}")
        if problems:
            raise ValueError("composite settings: " + "; ".join(problems))

    @property
    def gop(self) -> int:
        """Pictures per segment: a keyframe every ``segment_seconds``."""
        return max(1, round(self.fps * self.segment_seconds))
