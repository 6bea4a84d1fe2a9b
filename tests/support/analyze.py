"""Reading recordings back for assertions: playlists, decoded frames, flash/beep onsets for A/V sync."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np


@dataclass
class PlaylistInfo:
    target: int
    entries: list[tuple[str, float, bool]]  # (uri, duration, discontinuity before it)
    ended: bool


def parse_playlist(text: str) -> PlaylistInfo:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0] == "#EXTM3U", "not an M3U8 playlist"
    target = int(next(line.split(":")[1] for line in lines if line.startswith("#EXT-X-TARGETDURATION")))
    entries, disc, dur = [], False, None
    for line in lines:
        if line == "#EXT-X-DISCONTINUITY":
            disc = True
        elif line.startswith("#EXTINF:"):
            dur = float(re.match(r"#EXTINF:([0-9.]+)", line).group(1))
        elif not line.startswith("#"):
            entries.append((line, dur, disc))
            disc, dur = False, None
    return PlaylistInfo(target, entries, "#EXT-X-ENDLIST" in lines)


@dataclass
class Decoded:
    video_frames: int = 0
    audio_samples: int = 0
    sizes: set = field(default_factory=set)
    video_times: list[float] = field(default_factory=list)
    flashes: list[float] = field(default_factory=list)  # times of bright frames
    beeps: list[float] = field(default_factory=list)  # sample-accurate times of loud samples (first per frame)
    segment_spans: list[tuple[float, float]] = field(default_factory=list)  # (first, last) pts per segment
    audio_spans: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each audio frame
    decode_errors: int = 0


def decode_segments(paths: list[Path], *, luma_threshold: float = 128, level: float = 0.1) -> Decoded:
    out = Decoded()
    for path in paths:
        first = last = None
        with av.open(str(path)) as c:
            streams = [*c.streams.video[:1], *c.streams.audio[:1]]
            for packet in c.demux(*streams):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    out.decode_errors += 1
                    continue
                for fr in frames:
                    t = float(fr.pts * fr.time_base)
                    first = t if first is None else min(first, t)
                    last = t if last is None else max(last, t)
                    if isinstance(fr, av.VideoFrame):
                        out.video_frames += 1
                        out.sizes.add((fr.width, fr.height))
                        out.video_times.append(t)
                        if fr.to_ndarray(format="gray").mean() > luma_threshold:
                            out.flashes.append(t)
                    else:
                        out.audio_samples += fr.samples
                        out.audio_spans.append((t, t + fr.samples / fr.sample_rate))
                        data = np.abs(fr.to_ndarray()).max(axis=0)
                        loud = np.nonzero(data > level)[0]
                        if loud.size:
                            out.beeps.append(t + loud[0] / fr.sample_rate)
        out.segment_spans.append((first, last))
    return out


def audio_gaps(spans: list[tuple[float, float]], tolerance: float = 0.005) -> list[tuple[float, float]]:
    """(where, how long) of every hole in the decoded audio timeline."""
    gaps = []
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start - end > tolerance:
            gaps.append((end, start - end))
    return gaps


def onsets(times: list[float], gap: float = 0.5) -> list[float]:
    """First time of each burst (bursts are separated by more than ``gap`` seconds)."""
    result: list[float] = []
    last = None
    for t in sorted(times):
        if last is None or t - last > gap:
            result.append(t)
        last = t
    return result


def av_offsets(flashes: list[float], beeps: list[float], video_times: list[float]) -> list[float]:
    """Video onset minus audio onset, for each flash that has a beep within half a second.

    Only flashes whose preceding dark frame was recorded (within 100 ms) count: a recording that starts in
    the middle of a flash has no onset there.
    """
    a = onsets(beeps)
    frames = sorted(video_times)
    offsets = []
    for v in onsets(flashes):
        if not any(v - 0.1 <= f < v for f in frames):
            continue
        near = min(a, key=lambda x: abs(x - v), default=None)
        if near is not None and abs(near - v) < 0.5:
            offsets.append(v - near)
    return offsets


def recording_folders(root: Path) -> dict[str, Path]:
    """Participant folder name → folder, for the (single) recording under ``root``."""
    playlists = sorted(root.rglob("index.m3u8"))
    return {p.parent.name: p.parent for p in playlists}


def read_participant(folder: Path) -> tuple[PlaylistInfo, Decoded]:
    info = parse_playlist((folder / "index.m3u8").read_text())
    return info, decode_segments([folder / uri for uri, _, _ in info.entries])
