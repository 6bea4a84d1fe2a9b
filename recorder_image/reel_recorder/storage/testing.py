"""A synthetic recording for tests and benchmarks of the storage layer (no media pipeline needed).

It plays the recorder's part of the Uploader contract: writes segment files into a spool folder, hands them
to ``Uploader.segment_closed``, keeps a playlist model per participant and a manifest, and supplies the
``render`` callables. Segment bytes are random, so checksums mean something.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SyntheticSegment:
    key: str
    name: str
    participant: str
    duration: float
    size: int
    sha256: str


@dataclass
class _Participant:
    name: str
    segments: list[SyntheticSegment] = field(default_factory=list)
    ended: bool = False


class SyntheticRecording:
    def __init__(self, spool: Path, prefix: str = "rec/", participants=("alice", "bob"), *,
                 segment_bytes: int = 64 * 1024, segment_seconds: float = 4.0, seed: int = 1) -> None:
        self.spool = Path(spool)
        self.spool.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self._rand = random.Random(seed)
        self._lock = threading.Lock()
        self.participants = {p: _Participant(p) for p in participants}
        self.segments: dict[str, SyntheticSegment] = {}
        self.ended = False

    def playlist_key(self, participant: str) -> str:
        return f"{self.prefix}{participant}/index.m3u8"

    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}manifest.json"

    # -- the recorder side ----------------------------------------------------------------------------------

    def write_segment(self, participant: str, size: int | None = None) -> tuple[str, Path, int, str]:
        """Write the next segment of ``participant`` into the spool; returns (key, path, size, sha256)."""
        with self._lock:
            p = self.participants[participant]
            n = len(p.segments)
            name = f"seg{n:05d}.ts"
            key = f"{self.prefix}{participant}/{name}"
            size = self.segment_bytes if size is None else size
            data = self._rand.randbytes(size)
        path = self.spool / participant / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        sha = hashlib.sha256(data).hexdigest()
        seg = SyntheticSegment(key, name, participant, self.segment_seconds, size, sha)
        with self._lock:
            p.segments.append(seg)
            self.segments[key] = seg
        return key, path, size, sha

    def close_segment(self, uploader, participant: str, size: int | None = None) -> str:
        """Write a segment and tell the uploader, as the recorder does when a segment closes."""
        key, path, size, sha = self.write_segment(participant, size)
        uploader.segment_closed(key, path, size=size, sha256=sha)
        uploader.playlist_updated(self.playlist_key(participant), self.playlist_renderer(participant))
        uploader.manifest_updated(self.manifest_key, self.render_manifest)
        return key

    def end(self, uploader) -> None:
        """Stop: every playlist gets #EXT-X-ENDLIST, the manifest says ended."""
        with self._lock:
            self.ended = True
            for p in self.participants.values():
                p.ended = True
        for name in self.participants:
            uploader.playlist_updated(self.playlist_key(name), self.playlist_renderer(name))
        uploader.manifest_updated(self.manifest_key, self.render_manifest)

    # -- renders --------------------------------------------------------------------------------------------

    def playlist_renderer(self, participant: str):
        def render(is_stored) -> str:
            with self._lock:
                p = self.participants[participant]
                segments = list(p.segments)
                ended = p.ended
            lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{round(self.segment_seconds)}",
                     "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:EVENT"]
            listed = 0
            for seg in segments:
                if is_stored(seg.key):
                    lines.append(f"#EXTINF:{seg.duration:.3f},")
                    lines.append(seg.name)
                    listed += 1
            if ended and listed == len(segments):
                lines.append("#EXT-X-ENDLIST")
            return "\n".join(lines) + "\n"

        return render

    def render_manifest(self, location_of) -> bytes:
        with self._lock:
            segs = list(self.segments.values())
            ended = self.ended
        doc = {
            "version": 1,
            "ended": ended,
            "segments": [{"key": s.key, "participant": s.participant, "bytes": s.size, "sha256": s.sha256,
                          "duration": s.duration, "location": location_of(s.key)} for s in segs],
        }
        return json.dumps(doc, indent=1).encode()


def playlist_entries(text: str) -> list[str]:
    """The segment names a playlist lists."""
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
