"""Hostile display names (and publisher ids) never lead outside a recording's prefix (reel_recorder/layout.py):
every participant folder is one safe path segment, every key made from it normalises to a key under the prefix
and passes the stores' own check (storage/keys.key_problem), a local store writes it inside its root, and
different names never share a folder. Part of the bad-input catalogue (docs/bad-input.md)."""

from __future__ import annotations

import os
import posixpath
import random
import re
from datetime import UTC, datetime

import pytest

from reel_recorder.layout import folder_key, manifest_key, participant_folder, playlist_key, render_prefix, segment_name
from reel_recorder.storage.keys import key_problem
from reel_recorder.storage.local import LocalStore

SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
PREFIX = render_prefix(None, room=1234, recording_id="01HOSTILE", started=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))

#: (display name, what it tries)
HOSTILE = [
    ("../../x", "path traversal"),
    ("../../../escape", "path traversal, deeper"),
    ("..", "parent directory"),
    (".", "current directory"),
    ("/etc/passwd", "absolute path"),
    ("//server/share", "UNC-like absolute path"),
    ("a/../../b", "traversal in the middle"),
    ("..\\..\\windows", "backslash traversal"),
    ("C:\\x", "drive letter"),
    ("x" * 10_000, "very long"),
    ("\U0001F600" * 500, "very long, 4-byte characters"),
    ("a\x00b", "NUL"),
    ("\x07\x08\x1b[31mred\x1b[0m", "control characters, terminal escapes"),
    ("line\nbreak\r\ttab", "newline, carriage return, tab"),
    ("\x7f\x85\x9b", "DEL and C1 controls"),
    ("\u202eexe.ts", "right-to-left override"),
    ("\u05e9\u05dc\u05d5\u05dd\u202b", "Hebrew with right-to-left embedding"),
    ("\u200b", "zero-width space only"),
    ("a\u200bb\u200dc\u2060d\ufeff", "zero-width characters inside"),
    ("\uff0e\uff0e\uff0fx", "full-width ../"),
    ("\u2025/x", "two-dot leader"),
    ("\u2024\u2024", "one-dot leaders"),
    ("\u2215etc\u2215passwd", "division slash"),
    ("", "empty"),
    ("   ", "spaces only"),
    (".hidden", "hidden file"),
    ("-rf", "leading dash"),
    ("seg_00001.ts", "a segment's name"),
    ("index.m3u8", "a playlist's name"),
    ("manifest.json", "the manifest's name"),
    ("composite", "the composite's folder"),
    ("CON", "reserved device name"),
    ("%2e%2e%2f", "URL-encoded ../"),
    ("\ud800", "lone surrogate"),
    ("\U000e0041", "tag character (invisible)"),
    ("名前", "non-Latin letters"),
]


@pytest.mark.parametrize("display,what", HOSTILE, ids=[w for _, w in HOSTILE])
def test_a_hostile_display_name_gives_a_folder_inside_the_prefix(display, what):
    folder = participant_folder(display, 4242)
    assert SEGMENT.fullmatch(folder) and len(folder) <= 64, (what, folder)
    for key in (folder_key(PREFIX, folder, segment_name(1)), playlist_key(PREFIX, folder),
                folder_key(PREFIX, folder, "recording.mp4")):
        assert key_problem(key) is None, (what, key)
        assert posixpath.normpath(key).startswith(PREFIX) and key.startswith(f"{PREFIX}{folder}/"), (what, key)
        assert key.count("/") == PREFIX.count("/") + 1, (what, key)
    # it can never be mistaken for the recording's own files
    assert playlist_key(PREFIX, folder) != manifest_key(PREFIX) and folder != "composite"


@pytest.mark.parametrize("publisher_id", ["../../x", "/etc/passwd", "", "\u202e1", "1" * 500, None, -1, 2**70])
def test_a_hostile_publisher_id_too(publisher_id):
    folder = participant_folder("alice", publisher_id)
    assert SEGMENT.fullmatch(folder) and key_problem(playlist_key(PREFIX, folder)) is None, folder


def test_different_hostile_names_never_share_a_folder():
    folders = [participant_folder(display, 7) for display, _ in HOSTILE]
    assert len(set(folders)) == len(folders)
    assert participant_folder("../../x", 7) != participant_folder("__x", 7) != participant_folder("x", 7)


def test_random_names_stay_inside_the_prefix():
    rng = random.Random(15)
    pool = "./\\\x00\x1b\n\u202e\u200b\uff0e\uff0f\u2025:%~ aZ9-_\u05d0\U0001F600"
    for _ in range(3000):
        display = "".join(rng.choice(pool) for _ in range(rng.randint(0, 80)))
        folder = participant_folder(display, rng.randint(1, 2**53))
        key = playlist_key(PREFIX, folder)
        assert SEGMENT.fullmatch(folder) and key_problem(key) is None, repr(display)
        assert posixpath.normpath(key) == key.rstrip("/") and key.startswith(PREFIX), repr(display)


def test_a_local_store_writes_hostile_names_inside_its_root(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    for display, _ in HOSTILE:
        store.put_bytes(playlist_key(PREFIX, participant_folder(display, 9)), b"#EXTM3U\n")
    written = [os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files]
    assert len(written) == len(HOSTILE)
    assert all(os.path.realpath(p).startswith(f"{os.path.realpath(root / PREFIX)}/") for p in written), written
    assert sorted(os.listdir(tmp_path)) == ["store"]
