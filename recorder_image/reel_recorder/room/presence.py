"""Who is publishing in the room, from the VideoRoom join reply and events. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PublishedStream:
    mid: str
    kind: str  # "audio" | "video" | "data"
    codec: str | None
    disabled: bool = False


@dataclass
class Publisher:
    id: int | str
    display: str
    streams: dict[str, PublishedStream] = field(default_factory=dict)

    def active_streams(self) -> list[PublishedStream]:
        return [s for s in self.streams.values() if not s.disabled and s.kind in ("audio", "video")]


def _publisher(entry: dict) -> Publisher:
    streams = {}
    for s in entry.get("streams", []):
        mid = str(s.get("mid"))
        streams[mid] = PublishedStream(mid=mid, kind=s.get("type", ""), codec=s.get("codec"),
                                       disabled=bool(s.get("disabled", False)))
    return Publisher(id=entry["id"], display=str(entry.get("display") or entry["id"]), streams=streams)


@dataclass(frozen=True)
class Up:
    """A publisher appeared or changed what it publishes."""

    publisher: Publisher


@dataclass(frozen=True)
class Down:
    """A publisher stopped publishing or left."""

    id: int | str


class Presence:
    def __init__(self, own_id: int | str | None = None):
        self.own_id = own_id
        self.publishers: dict[int | str, Publisher] = {}

    def apply(self, data: dict) -> list[Up | Down]:
        """Apply a 'joined' reply or an 'event'; returns the changes it implies."""
        changes: list[Up | Down] = []
        for entry in data.get("publishers", []) or []:
            if entry.get("id") == self.own_id or "id" not in entry:
                continue
            pub = _publisher(entry)
            if not pub.active_streams():
                if pub.id in self.publishers:
                    del self.publishers[pub.id]
                    changes.append(Down(pub.id))
                continue
            self.publishers[pub.id] = pub
            changes.append(Up(pub))
        for key in ("unpublished", "leaving"):
            gone = data.get(key)
            if gone is None or gone == "ok" or gone == self.own_id:
                continue
            if gone in self.publishers:
                del self.publishers[gone]
                changes.append(Down(gone))
        return changes


def select_streams(pub: Publisher, *, stream_types: str, subscribe: list[str], unsubscribe: list[str]
                   ) -> list[PublishedStream]:
    """The streams of ``pub`` this session records (streamTypes, subscribe / unsubscribe lists)."""
    names = {str(pub.id), pub.display}
    if subscribe and not names & set(subscribe):
        return []
    if names & set(unsubscribe):
        return []
    kinds = {"audio": {"audio"}, "video": {"video"}, "audioVideo": {"audio", "video"}}[stream_types]
    chosen: dict[str, PublishedStream] = {}
    for s in pub.active_streams():
        if s.kind in kinds and s.kind not in chosen:  # one stream per kind (no simulcast layers/screens yet)
            chosen[s.kind] = s
    return list(chosen.values())
