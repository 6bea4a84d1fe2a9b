"""Who is being recorded: one entry per participant, with their runs, their HLS writer and their catalog entry.

A participant is a Janus publisher id: the VideoRoom keeps ids unique in a room, display names are not (two
people called "Alex" are two participants, with two folders: a folder is the display name *and* the id,
layout.participant_folder). A rejoin is recognised by its id: a client that joins again with the id it had
(VideoRoom ``join`` with ``id``; janus.js passes it as ``id`` in the join request) continues its folder and
playlist after an ``#EXT-X-DISCONTINUITY``; a client that lets Janus pick a new id is a new participant (a
new folder), since nothing else that Janus gives tells that it is the same person. A *run* is one stretch of
being recorded (join → leave, or resume → pause). A participant none of whose streams can be recorded is
*skipped* (``skip``): listed, with the reason, and nothing else.

Threads: everything here is called by the Recorder on its event loop; the blocking part of ending a run (the
writer closing its segment, draining its encoder, finishing its MP4) runs in a worker thread through
``asyncio.to_thread``. The writer has its own lock against the media threads that feed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from .errors import RecorderError
from .ingest.gate import MediaCounts
from .layout import participant_folder, playlist_key
from .output.catalog import Catalog, CatalogEntry
from .output.mp4 import demuxable_segments, mp4_from_segments
from .output.writer import ParticipantWriter
from .progress import now_iso
from .room.presence import PublishedStream, Publisher

STATUS_COUNTS = ("droppedFrames", "packetsRejected", "packetsLost")  # of MediaCounts, in status.participants[]

#: Builds a participant's writer: (folder, streams, catalog entry, first segment number) -> writer (cut segments
#: go to the catalog).
WriterFactory = Callable[[str, list[PublishedStream], CatalogEntry, int], ParticipantWriter]


class Participant:
    def __init__(self, entry: CatalogEntry, next_index: int = 0):
        self.entry = entry
        self.writer: ParticipantWriter | None = None  # made when they are first recorded by this recorder
        self.next_index = next_index  # the first segment number of this recorder's writer (resume)
        self.active_id: object | None = None  # the publisher id being recorded now; None between runs
        self.stalls = 0  # times the media watchdog forwarded them again
        # frames dropped and packets rejected by the RTP gate, over all their streams (and an earlier recorder's)
        self.media = MediaCounts(entry.record.counts)

    @property
    def record(self):
        return self.entry.record


class Participants:
    def __init__(self, catalog: Catalog, make_writer: WriterFactory, *, media: bool = True):
        """``media=False`` (mode composite): participants have no folder or playlist of their own, and
        ``make_writer`` gives None; their runs are still followed (the manifest says who was there when)."""
        self.catalog = catalog
        self.make_writer = make_writer
        self.media = media
        self._by_key: dict[str, Participant] = {}  # by their first publisher id, as text
        self._by_id: dict[object, str] = {}  # publisher id being recorded -> key
        # every publisher id seen (and earlier runs', resume), as text (a manifest may have them either way) -> key
        self._known_ids: dict[str, str] = {}
        self.next_index: dict[str, int] = {}  # folder -> first free segment number (resume: never write over)
        self.errors: list[RecorderError] = []  # writer failures while ending a run (e.g. disk full)

    def __iter__(self):
        return iter(list(self._by_key.values()))

    def is_recorded(self, pub_id: object) -> bool:
        return pub_id in self._by_id

    def recorded_ids(self) -> list[object]:
        return list(self._by_id)

    def is_known(self, pub_id: object) -> bool:
        return str(pub_id) in self._known_ids

    def ever_recorded(self) -> bool:
        """Someone's run started (and was not taken back: ``drop_run``)."""
        return any(part.record.runs for part in self)

    def stalled(self, pub_id: object) -> None:
        """The media watchdog forwarded ``pub_id`` again (status: ``stalls``)."""
        key = self._known_ids.get(str(pub_id))
        if key is not None:
            self._by_key[key].stalls += 1

    def drop_run(self, pub_id: object) -> None:
        """Take back the run just ended of ``pub_id``: it never got media (Janus did not forward them)."""
        key = self._known_ids.get(str(pub_id))
        if key is not None and self._by_key[key].active_id is None and self._by_key[key].record.runs:
            self._by_key[key].record.runs.pop()

    def any_active(self) -> bool:
        return bool(self._by_id)

    def active_count(self) -> int:
        return len(self._by_id)

    def restore(self, entry: CatalogEntry, next_index: int) -> None:
        """A participant of an earlier run of this recording (resume): who is (or comes back) under one of
        their publisher ids continues their folder, numbering on from ``next_index``."""
        if not entry.record.ids:
            return
        if self.media and entry.record.playlist is None:  # skipped by the earlier run: a playlist if recorded now
            entry.record.playlist = playlist_key(self.catalog.prefix, entry.record.folder)
        key = str(entry.record.ids[0])
        self._by_key.setdefault(key, Participant(entry, next_index))
        for pub_id in entry.record.ids:
            self._known_ids.setdefault(str(pub_id), key)

    def skip(self, pub: Publisher, skipped: list[dict]) -> bool:
        """``skipped`` (``{"kind", "codec", "reason", "message"}``, one per stream not recorded) is what of
        ``pub`` cannot be recorded; the participant's entry lists it (status, manifest). True when this is
        news (a Warning's worth)."""
        part = self._participant(pub)
        if part.record.skipped == skipped:
            return False
        part.record.skipped = skipped
        return bool(skipped)

    def start_run(self, pub: Publisher, streams: list[PublishedStream]) -> Participant:
        """The participant to feed ``pub``'s media into (created on first sight); starts a run if none is open."""
        part = self._participant(pub)
        if part.writer is None:
            part.writer = self.make_writer(part.entry.record.folder, streams, part.entry, part.next_index)
        if part.active_id is None:
            part.active_id = pub.id
            part.record.runs.append({"joinedAt": now_iso(), "leftAt": None})
            self._by_id[pub.id] = self._known_ids[str(pub.id)]
        return part

    def _participant(self, pub: Publisher) -> Participant:
        key = self._known_ids.get(str(pub.id))
        if key is None:
            folder = participant_folder(pub.display, pub.id)
            entry = self.catalog.add_participant(pub.display, folder, media=self.media)
            entry.record.ids.append(pub.id)
            key = self._known_ids[str(pub.id)] = str(pub.id)
            self._by_key[key] = Participant(entry, self.next_index.get(folder, 0))
        return self._by_key[key]

    async def end_run(self, pub_id: object) -> None:
        """``pub_id``'s ingest has stopped (left, or paused): close the run; a later one continues the playlist."""
        part = self._by_key[self._by_id.pop(pub_id)]
        await asyncio.to_thread(self._end, part, final=False)

    async def finish(self, *, interrupted: bool = False) -> None:
        """The recording ends: every writer closes, every playlist ends. ``interrupted``: this recorder ends but
        the recording goes on in a replacement (resume.py): the playlists stay open."""
        self._by_id.clear()
        for part in self:
            await asyncio.to_thread(self._end, part, final=True, end_playlist=not interrupted)

    def rebuild_mp4s(self, spool: Path, read_segment: Callable[[str], bytes],
                     more: tuple[CatalogEntry, ...] = ()) -> None:
        """The MP4s of a resumed recording, built by the recorder that ends it from each participant's (and
        ``more``: the composite's) listed segments (``read_segment``: spool or store), so each covers every
        run. Blocking: a worker thread."""
        for entry in [part.entry for part in self] + list(more):
            if not entry.record.segments:
                continue
            folder = spool / entry.record.folder
            folder.mkdir(parents=True, exist_ok=True)
            info, error = mp4_from_segments(folder / "recording.mp4", demuxable_segments(entry.record, read_segment))
            if info is not None:
                self.catalog.mp4_closed(entry, info)
            elif error is not None:
                self.catalog.mp4_failed(entry, error)

    def _end(self, part: Participant, *, final: bool, end_playlist: bool = True) -> None:
        self._counts(part)
        if part.active_id is not None:
            part.active_id = None
            part.record.runs[-1]["leftAt"] = now_iso()
        try:
            if part.writer is not None and final:
                part.writer.close(hand_over_mp4=end_playlist)
            elif part.writer is not None:
                part.writer.pause()
        except RecorderError as err:
            self.errors.append(err)
        if final and part.writer is not None and part.writer.mp4 is not None and part.writer.mp4.error:
            self.catalog.mp4_failed(part.entry, part.writer.mp4.error)
        if final and end_playlist:
            self.catalog.participant_ended(part.entry)
        else:
            self.catalog.run_ended(part.entry)

    def status(self) -> list[dict]:
        """status.participants: each participant's latest id and run, and their playlist's key."""
        out = []
        for part in self:
            counts = self._counts(part)
            run = part.record.runs[-1] if part.record.runs else {}
            out.append({"id": part.record.ids[-1], "display": part.record.display, "joinedAt": run.get("joinedAt"),
                        "leftAt": run.get("leftAt"),
                        "playlist": part.record.playlist if part.record.runs or part.record.segments else None,
                        **({"skipped": [dict(x) for x in part.record.skipped]} if part.record.skipped else {}),
                        **({"stalls": part.stalls} if part.stalls else {}),
                        **{k: counts[k] for k in STATUS_COUNTS if counts.get(k)}})
        return out

    @staticmethod
    def _counts(part: Participant) -> dict:
        """The gate's counts of ``part``, also put in their manifest record (once they have been recorded)."""
        if not part.record.runs and not part.record.counts:
            return {}
        part.record.counts = part.media.totals()  # replaced whole: the upload workers render it
        return part.record.counts
