"""Reading recordings back for assertions: playlists, decoded frames, flash/beep onsets for A/V sync."""

from __future__ import annotations

import contextlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.logging
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
    decode_errors: int = 0  # packets the decoders refused, and errors they logged (a damaged frame they concealed)
    decode_messages: list[str] = field(default_factory=list)  # what they logged


def decode_segments(paths: list[Path], *, luma_threshold: float = 128, level: float = 0.1) -> Decoded:
    """Decode each file on its own (TS segments, an MP4; a playlist: FFmpeg's HLS demuxer reads every segment it
    lists, fMP4 ones after their #EXT-X-MAP init segment).

    Every frame is decoded fully. ``decode_errors`` counts packets a decoder refused *and* every error FFmpeg's
    demuxers and decoders log meanwhile, from any thread: an H.264 decoder conceals a damaged or cut-short frame
    ("error while decoding MB", "Invalid level prefix") and still returns a picture."""
    with decoder_errors() as errors:
        out = _decode(paths, luma_threshold, level)
    out.decode_errors += len(errors)
    out.decode_messages += errors
    return out


@contextlib.contextmanager
def decoder_errors():
    """The errors FFmpeg logs (any thread) while the block runs, as "component: message" lines, filled in when
    the block ends. For tests that decode on their own: count them as decode errors."""
    errors: list[str] = []
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=False) as logs:
            yield errors
    finally:
        av.logging.set_level(previous)
        errors += [f"{name}: {message.strip()}" for lvl, name, message in logs if lvl <= av.logging.ERROR]


def _decode(paths: list[Path], luma_threshold: float, level: float) -> Decoded:
    out = Decoded()
    for path in paths:
        first = last = None
        with av.open(str(path)) as c:
            streams = [*c.streams.video[:1], *c.streams.audio[:1]]
            for packet in c.demux(*streams):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as err:
                    out.decode_errors += 1
                    out.decode_messages.append(f"{path.name}: {err}")
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
    """The playlist, and its media decoded: TS segments one by one; fMP4 segments (which need their init
    segment) through FFmpeg's HLS demuxer reading the playlist, as a player does (``segment_spans``: one span)."""
    playlist = folder / "index.m3u8"
    info = parse_playlist(playlist.read_text())
    if "#EXT-X-MAP:" in playlist.read_text():
        return info, decode_segments([playlist])
    return info, decode_segments([folder / uri for uri, _, _ in info.entries])
