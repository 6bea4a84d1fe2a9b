"""Object keys: validation shared by every store, and content types.

A key is a relative, '/'-separated path. The recorder builds keys from a prefix template and sanitised names;
stores check them again, because a key that escapes the configured root or prefix must never be written,
whatever produced it.
"""

from __future__ import annotations

import posixpath
import unicodedata

MAX_KEY_BYTES = 1024  # S3's limit for object keys

CONTENT_TYPES = {
    ".ts": "video/mp2t",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".json": "application/json",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
}


def content_type_for(key: str) -> str:
    """The Content-Type for an object key, from its extension."""
    ext = posixpath.splitext(key)[1].lower()
    return CONTENT_TYPES.get(ext, "application/octet-stream")


def key_problem(key: object) -> str | None:
    """Why ``key`` is not an acceptable object key, or None when it is.

    Refused: non-strings, empty keys, keys longer than 1024 UTF-8 bytes, absolute keys, backslashes,
    empty segments (``a//b``), ``.`` and ``..`` segments, control characters (C0, C1, DEL), Unicode format
    characters (bidi overrides, zero-width joiners), unassigned code points, and non-ASCII look-alikes of
    '/', '\\' and '.' (full-width solidus, two-dot leader...) that a later normalisation could turn into
    path syntax.
    """
    if not isinstance(key, str):
        return "not a string"
    if not key:
        return "empty key"
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8 (lone surrogate)"
    if len(encoded) > MAX_KEY_BYTES:
        return f"longer than {MAX_KEY_BYTES} bytes"
    if key.startswith("/"):
        return "absolute key"
    if "\\" in key:
        return "contains a backslash"
    for ch in key:
        cat = unicodedata.category(ch)
        if cat == "Cc":
            return f"contains control character U+{ord(ch):04X}"
        if cat in ("Cf", "Cs", "Co", "Cn"):
            return f"contains invisible or unassigned character U+{ord(ch):04X}"
        if ord(ch) > 127 and unicodedata.normalize("NFKC", ch) in ("/", "\\", ".", ".."):
            return f"contains look-alike character U+{ord(ch):04X} for {unicodedata.normalize('NFKC', ch)!r}"
    if key.endswith("/"):
        return "ends with '/' (a folder, not an object)"
    for part in key.split("/"):
        if part == "":
            return "empty path segment ('//')"
        if part in (".", ".."):
            return f"'{part}' path segment"
    return None


def static_prefix(template: str | None) -> str:
    """The fixed leading folders of a prefix template: every key must start with it.

    ``"tenant-a/{date}/{room}_{time}/"`` → ``"tenant-a/"``; ``"{date}/..."`` → ``""``;
    ``"recordings/"`` → ``"recordings/"``. Only whole folders count, so ``"rec-{date}/"`` → ``""``.
    """
    if not template:
        return ""
    fixed = template.split("{", 1)[0]
    if "/" not in fixed:
        return ""
    fixed = fixed[: fixed.rindex("/") + 1]
    # Normalise away leading slashes and empty segments; the API refuses such prefixes anyway.
    parts = [p for p in fixed.split("/") if p]
    return "/".join(parts) + "/" if parts else ""
