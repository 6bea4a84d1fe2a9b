"""A synthetic recording for the storage tests and benchmarks: no media, but the recorder's own catalog.

Segments are random bytes (so checksums mean something) written into a spool folder with the recorder's own
names; each is handed to the product's ``Catalog`` exactly as an HLS writer hands a closed segment, so the
playlists and the manifest that reach the stores are the product's (output/playlist.py, manifest.py), with the
product's keys (layout.py). Only the media is made up.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

from reel_recorder.layout import folder_key, participant_folder, playlist_key, segment_name
from reel_recorder.manifest import ManifestData
from reel_recorder.output.catalog import Catalog, CatalogEntry
from reel_recorder.output.writer import SegmentInfo
from reel_recorder.progress import now_iso


@dataclass(frozen=True)
class SyntheticSegment:
    key: str
    name: str
    participant: str
    duration: float
    size: int
    sha256: str
    info: SegmentInfo


@dataclass
class _Participant:
    name: str
    folder: str
    segments: list[SyntheticSegment] = field(default_factory=list)
    entry: CatalogEntry | None = None


class _Sink:
    """The catalog's uploader: whichever uploader the current call names (tests pass it per call)."""

    def __init__(self) -> None:
        self.target = None

    def segment_closed(self, *args, **kwargs):
        self.target.segment_closed(*args, **kwargs)

    def playlist_updated(self, *args, **kwargs):
        self.target.playlist_updated(*args, **kwargs)

    def manifest_updated(self, *args, **kwargs):
        self.target.manifest_updated(*args, **kwargs)


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
        self.participants = {p: _Participant(p, participant_folder(p, i + 1)) for i, p in enumerate(participants)}
        self.segments: dict[str, SyntheticSegment] = {}
        self.manifest = ManifestData(session={"name": "synthetic", "namespace": "tests"}, tag=None,
                                     room={"server": "ws://janus.invalid:8188", "id": 1},
                                     recording_id="synthetic", prefix=prefix, started_at=now_iso())
        self._sink = _Sink()
        self.catalog = Catalog(self.manifest, self._sink, segment_seconds=segment_seconds)
        self._started = False

    # -- keys, as the recorder makes them -----------------------------------------------------------------
    def playlist_key(self, participant: str) -> str:
        return playlist_key(self.prefix, self.participants[participant].folder)

    def key(self, participant: str, name: str) -> str:
        return folder_key(self.prefix, self.participants[participant].folder, name)

    @property
    def manifest_key(self) -> str:
        return self.catalog.manifest_key

    # -- the recorder's side ------------------------------------------------------------------------------
    def write_segment(self, participant: str, size: int | None = None) -> SyntheticSegment:
        """Write the next segment of ``participant`` into the spool (not yet announced)."""
        with self._lock:
            p = self.participants[participant]
            n = len(p.segments)
            size = self.segment_bytes if size is None else size
            data = self._rand.randbytes(size)
            name = segment_name(n)
            path = self.spool / p.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            info = SegmentInfo(participant=p.folder, index=n, name=name, path=path, start=n * self.segment_seconds,
                               duration=self.segment_seconds, size=size, sha256=hashlib.sha256(data).hexdigest(),
                               discontinuity=False, has_video=True, has_audio=True)
            seg = SyntheticSegment(self.key(participant, name), name, participant, self.segment_seconds, size,
                                   info.sha256, info)
            p.segments.append(seg)
            self.segments[seg.key] = seg
            return seg

    def announce(self, uploader, seg: SyntheticSegment) -> str:
        """Hand a written segment to the catalog, as an HLS writer does when it closes one."""
        with self._lock:
            self._sink.target = uploader
            if not self._started:  # the recorder publishes the manifest when it starts
                self._started = True
                self.catalog.publish_manifest()
            p = self.participants[seg.participant]
            if p.entry is None:  # a participant's folder and playlist appear with their first media
                p.entry = self.catalog.add_participant(p.name, p.folder)
                p.entry.record.ids.append(p.folder.rsplit("_", 1)[1])  # as the recorder: who, and since when
                p.entry.record.runs.append({"joinedAt": now_iso(), "leftAt": None})
            self.catalog.segment_closed(p.entry, seg.info)
        return seg.key

    def close_segment(self, uploader, participant: str, size: int | None = None) -> str:
        """Write a segment and announce it; returns its key."""
        return self.announce(uploader, self.write_segment(participant, size))

    def end(self, uploader) -> None:
        """Stop, as the recorder does: every playlist gets #EXT-X-ENDLIST, the manifest its stop time."""
        with self._lock:
            self._sink.target = uploader
            self.manifest.stopped_at = now_iso()
            self.manifest.stop_reason = "Requested"
            for p in self.participants.values():
                if p.entry is not None:
                    p.entry.record.runs[-1]["leftAt"] = now_iso()
                    self.catalog.participant_ended(p.entry)
            self.catalog.publish_manifest()


def playlist_entries(text: str) -> list[str]:
    """The segment names a playlist lists."""
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def manifest_segments(manifest: dict) -> list[dict]:
    """Every segment a manifest lists, over all participants."""
    return [s for p in manifest["participants"] for s in p["segments"]]
