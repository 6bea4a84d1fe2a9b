"""manifest.json: the description of one recording, written next to its media."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

FORMAT_VERSION = 1


@dataclass
class SegmentRecord:
    name: str
    key: str
    start: float
    duration: float
    bytes: int
    sha256: str
    discontinuity: bool


@dataclass
class ParticipantRecord:
    display: str
    folder: str
    playlist: str  # object key
    ids: list = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)  # [{"joinedAt": iso, "leftAt": iso | None}]
    segments: list[SegmentRecord] = field(default_factory=list)
    mp4: dict | None = None  # {"key", "bytes", "sha256", "duration"} (outputs: mp4), or {"error": ...}


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
            "participants": [
                {
                    "id": p.ids[0] if p.ids else None,
                    "ids": p.ids,
                    "display": p.display,
                    "folder": p.folder,
                    "playlist": p.playlist,
                    "joins": list(p.runs),
                    **({"mp4": {**p.mp4, **({"location": location_of(p.mp4["key"])} if "key" in p.mp4 else {})}}
                       if p.mp4 else {}),
                    "segments": [
                        {"name": s.name, "key": s.key, "start": round(s.start, 3), "duration": round(s.duration, 3),
                         "bytes": s.bytes, "sha256": s.sha256, "discontinuity": s.discontinuity,
                         "location": location_of(s.key)}
                        for s in list(p.segments)
                    ],
                }
                for p in list(self.participants)
            ],
        }
        return (json.dumps(doc, indent=2) + "\n").encode()
