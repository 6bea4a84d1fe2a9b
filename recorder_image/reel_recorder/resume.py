"""Resuming a recording whose recorder was lost: what the earlier runs stored, read back from the stores.

A replacement recorder (started by the operator when a recorder pod ends before its session was stopped, or
``reel-recorder --resume PREFIX`` by hand) continues the same recording: same recordingId and prefix, each
participant's folder and playlist, segment numbering continuing after an ``#EXT-X-DISCONTINUITY``. The spool
died with the old recorder, so what it knows comes from the stores only:

- the keys under the prefix, in the primary and in the backup (``Store.list_keys``);
- each participant's playlist in each store: the segments stored there, in order, with durations (a playlist
  is re-published right after each stored segment, so it is the freshest list);
- the manifest (stored every ~30 s and at start): display names, publisher ids, joins, pauses, each segment's
  size, SHA-256, start and discontinuity.

A listed segment the manifest does not know yet is read back once for its size and checksum. A segment
stored but never listed (the recorder died between storing it and re-publishing the playlist) is taken over
too: its times come from the manifest, or from its own timestamps (TS segments carry the recording's
timeline). A segment the manifest lists but no store holds was in the dead recorder's spool: it is lost, and
the interruption entry names it. So is the segment each participant recorded at the moment of the loss (the
open one, never closed; "recorded" as far as the last manifest knows, which may be ~30 s old). Numbering
continues after the highest segment number seen anywhere (stored, listed, lost or open), so no stored
object is ever written over — not even by the old recorder, if it is still storing its last segment while
its replacement starts (a force-deleted pod's container lives on for its kill grace period).

fMP4 segments: each listed segment's init segment (``#EXT-X-MAP`` in the playlist, ``init`` in the manifest) is
taken over with it (stored object, size, SHA-256); a segment stored but never listed uses ``init_<its number>.mp4``
when that is stored (it started a run or a new init), else the init of the segment before it. The replacement's
first segment gets an init segment of its own (a new run).

The MP4s of earlier runs are not taken over: the recorder that ends the recording builds each participant's
MP4 from the stored segments (output/mp4.py ``mp4_from_segments``).

``read_back`` runs in a worker thread of the Recorder, before the room is joined; store errors propagate
(StoreError). ``take_over`` then hands what it found to the Recorder.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import av

from reel_api.vocabulary import InterruptionReason

from .layout import COMPOSITE_FOLDER, init_name, manifest_key, segment_name
from .manifest import ManifestData, ParticipantRecord, SegmentRecord, manifest_from_json
from .output.playlist import parse_playlist, playlist_maps
from .progress import now_iso
from .storage import Store, StoreError

if TYPE_CHECKING:
    from .recorder import Recorder

log = logging.getLogger(__name__)

PLAYLIST = "index.m3u8"
_INDEX = re.compile(r"^seg_(\d+)\.[a-z0-9]+$")


@dataclass(frozen=True)
class ResumeRequest:
    """Continue this recording (the operator's REEL_RESUME, or ``--resume PREFIX``)."""

    prefix: str
    recording_id: str | None = None  # None: the one in the stored manifest
    reason: str = InterruptionReason.RECORDER_LOST  # why the earlier recorder ended (PodDeleted, Evicted, ...)
    interrupted_at: str | None = None  # RFC 3339; None: where the stored media ends


@dataclass(frozen=True)
class StoredSegment:
    key: str
    size: int
    sha256: str
    in_primary: bool
    in_backup: bool


@dataclass
class Previous:
    """What earlier runs of a recording left in the stores."""

    manifest: ManifestData | None  # the stored manifest (None: none was stored), participants rebuilt below
    participants: list[ParticipantRecord]  # each folder with a playlist, its stored segments only, in order
    stored: list[StoredSegment]  # every listed segment and where it is
    lost: list[str]  # segment keys the manifest lists that no store holds
    next_index: dict[str, int] = field(default_factory=dict)  # folder -> the next segment number
    composite: ParticipantRecord | None = None  # the composite's folder (mode composite or both), as participants

    @property
    def media_end(self) -> float:
        """Recording time (s) where the stored media ends."""
        folders = self.participants + ([self.composite] if self.composite else [])
        return max((s.start + s.duration for p in folders for s in p.segments), default=0.0)


def segment_index(name: str) -> int | None:
    m = _INDEX.match(name)
    return int(m.group(1)) if m else None


def _keys(store: Store | None, prefix: str) -> set[str]:
    return set(store.list_keys(prefix)) if store is not None else set()


def read_back(primary: Store, backup: Store | None, prefix: str) -> Previous:
    keys_p = _keys(primary, prefix)
    try:
        keys_b = _keys(backup, prefix)
    except StoreError as err:  # the backup may be down; what the primary holds is still worth continuing
        log.warning("resume: cannot list the backup store: %s", err)
        keys_b, backup = set(), None

    def read(key: str) -> bytes | None:
        for store, keys in ((primary, keys_p), (backup, keys_b)):
            if store is not None and key in keys:
                return store.get_bytes(key)
        return None

    raw = read(manifest_key(prefix))
    manifest = manifest_from_json(raw) if raw is not None else None
    records = {p.folder: p for p in (manifest.participants if manifest else [])}
    if manifest is not None and manifest.composite is not None:
        records[COMPOSITE_FOLDER] = manifest.composite
    known = {s.key: s for p in records.values() for s in p.segments}
    paused = bool(manifest and manifest.pauses and manifest.pauses[-1].get("resumedAt") is None)
    lost_open: list[str] = []

    folders = sorted({k[len(prefix):].split("/", 1)[0] for k in keys_p | keys_b if "/" in k[len(prefix):]})

    def recording_at_loss(folder: str) -> bool:
        """As far as the last manifest knows (a folder it does not know yet was started after it)."""
        if paused:
            return False
        if folder == COMPOSITE_FOLDER:  # the composite runs while anyone is recorded
            return any(recording_at_loss(f) for f in folders if f != COMPOSITE_FOLDER)
        record = records.get(folder)
        return record is None or bool(record.runs and record.runs[-1].get("leftAt") is None)

    participants: list[ParticipantRecord] = []
    composite: ParticipantRecord | None = None
    stored: list[StoredSegment] = []
    next_index: dict[str, int] = {}
    for folder in folders:
        base = f"{prefix}{folder}/"
        playlist_key = base + PLAYLIST
        listed: dict[str, tuple[float, bool]] = {}
        maps: dict[str, str] = {}  # fMP4: segment name -> its init segment's name
        for store, keys in ((backup, keys_b), (primary, keys_p)):  # the primary's flags win
            if store is not None and playlist_key in keys:
                text = store.get_bytes(playlist_key).decode()
                for uri, duration, disc in parse_playlist(text):
                    listed[uri] = (duration, disc)
                maps.update(playlist_maps(text))
        names = {k[len(base):] for k in keys_p | keys_b if k.startswith(base)}
        seen = [segment_index(n) for n in names]
        seen += [segment_index(s.name) for s in (records[folder].segments if folder in records else [])]
        next_index[folder] = 1 + max((i for i in seen if i is not None), default=-1)
        record = records.get(folder)
        if recording_at_loss(folder):
            # being recorded at the loss: the open segment died with the spool; its number is never reused
            lost_open.append(base + segment_name(next_index[folder]))
            next_index[folder] += 1
        unlisted = {n for n in names if segment_index(n) is not None and n not in listed}
        if not listed and not unlisted:
            continue
        if record is None and folder == COMPOSITE_FOLDER:
            record = ParticipantRecord(display=COMPOSITE_FOLDER, folder=folder, playlist=playlist_key)
        elif record is None:  # joined after the last manifest: the folder is "<display>_<publisher id>" (layout.py)
            display, _, pub_id = folder.rpartition("_")
            record = ParticipantRecord(display=display or folder, folder=folder, playlist=playlist_key,
                                       ids=[int(pub_id) if pub_id.isdigit() else pub_id])
        segments: list[SegmentRecord] = []
        for name in sorted((n for n in listed.keys() | unlisted if segment_index(n) is not None), key=segment_index):
            key = base + name
            in_p, in_b = key in keys_p, key in keys_b
            if not (in_p or in_b):
                continue  # a playlist never lists a segment its store lacks; be safe anyway
            rec = known.get(key)
            init = (rec.init if rec is not None else None) or maps.get(name)
            if init is None and name.endswith(".m4s"):  # never listed: its run's first, or after one
                own = init_name(segment_index(name))
                init = own if base + own in keys_p | keys_b else segments[-1].init if segments else None
            if rec is None:  # stored after the last manifest: read it back once
                data = read(key)
                if name in listed:
                    duration, disc = listed[name]
                    start = segments[-1].start + segments[-1].duration if segments else 0.0
                else:  # never listed either: its own timestamps tell where it belongs
                    times = ts_times(data, read(base + init) if init else None)
                    if times is None:
                        log.warning("resume: %s is stored but neither listed nor readable: left out", key)
                        continue
                    (start, duration), disc = times, False
                rec = SegmentRecord(name=name, key=key, start=start, duration=duration, bytes=len(data),
                                    sha256=hashlib.sha256(data).hexdigest(), discontinuity=disc)
            if init is not None and base + init not in keys_p | keys_b:
                log.warning("resume: %s needs %s, which no store holds: left out", key, init)
                continue
            rec = replace(rec, init=init)
            if segments and segment_index(name) != segment_index(segments[-1].name) + 1 and not rec.discontinuity:
                rec = replace(rec, discontinuity=True)  # a segment is missing before it: the timeline jumps
            segments.append(rec)
            stored.append(StoredSegment(key, rec.bytes, rec.sha256, in_p, in_b))
        record.segments = segments
        record.inits = _inits(record, segments, base, keys_p, keys_b, read, stored)
        record.mp4 = None  # rebuilt from the segments by the recorder that ends the recording
        if folder == COMPOSITE_FOLDER:
            composite = record
        else:
            participants.append(record)
    for folder, record in records.items():  # in the manifest, nothing stored: every segment lost, or none made
        if folder not in folders:  # (mode composite: participants have no folder; the manifest says who was there)
            seen = [segment_index(s.name) for s in record.segments]
            next_index[folder] = 1 + max((i for i in seen if i is not None), default=-1)
            record.segments, record.mp4, record.inits = [], None, []
            if folder == COMPOSITE_FOLDER:
                composite = record
            else:
                participants.append(record)
    lost = sorted(k for k in known if k not in keys_p and k not in keys_b) + lost_open
    return Previous(manifest, participants, stored, lost, next_index, composite)


def _inits(record: ParticipantRecord, segments: list[SegmentRecord], base: str, keys_p: set[str],
           keys_b: set[str], read, stored: list[StoredSegment]) -> list[dict]:
    """The init segments ``segments`` need, taken over as stored (the manifest's size and checksum, or read back
    once), in order of first use."""
    known = {i["name"]: i for i in record.inits}
    out: list[dict] = []
    for name in dict.fromkeys(s.init for s in segments if s.init):
        key = base + name
        entry = known.get(name)
        if entry is None:
            data = read(key)
            entry = {"name": name, "key": key, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        out.append(entry)
        stored.append(StoredSegment(key, entry["bytes"], entry["sha256"], key in keys_p, key in keys_b))
    return out


def ts_times(data: bytes, init: bytes | None = None) -> tuple[float, float] | None:
    """(start, duration) in recording time of a segment written by output/writer.py (its timestamps are the
    recording's timeline): TS, or fMP4 after its ``init`` segment; None when it cannot be read."""
    try:
        with av.open(io.BytesIO(init + data if init else data), "r", format="mp4" if init else "mpegts") as ts:
            spans = [(float(p.pts * p.time_base), float((p.pts + (p.duration or 0)) * p.time_base))
                     for p in ts.demux() if p.pts is not None and p.size]
    except (av.FFmpegError, ValueError):
        return None
    if not spans:
        return None
    start = min(a for a, _ in spans)
    return start, max(b for _, b in spans) - start


def take_over(rec: Recorder, previous: Previous, request: ResumeRequest) -> None:
    """The Recorder ``rec`` takes over what earlier runs stored (``previous``, read back): their manifest,
    segments, playlists and numbering; its clock continues their timeline; the interruption is recorded (when,
    why, which segments were lost). Runs on the Recorder's event loop, before the room is joined."""
    m, earlier = rec.manifest, previous.manifest
    if earlier is not None:
        m.started_at, m.pauses, m.interruptions = earlier.started_at, earlier.pauses, earlier.interruptions
        m.disk_full = rec._disk_full_before = list(earlier.disk_full)
        m.room_gaps = earlier.room_gaps
        rec.recording_id = m.recording_id = earlier.recording_id or rec.recording_id
    started = _parse_time(m.started_at)
    interrupted_at = request.interrupted_at or _iso(started.timestamp() + previous.media_end)
    if m.pauses and m.pauses[-1].get("resumedAt") is None:
        m.pauses[-1]["resumedAt"] = interrupted_at
    for stored in previous.stored:
        rec.uploader.adopt_stored(stored.key, size=stored.size, sha256=stored.sha256,
                                   in_primary=stored.in_primary, in_backup=stored.in_backup)
    for record in previous.participants:
        for run in record.runs:
            if run.get("leftAt") is None:
                run["leftAt"] = interrupted_at
        rec.participants.restore(rec.catalog.restore(record), previous.next_index.get(record.folder, 0))
    rec.participants.next_index.update(previous.next_index)
    if previous.composite is not None:
        rec.outputs.composite_from = (previous.composite, previous.next_index.get(COMPOSITE_FOLDER, 0))
    m.interruptions.append({"interruptedAt": interrupted_at, "reason": request.reason,
                            "resumedAt": now_iso(), "lostSegments": list(previous.lost)})
    # recording time (segment starts, TS timestamps) continues the earlier runs' timeline
    rec.clock.origin = time.monotonic() - (datetime.now(UTC) - started).total_seconds()
    log.warning("resuming recording %s at %s: %d stored segment(s) taken over, %d lost (%s)", rec.recording_id,
                rec.prefix, len(previous.stored), len(previous.lost), request.reason)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
