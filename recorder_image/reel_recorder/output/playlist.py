"""HLS media playlists (RFC 8216) for one participant."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlaylistEntry:
    uri: str  # relative to the playlist
    key: str  # object key, used to ask whether the segment is stored yet
    duration: float
    discontinuity: bool = False


@dataclass
class Playlist:
    target_duration: int
    entries: list[PlaylistEntry] = field(default_factory=list)
    ended: bool = False

    def add(self, entry: PlaylistEntry) -> None:
        self.entries.append(entry)

    def render(self, is_stored: Callable[[str], bool] = lambda _key: True) -> str:
        """The playlist as far as its segments are stored: the longest stored prefix of the entries.

        ``#EXT-X-ENDLIST`` only when the recording of this participant has ended and every segment is
        listed, so a player reading the bucket never meets a missing segment or a false end.
        """
        listed: list[PlaylistEntry] = []
        for entry in self.entries:
            if not is_stored(entry.key):
                break
            listed.append(entry)
        longest = max((e.duration for e in self.entries), default=0.0)
        target = max(self.target_duration, math.floor(longest + 0.5))  # RFC 8216: EXTINF rounded ≤ target
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{target}",
            "#EXT-X-MEDIA-SEQUENCE:0",
            "#EXT-X-PLAYLIST-TYPE:EVENT",
        ]
        for entry in listed:
            if entry.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXTINF:{entry.duration:.3f},")
            lines.append(entry.uri)
        if self.ended and len(listed) == len(self.entries):
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"
