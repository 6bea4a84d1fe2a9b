"""Unit tests of the recorder's pure pieces: names and keys, presence, playlists, alignment, H.264 scanning."""

from __future__ import annotations

import json
import re
import struct
from datetime import UTC, datetime

import pytest
from tests.support.synthetic import playlist_entries

from reel_recorder.clock import StreamAligner
from reel_recorder.ids import new_recording_id
from reel_recorder.ingest.rtp import pli_packet
from reel_recorder.layout import participant_folder, render_prefix, sanitize
from reel_recorder.manifest import ManifestData, ParticipantRecord, SegmentRecord
from reel_recorder.media import h264
from reel_recorder.output.playlist import Playlist, PlaylistEntry
from reel_recorder.room.credentials import room_credentials
from reel_recorder.room.presence import Down, Presence, Up, select_streams
from reel_recorder.settings import Settings
from reel_recorder.storage.keys import key_problem

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
STARTED = datetime(2026, 11, 25, 10, 43, 7, tzinfo=UTC)


# -- names and keys -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "../../etc/passwd", "/abs/path", "a\x00b", "a\x07b\x1b[31m", "\u202eexe.ts", "\uff0e\uff0e\uff0fx",
    "x" * 1000, ".hidden", "..", ".", "", "   ", "😀", "名前", "a/b\\c", "CON", "seg\u200b.ts",
])
def test_sanitize_makes_one_safe_path_segment(name):
    out = sanitize(name)
    assert SAFE.fullmatch(out), out
    assert len(out) <= 64
    assert key_problem(out) is None


def test_sanitize_keeps_plain_names_and_separates_different_ones():
    assert sanitize("alice") == "alice"
    assert sanitize("Bob-2.v1") == "Bob-2.v1"
    assert sanitize("José") != sanitize("Jose")  # changed names carry a hash of the original
    assert sanitize("a/b") != sanitize("a_b")
    assert sanitize("x" * 200) != sanitize("x" * 201)


def test_participant_folder_is_unique_per_publisher():
    assert participant_folder("alice", 123) == "alice_123"
    assert participant_folder("../x", 1) != participant_folder("../x", 2)


def test_render_prefix_default_and_placeholders():
    p = render_prefix(None, room=1234, recording_id="01ABC", started=STARTED)
    assert p == "2026-11-25/1234_104307_01ABC/"
    p = render_prefix("tenant/{namespace}/{session}/{room}/", room="r", recording_id="i", started=STARTED,
                      session="s1", namespace="media")
    assert p == "tenant/media/s1/r/"
    assert render_prefix("", room=1, recording_id="i", started=STARTED) == ""


@pytest.mark.parametrize("room", ["../../..", "/etc", "a/../../b", "\u2024\u2024", "x" * 500])
def test_hostile_room_ids_cannot_escape_the_prefix(room):
    p = render_prefix("rec/{room}/", room=room, recording_id="i", started=STARTED)
    assert p.startswith("rec/") and p.count("/") == 2
    assert key_problem(p.rstrip("/")) is None


@pytest.mark.parametrize("template", ["{nope}/", "{room!r}/", "../{room}/", "/abs/{room}/", "a//b/"])
def test_bad_prefix_templates_are_refused(template):
    with pytest.raises(ValueError):
        render_prefix(template, room=1, recording_id="i", started=STARTED)


def test_recording_ids_are_ulids_and_time_ordered():
    a, b = new_recording_id(1_700_000_000.0), new_recording_id(1_700_000_001.0)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", a)
    assert a[:10] < b[:10]
    assert new_recording_id() != new_recording_id()


# -- presence -----------------------------------------------------------------------------------------------
def _pub(pid, display, *streams, **extra):
    return {"id": pid, "display": display,
            "streams": [{"type": k, "mid": str(i), "codec": c, **extra} for i, (k, c) in enumerate(streams)]}


def test_presence_follows_join_reply_and_events():
    p = Presence(own_id=99)
    changes = p.apply({"videoroom": "joined", "id": 99, "publishers": [_pub(1, "alice", ("audio", "opus"))]})
    assert [type(c) for c in changes] == [Up] and changes[0].publisher.display == "alice"
    assert p.apply({"videoroom": "event", "publishers": [_pub(2, "bob", ("audio", "opus"), ("video", "h264"))]})
    assert set(p.publishers) == {1, 2}
    assert p.apply({"videoroom": "event", "unpublished": 1}) == [Down(1)]
    assert p.apply({"videoroom": "event", "unpublished": 1}) == []  # Janus sends it twice
    assert p.apply({"videoroom": "event", "leaving": 2}) == [Down(2)]
    assert p.apply({"videoroom": "event", "leaving": 2}) == []
    assert p.apply({"videoroom": "event", "joining": {"id": 3, "display": "carol"}}) == []
    assert p.apply({"videoroom": "event", "unpublished": "ok"}) == []


def test_presence_ignores_ourselves_and_disabled_streams():
    p = Presence(own_id=5)
    assert p.apply({"publishers": [_pub(5, "me", ("audio", "opus"))]}) == []
    assert p.apply({"publishers": [_pub(6, "x", ("audio", "opus"), disabled=True)]}) == []


def test_select_streams_honours_types_and_lists():
    pub = Presence().apply({"publishers": [_pub(7, "alice", ("audio", "opus"), ("video", "h264"),
                                               ("video", "h264"), ("data", None))]})[0].publisher
    kinds = lambda **kw: sorted(s.kind for s in select_streams(pub, **kw))  # noqa: E731
    assert kinds(stream_types="audioVideo", subscribe=[], unsubscribe=[]) == ["audio", "video"]
    assert kinds(stream_types="audio", subscribe=[], unsubscribe=[]) == ["audio"]
    assert kinds(stream_types="video", subscribe=[], unsubscribe=[]) == ["video"]
    assert kinds(stream_types="audioVideo", subscribe=["bob"], unsubscribe=[]) == []
    assert kinds(stream_types="audioVideo", subscribe=["7"], unsubscribe=[]) == ["audio", "video"]
    assert kinds(stream_types="audioVideo", subscribe=[], unsubscribe=["alice"]) == []


# -- playlists ----------------------------------------------------------------------------------------------
def test_playlist_lists_only_stored_segments_and_ends_only_when_complete():
    pl = Playlist(target_duration=5)
    for i, (d, disc) in enumerate([(4.0, False), (3.9, False), (4.4, False), (4.0, False)]):
        pl.add(PlaylistEntry(uri=f"seg_{i}.ts", key=f"p/seg_{i}.ts", duration=d, discontinuity=disc))
    pl.ended = True
    stored = {"p/seg_0.ts", "p/seg_2.ts", "p/seg_3.ts"}

    # the primary's predicate is prefix-closed (storage/documents.py): the stored prefix only
    gap = []

    def prefix_closed(key):
        if key not in stored:
            gap.append(key)
        return not gap

    text = pl.render(prefix_closed)
    assert playlist_entries(text) == ["seg_0.ts"]
    assert "#EXT-X-ENDLIST" not in text and "#EXT-X-DISCONTINUITY" not in text
    # a store holding a sparse subset (the backup): what it holds, a discontinuity where it misses segments
    text = pl.render(lambda k: k in stored)
    assert playlist_entries(text) == ["seg_0.ts", "seg_2.ts", "seg_3.ts"]
    assert "seg_0.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:4.400,\nseg_2.ts\n#EXTINF:4.000,\nseg_3.ts\n" in text
    assert "#EXT-X-ENDLIST" not in text
    # a store that misses the first segments starts with the first it holds, without a discontinuity
    text = pl.render(lambda k: k == "p/seg_3.ts")
    assert playlist_entries(text) == ["seg_3.ts"] and "#EXT-X-DISCONTINUITY" not in text
    pl.entries[2] = PlaylistEntry(uri="seg_2.ts", key="p/seg_2.ts", duration=4.4, discontinuity=True)
    full = pl.render()
    assert full.splitlines()[:5] == ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:5",
                                     "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:EVENT"]
    assert ("#EXTINF:3.900,\nseg_1.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:4.400,\nseg_2.ts\n"
            "#EXTINF:4.000,\nseg_3.ts\n#EXT-X-ENDLIST\n") in full


def test_playlist_target_duration_covers_every_segment():
    pl = Playlist(target_duration=3)
    pl.add(PlaylistEntry(uri="a.ts", key="a.ts", duration=3.6))
    assert "#EXT-X-TARGETDURATION:4" in pl.render()


# -- alignment ----------------------------------------------------------------------------------------------
def test_aligner_uses_the_least_delayed_packet_of_the_window():
    al = StreamAligner(window=0.5, min_packets=3)
    out = []
    # media times 0, .02, ...; the first packets were buffered (arrive together), later ones arrive live
    arrivals = [1.30, 1.30, 1.30, 1.26, 1.28, 1.30, 1.32, 1.34, 1.86, 1.88]
    for i, arr in enumerate(arrivals):
        out += al.push(i, i * 0.02, arr)
    assert al.offset == pytest.approx(1.20)
    assert [item for item, _ in out] == list(range(len(arrivals)))  # nothing lost, order kept
    assert out[0][1] == pytest.approx(1.20) and out[-1][1] == pytest.approx(1.38)


def test_aligner_flush_releases_held_packets():
    al = StreamAligner(window=10)
    assert al.push("a", 0.0, 5.0) == []
    assert al.flush() == [("a", 5.0)]
    assert al.flush() == []


# -- H.264, RTP, RTCP ---------------------------------------------------------------------------------------
SPS = b"\x00\x00\x00\x01\x67\x42\xc0\x1f"
PPS = b"\x00\x00\x00\x01\x68\xce\x3c\x80"
IDR = b"\x00\x00\x01\x65\x88\x84"
P = b"\x00\x00\x00\x01\x41\x9a"


def test_h264_nal_scanning():
    au = SPS + PPS + IDR
    assert [t for t, _, _ in h264.nal_units(au)] == [7, 8, 5]
    assert h264.is_idr(au) and h264.has_parameter_sets(au)
    assert h264.parameter_sets(au) == SPS + PPS
    assert not h264.is_idr(P) and not h264.has_parameter_sets(IDR)
    assert h264.nal_units(b"") == []


def test_pli_is_a_12_byte_rtcp_psfb():
    data = pli_packet(media_ssrc=0x1234)
    assert len(data) == 12
    first, pt, length, _sender, media = struct.unpack("!BBHII", data)
    assert (first >> 6, first & 0x1F, pt, length, media) == (2, 1, 206, 2, 0x1234)


# -- manifest and credentials -------------------------------------------------------------------------------
def test_manifest_has_every_segment_with_location():
    m = ManifestData(session={"name": "s", "namespace": "ns"}, tag="t", room={"server": "ws://j", "id": 1},
                     recording_id="R", prefix="p/", started_at="2026-11-25T10:00:00Z")
    part = ParticipantRecord(display="alice", folder="alice_1", playlist="p/alice_1/index.m3u8", ids=[1],
                             runs=[{"joinedAt": "a", "leftAt": "b"}])
    part.segments.append(SegmentRecord("seg_00000.ts", "p/alice_1/seg_00000.ts", 1.5, 4.0, 100, "ab", False))
    m.participants.append(part)
    m.stop_reason = "NoUsers"
    doc = json.loads(m.render(lambda k: "primary"))
    assert doc["formatVersion"] == 1 and doc["stopReason"] == "NoUsers" and doc["tag"] == "t"
    seg = doc["participants"][0]["segments"][0]
    assert seg == {"name": "seg_00000.ts", "key": "p/alice_1/seg_00000.ts", "start": 1.5, "duration": 4.0,
                   "bytes": 100, "sha256": "ab", "discontinuity": False, "location": "primary"}


def test_room_credentials_from_a_secret_folder_win_over_environment(tmp_path):
    (tmp_path / "pin").write_text("1234\n")
    (tmp_path / "adminKey").write_text("ak")
    env = Settings.from_env({"REEL_ROOM_PIN": "env-pin", "REEL_ROOM_SECRET": "env-secret"}).room
    c = room_credentials(str(tmp_path), env)
    assert (c.pin, c.secret, c.admin_key, c.token) == ("1234", "env-secret", "ak", None)
    assert room_credentials(None, Settings.from_env({}).room).pin is None
    assert room_credentials(None, env).pin == "env-pin"
