"""fMP4 (CMAF) HLS segments (spec.recording.segmentFormat: fmp4): the box splitter, the playlist's EXT-X-MAP and
version 7, an init segment per run (and per change), the segments on the recording's timeline, Opus kept as sent,
the catalog storing each init before the segments that need it, and the MP4 rebuilt from fMP4 segments."""

from __future__ import annotations

import hashlib
import io
import random
import struct

import av
import pytest
from tests.support.packets import participant_media

from reel_recorder.manifest import ManifestData, manifest_from_json
from reel_recorder.output.catalog import Catalog
from reel_recorder.output.fmp4 import BoxSplitter, top_level_boxes
from reel_recorder.output.formats import FMP4, OPUS, TS, segment_format
from reel_recorder.output.mp4 import demuxable_segments, mp4_from_segments
from reel_recorder.output.playlist import Playlist, PlaylistEntry, playlist_maps
from reel_recorder.output.writer import ParticipantWriter
from reel_recorder.resume import ts_times


def box(kind: str, payload: bytes, large: bool = False) -> bytes:
    if large:
        return struct.pack(">I4sQ", 1, kind.encode(), 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), kind.encode()) + payload


class Sink:
    def __init__(self):
        self.data = bytearray()

    def write(self, b):
        self.data += b


# -- box splitting --------------------------------------------------------------------------------------------

def test_boxes_are_routed_by_type_whatever_the_write_sizes():
    ftyp, moov = box("ftyp", b"cmfc" * 4), box("moov", bytes(range(256)) * 3)
    media = box("moof", b"m" * 100) + box("mdat", b"\x00" * 70000, large=True) + box("moof", b"n" * 9) + \
        box("mdat", b"d" * 5)
    stream = ftyp + moov + media + box("mfra", b"x" * 40)
    assert [k for k, _, _ in top_level_boxes(stream)] == ["ftyp", "moov", "moof", "mdat", "moof", "mdat", "mfra"]
    rng = random.Random(7)
    for _ in range(50):
        sink = Sink()
        split = BoxSplitter(sink)
        i = 0
        while i < len(stream):
            n = rng.choice([1, 2, 3, 7, 8, 9, 15, 16, 17, 1000, 40000])
            split.write(stream[i:i + n])
            i += n
        assert split.complete()
        assert bytes(split.init) == ftyp + moov
        assert bytes(sink.data) == media  # mfra (the trailer's index) dropped


def test_a_cut_short_stream_is_not_complete_and_bad_sizes_are_refused():
    split = BoxSplitter(Sink())
    split.write(box("moof", b"x" * 10)[:-3])
    assert not split.complete()
    with pytest.raises(ValueError):
        top_level_boxes(box("moof", b"x" * 10)[:-1])
    with pytest.raises(ValueError):
        BoxSplitter(Sink()).write(struct.pack(">I4s", 4, b"moof"))


# -- the playlist -----------------------------------------------------------------------------------------------

def _entry(i: int, init: str | None, disc: bool = False) -> PlaylistEntry:
    return PlaylistEntry(uri=f"seg_{i:05d}.m4s", key=f"p/a/seg_{i:05d}.m4s", duration=4.0, discontinuity=disc,
                         map_uri=init, map_key=f"p/a/{init}" if init else None)


def test_fmp4_playlist_is_version_7_with_a_map_before_each_run_and_each_change():
    pl = Playlist(target_duration=5, ended=True)
    for e in [_entry(0, "init_00000.mp4"), _entry(1, "init_00000.mp4"), _entry(2, "init_00002.mp4"),
              _entry(4, "init_00004.mp4", disc=True), _entry(5, "init_00004.mp4")]:
        pl.add(e)
    text = pl.render()
    lines = text.splitlines()
    assert "#EXT-X-VERSION:7" in lines
    assert [line for line in lines if line.startswith("#EXT-X-MAP") or line.startswith("seg_") or
            line == "#EXT-X-DISCONTINUITY"] == [
        '#EXT-X-MAP:URI="init_00000.mp4"', "seg_00000.m4s", "seg_00001.m4s",
        '#EXT-X-MAP:URI="init_00002.mp4"', "seg_00002.m4s",
        "#EXT-X-DISCONTINUITY", '#EXT-X-MAP:URI="init_00004.mp4"', "seg_00004.m4s", "seg_00005.m4s"]
    assert playlist_maps(text) == {"seg_00000.m4s": "init_00000.mp4", "seg_00001.m4s": "init_00000.mp4",
                                   "seg_00002.m4s": "init_00002.mp4", "seg_00004.m4s": "init_00004.mp4",
                                   "seg_00005.m4s": "init_00004.mp4"}
    ts = Playlist(target_duration=5)
    ts.add(PlaylistEntry(uri="seg_00000.ts", key="k", duration=4.0))
    assert "#EXT-X-VERSION:3" in ts.render() and "EXT-X-MAP" not in ts.render()


def test_a_segment_is_listed_only_once_its_init_segment_is_stored():
    pl = Playlist(target_duration=5, ended=True)
    pl.add(_entry(0, "init_00000.mp4"))
    pl.add(_entry(1, "init_00000.mp4"))
    stored = {"p/a/seg_00000.m4s", "p/a/seg_00001.m4s"}
    assert "seg_" not in pl.render(lambda k: k in stored)  # the init is not stored yet
    stored.add("p/a/init_00000.mp4")
    text = pl.render(lambda k: k in stored)
    assert "seg_00001.m4s" in text and text.endswith("#EXT-X-ENDLIST\n")


# -- the writer -------------------------------------------------------------------------------------------------

def _record_two_runs(tmp_path, fmt, segments):
    writer = ParticipantWriter("alice_1", tmp_path, segment_seconds=2, on_segment=segments.append,
                               segment_format=fmt, mp4=True)
    for offset in (1.0, 9.0):  # a run, a leave (pause), a second run after a discontinuity
        for kind, packet, t in participant_media(5):
            getattr(writer, kind)(packet, t + offset)
        writer.pause()
    writer.close()
    return writer


def _write_playlist(folder, segments):
    """The folder's playlist, as the catalog renders it; its path."""
    pl = Playlist(target_duration=3, ended=True)
    for s in segments:
        pl.add(PlaylistEntry(uri=s.name, key=s.name, duration=s.duration, discontinuity=s.discontinuity,
                             map_uri=s.init.name if s.init else None, map_key=s.init.name if s.init else None))
    (folder / "index.m3u8").write_text(pl.render())
    return folder / "index.m3u8"


def _decode_playlist(path):
    frames, samples, errors, first = 0, 0, 0, {}
    with av.open(str(path)) as c:
        codecs = {s.type: s.codec_context.name for s in c.streams}
        for packet in c.demux():
            if packet.pts is None:
                continue
            first.setdefault(packet.stream.type, float(packet.pts * packet.time_base))
            try:
                for fr in packet.decode():
                    if isinstance(fr, av.VideoFrame):
                        frames += 1
                    else:
                        samples += fr.samples
            except av.error.InvalidDataError:
                errors += 1
    return frames, samples, errors, codecs, first


def test_each_run_gets_its_own_init_and_the_segments_carry_the_recording_timeline(tmp_path):
    segments = []
    _record_two_runs(tmp_path, segment_format(FMP4), segments)
    folder = tmp_path / "alice_1"
    runs = [s for s in segments if s.index == 0 or s.discontinuity]
    assert len(runs) == 2 and runs[1].discontinuity
    for s in segments:
        assert s.name.endswith(".m4s") and s.init is not None
        assert s.init.new == (s in runs), (s.name, s.init)  # identical inits within a run are stored once
        assert s.init.name == f"init_{[r for r in runs if r.index <= s.index][-1].index:05d}.mp4"
        data = (folder / s.name).read_bytes()
        assert s.size == len(data) and s.sha256 == hashlib.sha256(data).hexdigest()
        assert {k for k, _, _ in top_level_boxes(data)} <= {"moof", "mdat"}
        init = (folder / s.init.name).read_bytes()
        assert [k for k, _, _ in top_level_boxes(init)] == ["ftyp", "moov"]
        start, duration = ts_times(data, init)  # the fragments' own timestamps: the recording's timeline
        assert abs(start - s.start) < 0.01 and abs(duration - s.duration) < 0.1, (s.name, start, s.start)
    assert (folder / runs[0].init.name).read_bytes() == (folder / runs[1].init.name).read_bytes()
    frames, samples, errors, codecs, first = _decode_playlist(_write_playlist(folder, segments))
    assert errors == 0 and codecs == {"video": "h264", "audio": "opus"}  # Opus as sent (the default for fmp4)
    assert frames == 2 * 5 * 15
    assert abs(samples - 2 * 5 * 48000) <= 2 * 960, samples
    assert abs(first["video"] - 1.0) < 0.01
    mp4 = folder / "recording.mp4"
    with av.open(str(mp4)) as c:
        assert {s.codec_context.name for s in c.streams} == {"h264", "opus"}


def test_fmp4_with_aac_and_ts_still_as_before(tmp_path):
    aac = []
    _record_two_runs(tmp_path / "aac", segment_format(FMP4, "aac"), aac)
    frames, samples, errors, codecs, _ = _decode_playlist(_write_playlist(tmp_path / "aac" / "alice_1", aac))
    assert errors == 0 and codecs == {"video": "h264", "audio": "aac"} and frames == 150
    # + at most one silent AAC frame at each edge of each run: a run's sound is padded to its picture's span
    assert -2 * 2048 <= samples - 2 * 5 * 48000 <= 2 * 2048 + 4 * 1024, samples
    ts = []
    _record_two_runs(tmp_path / "ts", segment_format(TS), ts)
    assert all(s.name.endswith(".ts") and s.init is None for s in ts)


def test_the_format_choices():
    assert segment_format(None).name == TS and segment_format(TS).audio_codec == "aac"
    assert segment_format(FMP4).audio_codec == OPUS and segment_format(FMP4).extension == "m4s"
    with pytest.raises(ValueError):
        segment_format(TS, OPUS)  # refused at admission too (CEL): browsers do not play Opus in TS


# -- catalog, manifest, MP4 from segments --------------------------------------------------------------------------

class FakeUploader:
    def __init__(self):
        self.closed: list[str] = []

    def segment_closed(self, key, path, *, size, sha256):
        self.closed.append(key)

    def playlist_updated(self, key, render):
        self.render = render

    def manifest_updated(self, key, render):
        pass


def test_the_catalog_stores_each_init_first_and_lists_it_in_the_manifest(tmp_path):
    manifest = ManifestData(session={}, tag=None, room={}, recording_id="r", prefix="p/", started_at="t")
    uploader = FakeUploader()
    catalog = Catalog(manifest, uploader, segment_seconds=2)
    entry = catalog.add_participant("alice", "alice_1")
    segments = []
    _record_two_runs(tmp_path, segment_format(FMP4), segments)
    for s in segments:
        catalog.segment_closed(entry, s)
    inits = [s.init for s in segments if s.init.new]
    assert [i["name"] for i in entry.record.inits] == [i.name for i in inits]
    for i in inits:
        key = f"p/alice_1/{i.name}"
        first_user = next(s for s in segments if s.init.name == i.name)
        assert uploader.closed.index(key) < uploader.closed.index(f"p/alice_1/{first_user.name}")
    doc = manifest_from_json(manifest.render(lambda k: "primary"))
    [again] = doc.participants
    assert again.inits == entry.record.inits and [s.init for s in again.segments] == [s.init.name for s in segments]
    assert again.inits[0]["sha256"] == hashlib.sha256((tmp_path / "alice_1" / inits[0].name).read_bytes()).hexdigest()
    # the MP4 of a resumed recording, from the stored fMP4 segments (each after its init)
    read = {f"p/alice_1/{p.name}": p.read_bytes() for p in (tmp_path / "alice_1").iterdir()}
    info, error = mp4_from_segments(tmp_path / "rebuilt.mp4", demuxable_segments(again, read.__getitem__))
    assert error is None and 12.5 < info.duration < 13.5, (info, error)
    with av.open(str(tmp_path / "rebuilt.mp4")) as c:
        assert {s.codec_context.name for s in c.streams} == {"h264", "opus"}
        assert sum(1 for _ in c.decode(c.streams.video[0])) == 150


def test_a_segment_that_starts_without_a_keyframe_still_has_a_whole_init(tmp_path):
    """The video stalls (no picture for > 1 s: the segment is cut on audio time) and comes back without a
    keyframe: the new segment's init segment still states the parameter sets (the muxer takes them from the
    segment's first video packet, which gets them in front)."""
    segments, now = [], [0.0]
    writer = ParticipantWriter("bob_2", tmp_path, segment_seconds=2, on_segment=segments.append,
                               segment_format=segment_format(FMP4), clock=lambda: now[0])
    for kind, packet, t in participant_media(6, gop=1000):  # one keyframe, at the start
        if kind == "video" and 1.5 <= t < 4.0:
            continue  # the camera's pictures stop coming for 2.5 s
        now[0] = t  # the media arrives in its time
        getattr(writer, kind)(packet, t)
    writer.close()
    assert len(segments) >= 2 and segments[1].start < 4.0, [(s.name, s.start) for s in segments]
    for s in segments:
        with av.open(str(tmp_path / "bob_2" / s.init.name)) as c:
            assert c.streams.video[0].codec_context.extradata, s.init.name  # avcC with SPS and PPS
    frames, _samples, _errors, codecs, _ = _decode_playlist(_write_playlist(tmp_path / "bob_2", segments))
    assert codecs["video"] == "h264" and frames >= (1.5 + 2.0) * 15 - 2, frames


def test_a_resumed_fmp4_recording_takes_over_its_init_segments(tmp_path):
    """resume.read_back: each stored segment with its init (the manifest's, or the playlist's #EXT-X-MAP), the
    inits themselves as stored objects with their checksums; a segment stored but never listed (nor in the
    manifest) is placed by its own fragments' timestamps, read after the init of the segment before it."""
    import json

    from reel_recorder.resume import read_back
    from reel_recorder.storage import LocalStore, Uploader

    prefix = "2026-12-01/1234_063000_01JREC/"
    store = LocalStore(tmp_path / "out", name="primary")
    (tmp_path / "out").mkdir()
    manifest = ManifestData(session={}, tag=None, room={}, recording_id="r", prefix=prefix, started_at="t")
    up = Uploader(store, manifest_interval=0.0).start()
    catalog = Catalog(manifest, up, segment_seconds=2)
    entry = catalog.add_participant("alice", "alice_1")
    segments = []
    writer = ParticipantWriter("alice_1", tmp_path / "spool", segment_seconds=2, segment_format=segment_format(FMP4),
                               on_segment=lambda info: (segments.append(info), catalog.segment_closed(entry, info)))
    for kind, packet, t in participant_media(7):
        getattr(writer, kind)(packet, t + 1.0)
    writer.close()
    catalog.publish_manifest()
    up.close(10)
    assert len(segments) >= 3
    # the recorder died after storing the last segment, before listing it anywhere
    last = segments[-1]
    folder = tmp_path / "out" / prefix / "alice_1"
    playlist = (folder / "index.m3u8").read_text()
    (folder / "index.m3u8").write_text(playlist.replace(f"#EXTINF:{last.duration:.3f},\n{last.name}\n", ""))
    doc = json.loads((tmp_path / "out" / prefix / "manifest.json").read_text())
    doc["participants"][0]["segments"].pop()
    (tmp_path / "out" / prefix / "manifest.json").write_text(json.dumps(doc))

    prev = read_back(store, None, prefix)
    [alice] = prev.participants
    assert [s.name for s in alice.segments] == [s.name for s in segments]
    assert [s.init for s in alice.segments] == [s.init.name for s in segments]
    taken = alice.segments[-1]
    assert abs(taken.start - last.start) < 0.05 and abs(taken.duration - last.duration) < 0.1, (taken, last)
    init_key = f"{prefix}alice_1/init_00000.mp4"
    assert alice.inits == [{"name": "init_00000.mp4", "key": init_key, "bytes": segments[0].init.size,
                            "sha256": segments[0].init.sha256}]
    assert init_key in {s.key for s in prev.stored}


def test_an_access_unit_without_a_picture_is_no_sample(tmp_path):
    """Seen from Janus at a run's end: a 6-byte access unit holding only an AUD, right after the last picture.
    In TS FFmpeg's demuxer merges it away; an MP4 sample without a picture is a decoder error: it is left out."""
    segments = []
    writer = ParticipantWriter("carl_3", tmp_path, segment_seconds=2, on_segment=segments.append,
                               segment_format=segment_format(FMP4))
    last = 0.0
    for kind, packet, t in participant_media(3):
        getattr(writer, kind)(packet, t)
        last = max(last, t if kind == "video" else last)
    writer.video(av.Packet(b"\x00\x00\x00\x01\x09\xf0"), last + 0.0001)  # a lone access unit delimiter
    writer.close()
    frames, _samples, errors, _codecs, _ = _decode_playlist(_write_playlist(tmp_path / "carl_3", segments))
    assert errors == 0 and frames == 3 * 15


def test_sound_from_after_a_cut_goes_into_the_next_segment(tmp_path):
    """Pictures reach the writer later than the sound of their time (here 100 ms): the sound from a cut on still
    starts the next segment, so each segment's samples lie within it (a player's buffer is where both tracks
    are: a last segment without sound never lets playback reach the end)."""
    segments = []
    writer = ParticipantWriter("dora_4", tmp_path, segment_seconds=2, on_segment=segments.append,
                               segment_format=segment_format(FMP4), mp4=True)
    media = participant_media(6.1)
    for kind, packet, t in sorted(media, key=lambda m: m[2] + (0.1 if m[0] == "video" else 0.0)):
        getattr(writer, kind)(packet, t + 1.0)
    writer.close()
    assert len(segments) >= 3
    folder = tmp_path / "dora_4"
    for s in segments:
        data = (folder / s.init.name).read_bytes() + (folder / s.name).read_bytes()
        with av.open(io.BytesIO(data), format="mp4") as c:
            times = [float(p.pts * p.time_base) for p in c.demux(c.streams.audio[0]) if p.pts is not None]
        assert times, s.name  # every segment has sound, the last one too
        assert s.start - 0.01 <= min(times) and max(times) < s.start + s.duration, (s.name, s.start, s.duration,
                                                                                    min(times), max(times))
    frames, samples, errors, _codecs, _ = _decode_playlist(_write_playlist(folder, segments))
    assert errors == 0 and frames == int(6.1 * 15) and abs(samples - 6.1 * 48000) <= 2 * 960, (frames, samples)
    with av.open(str(folder / "recording.mp4")) as c:  # the MP4 got each packet once
        assert sum(1 for p in c.demux(c.streams.audio[0]) if p.pts is not None) == len(
            [m for m in media if m[0] == "audio"])


def test_the_first_segment_has_the_video_track_when_pictures_come_late(tmp_path):
    """A player sets up its tracks from the first init segment: when the pictures of a run's start reach the
    writer 2.5 s after its sound, the sound waits for them (fMP4: up to 10 s, TS: 1 s), so the run's first
    segment already has the video track."""
    segments = []
    writer = ParticipantWriter("eve_5", tmp_path, segment_seconds=2, on_segment=segments.append,
                               segment_format=segment_format(FMP4))
    for kind, packet, t in sorted(participant_media(6), key=lambda m: m[2] + (2.5 if m[0] == "video" else 0.0)):
        getattr(writer, kind)(packet, t + 1.0)
    writer.close()
    first = segments[0]
    assert first.has_video and first.has_audio and abs(first.start - 1.0) < 0.01, first
    with av.open(str(tmp_path / "eve_5" / first.init.name)) as c:
        assert sorted(s.type for s in c.streams) == ["audio", "video"]
    frames, _samples, errors, codecs, _ = _decode_playlist(_write_playlist(tmp_path / "eve_5", segments))
    assert errors == 0 and codecs == {"video": "h264", "audio": "opus"} and frames == 6 * 15
