"""manifest.json: the description of one recording, written next to its media."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

FORMAT_VERSION = 1
COUNT_KEYS = ("droppedFrames", "incompleteFrames", "packetsRejected", "packetsLost")  # per participant
COMPOSITE_STAT_KEYS = ("frames", "droppedFrames", "latePictures")  # the composite's (composite/recording.py stats)


@dataclass
class SegmentRecord:
    name: str
    key: str
    start: float
    duration: float
    bytes: int
    sha256: str
    discontinuity: bool
    init: str | None = None  # fMP4: the name of its init segment (one of the folder's ``inits``)


@dataclass
class ParticipantRecord:
    display: str
    folder: str
    playlist: str | None  # object key; None: no media of their own (mode composite)
    ids: list = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)  # [{"joinedAt": iso, "leftAt": iso | None}]
    segments: list[SegmentRecord] = field(default_factory=list)
    mp4: dict | None = None  # {"key", "bytes", "sha256", "duration"} (outputs: mp4), or {"error": ...}
    # what of them could not be recorded (outputs.py): [{"kind", "codec", "reason", "message"}]
    skipped: list[dict] = field(default_factory=list)
    # fMP4: the init segments (#EXT-X-MAP) of the folder's segments: [{"name", "key", "bytes", "sha256"}]
    inits: list[dict] = field(default_factory=list)
    # what the RTP gate kept out (ingest/gate.py MediaCounts): {"droppedFrames", "incompleteFrames",
    # "packetsRejected", "packetsLost"}; empty until they are recorded
    counts: dict = field(default_factory=dict)


@dataclass
class ManifestData:
    session: dict
    tag: str | None
    room: dict
    recording_id: str
    prefix: str
    started_at: str
    stopped_at: str | None = None
    stop_reason: str | None = None
    message: str | None = None
    participants: list[ParticipantRecord] = field(default_factory=list)
    pauses: list[dict] = field(default_factory=list)  # [{"pausedAt": iso, "resumedAt": iso | None}]
    # a recorder lost mid-recording, and the run that continued it (resume.py):
    # [{"interruptedAt": iso, "reason": str, "resumedAt": iso, "lostSegments": [key, ...]}]
    interruptions: list[dict] = field(default_factory=list)
    # the spool was full (storage/spool.py): new media not recorded, unstored segments kept:
    # [{"since": iso, "until": iso | None, "droppedSegments": n, "droppedSeconds": s}]
    disk_full: list[dict] = field(default_factory=list)
    # the connection to Janus lost while recording, and regained (room/reconnect.py); reconnectedAt None: never:
    # [{"lostAt": iso, "reconnectedAt": iso | None, "error": str}]
    room_gaps: list[dict] = field(default_factory=list)
    composite: ParticipantRecord | None = None  # the whole meeting (mode composite or both): folder "composite"
    composite_stats: dict = field(default_factory=dict)  # COMPOSITE_STAT_KEYS of the composite (recording.stats)

    def render(self, location_of: Callable[[str], str | None] = lambda _k: None) -> bytes:
        doc = {
            "formatVersion": FORMAT_VERSION,
            "session": self.session,
            "tag": self.tag,
            "room": self.room,
            "recordingId": self.recording_id,
            "prefix": self.prefix,
            "startedAt": self.started_at,
            "stoppedAt": self.stopped_at,
            "stopReason": self.stop_reason,
            "message": self.message,
            "pauses": [dict(p) for p in self.pauses],
            "interruptions": [dict(i) for i in self.interruptions],
            "diskFull": [dict(d) for d in self.disk_full],
            "roomGaps": [dict(g) for g in self.room_gaps],
            "participants": [
                {
                    "id": p.ids[0] if p.ids else None,
                    "ids": p.ids,
                    "display": p.display,
                    "folder": p.folder,
                    "playlist": p.playlist if p.runs or p.segments else None,  # None: never recorded (skipped)
                    "joins": list(p.runs),
                    **({"skipped": [dict(x) for x in p.skipped]} if p.skipped else {}),
                    **dict(p.counts),
                    **_media(p, location_of),
                }
                for p in list(self.participants)
            ],
        }
        if self.composite is not None:
            doc["composite"] = {"folder": self.composite.folder, "playlist": self.composite.playlist,
                                **dict(self.composite_stats), **_media(self.composite, location_of)}
        return (json.dumps(doc, indent=2) + "\n").encode()


def _media(p: ParticipantRecord, location_of: Callable[[str], str | None]) -> dict:
    """A folder's MP4 and segments, each with where it is stored."""
    return {
        **({"mp4": {**p.mp4, **({"location": location_of(p.mp4["key"])} if "key" in p.mp4 else {})}}
           if p.mp4 else {}),
        **({"inits": [{**i, "location": location_of(i["key"])} for i in list(p.inits)]} if p.inits else {}),
        "segments": [
            {"name": s.name, "key": s.key, "start": round(s.start, 3), "duration": round(s.duration, 3),
             "bytes": s.bytes, "sha256": s.sha256, "discontinuity": s.discontinuity, "location": location_of(s.key),
             **({"init": s.init} if s.init else {})}
            for s in list(p.segments)
        ],
    }


def manifest_from_json(data: bytes | str) -> ManifestData:
    """A stored manifest.json read back (a resumed recording continues it). Raises ValueError when it is not one."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("formatVersion") != FORMAT_VERSION:
        raise ValueError(f"not a Reel manifest of format version {FORMAT_VERSION}")
    def record(p: dict, display: str) -> ParticipantRecord:
        r = ParticipantRecord(display=display, folder=p["folder"], playlist=p["playlist"],
                              ids=list(p.get("ids") or []), runs=[dict(r) for r in p.get("joins") or []],
                              skipped=[dict(x) for x in p.get("skipped") or []],
                              counts={k: int(p[k]) for k in COUNT_KEYS if isinstance(p.get(k), int)},
                              mp4=({k: v for k, v in p["mp4"].items() if k != "location"} if p.get("mp4") else None))
        for s in p.get("segments") or []:
            r.segments.append(SegmentRecord(name=s["name"], key=s["key"], start=float(s["start"]),
                                            duration=float(s["duration"]), bytes=int(s["bytes"]),
                                            sha256=s["sha256"], discontinuity=bool(s.get("discontinuity")),
                                            init=s.get("init")))
        r.inits = [{k: i[k] for k in ("name", "key", "bytes", "sha256")} for i in p.get("inits") or []]
        return r

    participants = [record(p, p["display"]) for p in doc.get("participants") or []]
    composite = doc.get("composite")
    return ManifestData(session=doc.get("session") or {}, tag=doc.get("tag"), room=doc.get("room") or {},
                        recording_id=doc["recordingId"], prefix=doc["prefix"], started_at=doc["startedAt"],
                        stopped_at=doc.get("stoppedAt"), stop_reason=doc.get("stopReason"),
                        message=doc.get("message"), participants=participants,
                        pauses=[dict(x) for x in doc.get("pauses") or []],
                        interruptions=[dict(x) for x in doc.get("interruptions") or []],
                        disk_full=[dict(x) for x in doc.get("diskFull") or []],
                        room_gaps=[dict(x) for x in doc.get("roomGaps") or []],
                        composite=record(composite, "composite") if composite else None,
                        composite_stats={k: composite[k] for k in COMPOSITE_STAT_KEYS if k in composite}
                        if composite else {})
