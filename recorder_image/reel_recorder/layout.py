"""Where objects go: the prefix template and name sanitising. The only place object keys are made.

Every name that comes from outside (room ids, display names, session names) passes ``sanitize`` before it
becomes part of a key, so nothing can escape the configured prefix: no ``..``, no absolute paths, no control
or invisible characters, no look-alikes of ``/`` or ``.``, bounded length.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from datetime import datetime

from .storage.keys import key_problem

MAX_NAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
PLACEHOLDERS = {"date", "time", "room", "recordingId", "session", "namespace"}
DEFAULT_PREFIX = "{date}/{room}_{time}_{recordingId}/"


def sanitize(name: object, *, fallback: str = "x", max_len: int = MAX_NAME) -> str:
    """A safe single path segment from any string: ``[A-Za-z0-9._-]``, no leading dot, ≤ max_len.

    Compatibility forms are folded first (NFKC: full-width letters become ASCII), accents dropped, every
    other run of characters becomes ``_``. A name that had to be changed or shortened gets a short hash of
    the original, so two different names never share a folder.
    """
    text = str(name)
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    safe = _UNSAFE.sub("_", folded).strip("._-")
    changed = safe != text
    if len(safe) > max_len - 9:
        safe = safe[: max_len - 9].rstrip("._-")
        changed = True
    if changed:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe}_{digest}" if safe else f"{fallback}_{digest}"
    return safe or fallback


def render_prefix(template: str | None, *, room: object, recording_id: str, started: datetime,
                  session: str = "", namespace: str = "") -> str:
    """The key prefix of one recording (ends with ``/``, or is empty)."""
    template = DEFAULT_PREFIX if template is None else template
    values = {
        "date": started.strftime("%Y-%m-%d"),
        "time": started.strftime("%H%M%S"),
        "room": sanitize(room, fallback="room"),
        "recordingId": sanitize(recording_id),
        "session": sanitize(session, fallback="session"),
        "namespace": sanitize(namespace, fallback="default"),
    }
    out = []
    for literal, field, spec, conv in string.Formatter().parse(template):
        out.append(literal)
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conv:
            raise ValueError(f"unknown placeholder {{{field}}} in prefix {template!r}; "
                             f"known: {', '.join(sorted(PLACEHOLDERS))}")
        out.append(values[field])
    prefix = "".join(out)
    if not prefix:
        return ""
    if not prefix.endswith("/"):
        prefix += "/"
    problem = key_problem(prefix.rstrip("/"))
    if problem:
        raise ValueError(f"prefix {template!r} is not usable: {problem}")
    return prefix


def participant_folder(display: str, publisher_id: object) -> str:
    """A participant's folder under the recording prefix: their sanitised display name and publisher id."""
    return f"{sanitize(display, fallback='participant', max_len=48)}_{sanitize(publisher_id)}"


#: The composite's folder (mode composite or both). No participant folder can have this name: theirs always
#: end with ``_<publisher id>``.
COMPOSITE_FOLDER = "composite"


# -- the keys of one recording (``prefix`` from render_prefix, ``folder`` from participant_folder) ------------

def segment_name(index: int, extension: str = "ts") -> str:
    """The file name of a participant's ``index``-th segment (also its name in the playlist)."""
    return f"seg_{index:05d}.{extension}"


def init_name(index: int) -> str:
    """The file name of an fMP4 init segment (``#EXT-X-MAP``), named after the first segment that needs it: a
    run's first segment, or one whose init changed. Segment numbers are never reused, so neither are these."""
    return f"init_{index:05d}.mp4"


def folder_key(prefix: str, folder: str, name: str) -> str:
    """The key of a file in a participant's folder (a segment, the playlist, the MP4)."""
    return f"{prefix}{folder}/{name}"


def playlist_key(prefix: str, folder: str) -> str:
    return folder_key(prefix, folder, "index.m3u8")


def mp4_key(prefix: str, folder: str) -> str:
    """The participant's MP4 (one per participant, covering every run of the recording)."""
    return folder_key(prefix, folder, "recording.mp4")


def manifest_key(prefix: str) -> str:
    return f"{prefix}manifest.json"
