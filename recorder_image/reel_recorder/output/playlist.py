"""HLS media playlists (RFC 8216) for one participant: the model, and its text as one store sees it.

TS segments: version 3. fMP4 segments: version 7, each segment's init segment named by an ``#EXT-X-MAP`` before
the first segment that needs it (and again wherever the init changes: a new run, new parameter sets)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class PlaylistEntry:
    uri: str  # relative to the playlist
    key: str  # object key, used to ask whether the segment is stored yet
    duration: float
    discontinuity: bool = False
    map_uri: str | None = None  # fMP4: the init segment it needs (relative to the playlist)
    map_key: str | None = None  # ... and its object key: the segment is listed only once both are stored


#: The playlist version: 3 for TS segments, 7 for fMP4 (EXT-X-MAP needs 6 without I-frame playlists; CMAF: 7).
VERSION_TS, VERSION_FMP4 = 3, 7


@dataclass
class Playlist:
    target_duration: int
    entries: list[PlaylistEntry] = field(default_factory=list)
    ended: bool = False

    def add(self, entry: PlaylistEntry) -> None:
        self.entries.append(entry)

    def render(self, is_stored: Callable[[str], bool] = lambda _key: True) -> str:
        """The playlist of the segments a store holds: the entries ``is_stored`` accepts, in order.

        ``is_stored`` is asked about every entry, in playlist order. An entry listed after one that was left
        out starts with ``#EXT-X-DISCONTINUITY`` (its store misses what came before it). The uploader's
        predicate for the primary store is prefix-closed (storage/documents.py): there the playlist is the
        longest stored prefix and only grows at its end; a backup store, which holds a sparse subset, gets a
        playlist of what it holds. ``#EXT-X-ENDLIST`` only when the recording of this participant has ended
        and every segment is listed, so a player reading the bucket never meets a missing segment or a false end.
        """
        ended = self.ended  # read before the entries: once ended, no entry is added
        entries = list(self.entries)  # a writer may append meanwhile
        listed: list[PlaylistEntry] = []
        skipped = False
        for entry in entries:
            if (entry.map_key is not None and not is_stored(entry.map_key)) or not is_stored(entry.key):
                skipped = True
                continue
            if skipped and listed and not entry.discontinuity:
                entry = replace(entry, discontinuity=True)
            skipped = False
            listed.append(entry)
        longest = max((e.duration for e in entries), default=0.0)
        version = VERSION_FMP4 if any(e.map_uri is not None for e in entries) else VERSION_TS
        target = max(self.target_duration, math.floor(longest + 0.5))  # RFC 8216: EXTINF rounded ≤ target
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{version}",
            f"#EXT-X-TARGETDURATION:{target}",
            "#EXT-X-MEDIA-SEQUENCE:0",
            "#EXT-X-PLAYLIST-TYPE:EVENT",
        ]
        current_map = None
        for entry in listed:
            if entry.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if entry.map_uri is not None and entry.map_uri != current_map:
                lines.append(f'#EXT-X-MAP:URI="{entry.map_uri}"')
                current_map = entry.map_uri
            lines.append(f"#EXTINF:{entry.duration:.3f},")
            lines.append(entry.uri)
        if ended and len(listed) == len(entries):
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def parse_playlist(text: str) -> list[tuple[str, float, bool]]:
    """The segments a media playlist lists, as (uri, duration, discontinuity before it), in order."""
    out: list[tuple[str, float, bool]] = []
    duration, discontinuity = 0.0, False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:"):].split(",", 1)[0])
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line and not line.startswith("#"):
            out.append((line, duration, discontinuity))
            duration, discontinuity = 0.0, False
    return out


def playlist_maps(text: str) -> dict[str, str]:
    """Each listed segment's init segment (``#EXT-X-MAP`` URI in force before it): segment uri -> init uri."""
    out: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MAP:"):
            attrs = line[len("#EXT-X-MAP:"):]
            start = attrs.find('URI="')
            current = attrs[start + 5: attrs.index('"', start + 5)] if start != -1 else None
        elif line and not line.startswith("#") and current is not None:
            out[line] = current
    return out
