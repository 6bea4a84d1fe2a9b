"""The recording's catalog: each participant's playlist and the manifest, kept up to date as segments close.

The HLS writers produce segment files and know nothing about playlists or keys; the catalog turns each
closed segment into a manifest record and a playlist entry, names its object key (layout.py, the one place
keys are made) and hands file, playlist and manifest to the uploader, which decides when each may be stored.

Who calls what:
- ``segment_closed`` and ``mp4_closed``: a participant's HLS writer, from a media thread (or from the
  thread that closes the writer), with that writer's lock held. Appends only.
- ``add_participant``, ``participant_ended``, ``run_ended``, ``publish_manifest``: the Recorder (event loop, or a
  worker thread of it while it closes a writer).
- The uploader's workers call ``Playlist.render`` and ``ManifestData.render`` at any time: both read lists that
  are only ever appended to, by copying them first (CPython's list append and copy are atomic), so the
  catalog needs no lock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..layout import COMPOSITE_FOLDER, folder_key, manifest_key, mp4_key, playlist_key
from ..manifest import ManifestData, ParticipantRecord, SegmentRecord
from .playlist import Playlist, PlaylistEntry

if TYPE_CHECKING:
    from .mp4 import Mp4Info
    from .writer import SegmentInfo


class DocumentSink(Protocol):
    """What the catalog hands its files and documents to (storage.Uploader)."""

    def segment_closed(self, key: str, path, *, size: int, sha256: str) -> None: ...
    def playlist_updated(self, key: str, render) -> None: ...
    def manifest_updated(self, key: str, render) -> None: ...


@dataclass(eq=False)
class CatalogEntry:
    """One participant's part of the catalog: their manifest record and their playlist."""

    record: ParticipantRecord
    playlist: Playlist


class Catalog:
    def __init__(self, manifest: ManifestData, uploader: DocumentSink, *, segment_seconds: float):
        self.manifest = manifest
        self.uploader = uploader
        self.prefix = manifest.prefix
        self.manifest_key = manifest_key(self.prefix)
        self.target_duration = int(segment_seconds) + 1

    def add_participant(self, display: str, folder: str, *, media: bool = True) -> CatalogEntry:
        """A new participant folder: an empty playlist (stored once it lists a segment) and a manifest entry.
        ``media=False`` (mode composite): a manifest entry only (who, when); their media is in the composite."""
        record = ParticipantRecord(display=display, folder=folder,
                                   playlist=playlist_key(self.prefix, folder) if media else None)
        entry = CatalogEntry(record, Playlist(target_duration=self.target_duration))
        self.manifest.participants.append(record)
        self._publish(entry)
        return entry

    def add_composite(self) -> CatalogEntry:
        """The composite's folder (mode composite or both): a playlist and a manifest entry like a participant's,
        kept apart from the participants (``manifest.composite``)."""
        record = ParticipantRecord(display=COMPOSITE_FOLDER, folder=COMPOSITE_FOLDER,
                                   playlist=playlist_key(self.prefix, COMPOSITE_FOLDER))
        entry = CatalogEntry(record, Playlist(target_duration=self.target_duration))
        self.manifest.composite = record
        self._publish(entry)
        return entry

    def restore(self, record: ParticipantRecord) -> CatalogEntry:
        """A participant (or the composite) of an earlier run (resume.py): their record (stored segments only)
        back in the manifest and their playlist rebuilt from it; the uploader already knows those segments as
        stored."""
        entry = CatalogEntry(record, Playlist(target_duration=self.target_duration))
        for s in record.segments:
            init_key = folder_key(self.prefix, record.folder, s.init) if s.init else None
            entry.playlist.add(PlaylistEntry(uri=s.name, key=s.key, duration=s.duration, discontinuity=s.discontinuity,
                                             map_uri=s.init, map_key=init_key))
        if record.folder == COMPOSITE_FOLDER:
            self.manifest.composite = record
        else:
            self.manifest.participants.append(record)
        self._publish(entry)
        return entry

    def segment_closed(self, entry: CatalogEntry, info: SegmentInfo) -> None:
        """A segment file is complete in the spool: list it, and let the uploader store it. An fMP4 segment's
        init segment, when it is the first to need it, is stored first and listed in the manifest (checksum);
        the playlist lists the segment once both are stored."""
        key = folder_key(self.prefix, entry.record.folder, info.name)
        init = info.init
        map_key = folder_key(self.prefix, entry.record.folder, init.name) if init is not None else None
        if init is not None and init.new:
            entry.record.inits.append({"name": init.name, "key": map_key, "bytes": init.size, "sha256": init.sha256})
            self.uploader.segment_closed(map_key, init.path, size=init.size, sha256=init.sha256)
        entry.playlist.add(PlaylistEntry(uri=info.name, key=key, duration=info.duration,
                                         discontinuity=info.discontinuity,
                                         map_uri=init.name if init is not None else None, map_key=map_key))
        entry.record.segments.append(SegmentRecord(name=info.name, key=key, start=info.start, duration=info.duration,
                                                   bytes=info.size, sha256=info.sha256,
                                                   discontinuity=info.discontinuity,
                                                   init=init.name if init is not None else None))
        self.uploader.segment_closed(key, info.path, size=info.size, sha256=info.sha256)
        self._publish(entry)

    def mp4_closed(self, entry: CatalogEntry, info: Mp4Info) -> None:
        """The participant's MP4 is complete: into the manifest (with its checksum) and to the uploader. Called
        once per participant, by the recorder that ends the recording (the writer's, or ``rebuild_mp4``'s)."""
        key = mp4_key(self.prefix, entry.record.folder)
        entry.record.mp4 = {"key": key, "bytes": info.size, "sha256": info.sha256, "duration": round(info.duration, 3)}
        self.uploader.segment_closed(key, info.path, size=info.size, sha256=info.sha256)

    def mp4_failed(self, entry: CatalogEntry, error: str) -> None:
        entry.record.mp4 = {"error": error}

    def run_ended(self, entry: CatalogEntry) -> None:
        """The participant left (or the recording paused): their playlist is re-published as it stands."""
        self._publish(entry)

    def participant_ended(self, entry: CatalogEntry) -> None:
        """The recording ended for this participant: their playlist gets ``#EXT-X-ENDLIST``."""
        entry.playlist.ended = True
        self._publish(entry)

    def _publish(self, entry: CatalogEntry) -> None:
        if entry.record.playlist is not None:
            self.uploader.playlist_updated(entry.record.playlist, entry.playlist.render)

    def publish_manifest(self) -> None:
        """The manifest changed (start, stop): the uploader stores its next version."""
        self.uploader.manifest_updated(self.manifest_key, self.manifest.render)
