"""The recorder against a real Janus: rooms, aiortc publishers, recordings decoded back with PyAV."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import statistics
import time
from pathlib import Path

import av
import pytest
from tests.support.analyze import (
    audio_gaps,
    av_offsets,
    decode_segments,
    parse_playlist,
    read_participant,
    recording_folders,
)
from tests.support.ingests import INGESTS
from tests.support.recorder_proc import RecorderRun

FPS = 30
# spec.recording's segment format (and audio codec): MPEG-TS with AAC (the default), fMP4 with Opus as sent
FORMATS = pytest.mark.parametrize("fmt", [{}, {"segmentFormat": "fmp4"}], ids=["ts", "fmp4-opus"])
AUDIO = {"": "aac", "fmp4": "opus"}  # the audio codec each format records by default
SUBSCRIPTION_SETUP = 0.3  # s: the most of a publisher's start a WebRTC subscription may miss (ICE + DTLS)


def _joined(run: RecorderRun) -> dict:
    return run.wait_event("joined", timeout=30)


def _participant_outputs(run: RecorderRun) -> dict:
    """Each participant's playlist and media, decoded fully: any decoder error fails the test (issue 16)."""
    outputs = {name: read_participant(folder) for name, folder in recording_folders(run.output).items()}
    for name, (_info, decoded) in outputs.items():
        assert decoded.decode_errors == 0, (name, decoded.decode_messages)
    return outputs


def _manifest(run: RecorderRun) -> dict:
    return json.loads(next(run.output.rglob("manifest.json")).read_text())


def _check_playlist_and_files(folder: Path, segment_seconds: float) -> None:
    text = (folder / "index.m3u8").read_text()
    info = parse_playlist(text)
    assert info.ended, "playlist must end with #EXT-X-ENDLIST"
    for uri, dur, _ in info.entries:
        assert (folder / uri).is_file()
        assert 0 < dur <= segment_seconds + 1.0 + 1e-6, f"{uri}: {dur} s"
        assert round(dur) <= info.target
    for init in re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text):
        assert (folder / init).is_file() and "#EXT-X-VERSION:7" in text


@INGESTS
@FORMATS
def test_two_participants_two_playlists_with_every_frame(record, room, publisher, wait_publishers, fmt, ingest):
    run = record(room, recording={"segmentSeconds": 4, **fmt, **ingest})
    _joined(run)
    alice = publisher(room, display="alice", duration=15)
    bob = publisher(room, display="bob", duration=15)
    sent = {"alice": alice.wait(90), "bob": bob.wait(90)}
    status = run.wait(60)
    assert status["phase"] == "Completed" and status["stopReason"] == "NoUsers", status

    outputs = _participant_outputs(run)
    assert sorted(n.rsplit("_", 1)[0] for n in outputs) == ["alice", "bob"]
    manifest = _manifest(run)
    # A subscription (ingest webrtc) gets media once its ICE and DTLS are up, ~0.05-0.2 s after Janus announces
    # the publisher (whose first frames are already on their way): what was sent before is not received.
    setup = SUBSCRIPTION_SETUP * FPS if ingest["ingest"] == "webrtc" else 0
    for name, (info, decoded) in outputs.items():
        who = name.rsplit("_", 1)[0]
        frames_sent = sent[who]["video_frames"]
        assert -setup - 0.01 * frames_sent <= decoded.video_frames - frames_sent <= 0.01 * frames_sent, (
            who, decoded.video_frames, frames_sent)
        assert decoded.decode_errors == 0
        total = sum(d for _, d, _ in info.entries)
        # the playlist lasts as long as the media: both tracks (sound a participant sent after their last picture
        # is theirs: recorded, and counted in the duration; the last picture stays on screen until it ends)
        span = (max(decoded.video_times[-1] + 1 / FPS, decoded.audio_spans[-1][1])
                - min(decoded.video_times[0], decoded.audio_spans[0][0]))
        assert abs(total - span) < 0.15, (total, span, decoded.video_times[-1], decoded.audio_spans[-1])
        assert abs(total - frames_sent / FPS) < 0.3 + setup / FPS
        assert abs(decoded.audio_samples / 48000 - total) < 0.3
        _check_playlist_and_files(recording_folders(run.output)[name], 4)
        # full segments are the configured length (cut at keyframes, which Janus asks for every 2 s here)
        assert all(3.0 <= d <= 5.0 for _, d, _ in info.entries[:-1]), info.entries
        with av.open(str(recording_folders(run.output)[name] / info.entries[0][0]) if not fmt else
                     str(recording_folders(run.output)[name] / "index.m3u8")) as c:
            assert c.streams.audio[0].codec_context.name == AUDIO[fmt.get("segmentFormat", "")]
    # manifest: every segment (and fMP4 init segment) with its real size and checksum
    segs = [s for p in manifest["participants"] for s in p["segments"]]
    assert len(segs) == sum(len(i.entries) for i, _ in outputs.values())
    inits = [i for p in manifest["participants"] for i in p.get("inits", [])]
    assert (len(inits) >= 2 if fmt else not inits) and all(s.get("init") for s in segs) == bool(fmt), inits
    for s in segs + inits:
        data = (run.output / s["key"]).read_bytes()
        assert s["bytes"] == len(data) and s["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["stopReason"] == "NoUsers" and manifest["recordingId"] == status["recordingId"]
    assert all(len(p["joins"]) == 1 and p["joins"][0]["leftAt"] for p in manifest["participants"])


@INGESTS
@FORMATS
def test_leave_and_rejoin_continue_the_same_playlist_after_a_discontinuity(record, room, publisher, fmt, ingest):
    run = record(room, recording={**fmt, **ingest})
    _joined(run)
    p = publisher(room, display="carol", duration=11, leave_at=4, rejoin_at=7, id=4101)  # rejoins with its id
    p.wait(90)
    status = run.wait(60)
    assert status["stopReason"] == "NoUsers"
    outputs = _participant_outputs(run)
    assert len(outputs) == 1, list(outputs)
    (info, decoded), = outputs.values()
    disc = [i for i, (_, _, d) in enumerate(info.entries) if d]
    assert len(disc) == 1 and 0 < disc[0] < len(info.entries), info.entries
    assert decoded.decode_errors == 0
    total = sum(d for _, d, _ in info.entries)
    assert 6.5 < total < 8.5, (total, info.entries, decoded.segment_spans)  # 4 s before leaving + 4 s after
    participant, = _manifest(run)["participants"]
    assert len(participant["joins"]) == 2 and participant["ids"] == [4101]  # one Janus id: one participant
    if fmt:  # each run has its own init segment: an #EXT-X-MAP at the start and right after the discontinuity
        [folder] = recording_folders(run.output).values()
        lines = (folder / "index.m3u8").read_text().splitlines()
        second = info.entries[disc[0]][0]
        after = lines.index("#EXT-X-DISCONTINUITY") + 1
        assert lines[5] == '#EXT-X-MAP:URI="init_00000.mp4"', lines  # before the first segment
        assert lines[after] == f'#EXT-X-MAP:URI="init_{second[4:9]}.mp4"', lines
        names = [i["name"] for i in participant["inits"]]
        assert "init_00000.mp4" in names and f"init_{second[4:9]}.mp4" in names, names


def test_late_joiner_and_audio_only_publisher(record, room, publisher):
    run = record(room)
    _joined(run)
    alice = publisher(room, display="alice", duration=10)
    time.sleep(4)
    dave = publisher(room, display="dave", duration=5, no_video=True)
    alice.wait(90)
    dave.wait(90)
    run.wait(60)
    outputs = {n.rsplit("_", 1)[0]: v for n, v in _participant_outputs(run).items()}
    assert set(outputs) == {"alice", "dave"}
    _, a = outputs["alice"]
    d_info, d = outputs["dave"]
    assert d.video_frames == 0 and 4.5 < d.audio_samples / 48000 < 5.5
    assert all(1.5 <= dur <= 3.0 for _, dur, _ in d_info.entries[:-1]), d_info.entries
    # both on one timeline: dave started about 4 s after alice
    assert 3.0 < d.segment_spans[0][0] - a.segment_spans[0][0] < 6.0


def test_camera_switched_on_late_keeps_audio_and_sync(record, room, publisher):
    run = record(room)
    _joined(run)
    p = publisher(room, display="erin", duration=10, video_delay=3, flash_beep=True)
    sent = p.wait(90)
    run.wait(60)
    (_, d), = _participant_outputs(run).values()
    assert d.decode_errors == 0
    assert 9.5 < d.audio_samples / 48000 < 10.5
    # the camera's first IDR loses its first RTP packet (FFmpeg's RTP probation drops a new stream's first
    # packet), so video starts at the keyframe the recorder asks for: one PLI round trip, a few frames
    assert 0 <= sent["video_frames"] - d.video_frames <= 6, (d.video_frames, sent["video_frames"])
    assert d.video_times[0] - d.segment_spans[0][0] > 2.5  # audio first, video ~3 s later
    offsets = av_offsets(d.flashes, d.beeps, d.video_times)
    assert len(offsets) >= 5, offsets
    assert max(abs(o) for o in offsets) <= 0.010, offsets  # issue 16: within 10 ms


def test_av_sync_within_5ms_median_10ms_max(record, room, publisher):
    run = record(room)
    _joined(run)
    p = publisher(room, display="sync", duration=12, flash_beep=True, vfr=True)
    p.wait(90)
    run.wait(60)
    (_info, d), = _participant_outputs(run).values()
    offsets = av_offsets(d.flashes, d.beeps, d.video_times)
    print(f"A/V offsets (video - audio, ms): {[round(o * 1000, 1) for o in offsets]}")
    assert len(offsets) >= 9, offsets
    # issue 16: within 5 ms median, 10 ms max (measured +0.2 to +0.9 ms: docs/recorder.md)
    assert abs(statistics.median(offsets)) <= 0.005 and max(abs(o) for o in offsets) <= 0.010, offsets


def test_resolution_change_mid_stream_stays_decodable(record, room, publisher):
    run = record(room)
    _joined(run)
    p = publisher(room, display="frank", duration=9, resolution_change_at=["4:320x240"])
    sent = p.wait(90)
    run.wait(60)
    (_info, d), = _participant_outputs(run).values()
    assert d.sizes == {(640, 480), (320, 240)}
    assert d.decode_errors == 0
    assert abs(d.video_frames - sent["video_frames"]) <= max(3, 0.01 * sent["video_frames"])


def test_long_gop_sender_gets_keyframes_on_request(record, make_room, publisher):
    room = make_room(fir_freq=None)  # Janus asks for no keyframes: only the recorder's PLIs produce them
    run = record(room, recording={"segmentSeconds": 2})
    _joined(run)
    p = publisher(room, display="gop", duration=12, long_gop=True)
    sent = p.wait(90)
    run.wait(60)
    (info, d), = _participant_outputs(run).values()
    durations = [dur for _, dur, _ in info.entries]
    assert d.video_frames >= 0.97 * sent["video_frames"], (d.video_frames, sent["video_frames"])
    print(f"segments {durations}, keyframe requests seen by the publisher: {sent['keyframe_requests']}, "
          f"keyframes at {sent['keyframes']}")
    # the recorder's requests (RTCP PLI through Janus) produced the keyframes: one per segment at least
    assert sent["keyframe_requests"] >= len(durations) - 1, sent
    assert len(durations) >= 5, durations
    assert all(dur <= 3.0 for dur in durations), durations
    assert all(dur >= 1.5 for dur in durations[:-1]), durations


def test_unsubscribe_and_stream_types_are_honoured(record, room, publisher):
    run = record(room, recording={"unsubscribe": ["mallory"], "streamTypes": "audio"})
    _joined(run)
    a = publisher(room, display="grace", duration=5)
    m = publisher(room, display="mallory", duration=5)
    a.wait(90)
    m.wait(90)
    run.wait(60)
    outputs = {n.rsplit("_", 1)[0]: v for n, v in _participant_outputs(run).items()}
    assert set(outputs) == {"grace"}
    _info, d = outputs["grace"]
    assert d.video_frames == 0 and d.audio_samples > 4 * 48000


def test_idle_stop_at_max_idle_seconds(record, room):
    run = record(room, recording={"maxIdleSeconds": 6})
    _joined(run)
    joined_at = time.monotonic()
    status = run.wait(30)
    idle = run.ended - joined_at
    assert status["stopReason"] == "NoUsers" and status["phase"] == "Completed"
    assert 6 - 2 <= idle <= 6 + 2, idle
    assert status["participants"] == []


@INGESTS
def test_max_duration_stops_a_busy_room(record, room, publisher, ingest):
    run = record(room, recording={"maxDurationSeconds": 8, "maxIdleSeconds": 60, **ingest})
    _joined(run)
    t0 = time.monotonic()
    publisher(room, display="ivy", duration=60)
    status = run.wait(60)
    assert status["stopReason"] == "MaxDuration" and status["phase"] == "Completed", status
    assert 8 - 2 <= run.ended - t0 <= 8 + 5
    (folder,) = recording_folders(run.output).values()
    _check_playlist_and_files(folder, 2)


@INGESTS
def test_sigterm_stop_leaves_valid_playlists(record, room, publisher, ingest):
    run = record(room, recording={"maxIdleSeconds": 60, **ingest})
    _joined(run)
    p = publisher(room, display="heidi", duration=60)
    p.wait_event("published", timeout=60)
    time.sleep(6)
    run.terminate()
    t0 = time.monotonic()
    status = run.wait(60)
    assert time.monotonic() - t0 < 10
    assert status["stopReason"] == "Requested" and status["phase"] == "Completed"
    (_name, folder), = recording_folders(run.output).items()
    _check_playlist_and_files(folder, 2)
    info, d = read_participant(folder)
    assert d.decode_errors == 0 and d.video_frames > 4 * FPS
    total = sum(dur for _, dur, _ in info.entries)
    assert abs(total - (d.video_times[-1] - d.video_times[0])) < 0.2
    # a stop ends audio and video together (all forwarders stop, then all readers), with no hole in the audio
    assert not audio_gaps(d.audio_spans)
    assert abs(d.audio_spans[-1][1] - (d.video_times[-1] + 1 / FPS)) < 0.15, (d.audio_spans[-1], d.video_times[-1])
    assert abs(d.audio_samples / 48000 - total) < 0.15


@INGESTS
def test_paused_at_start_then_resumed_paused_and_resumed(record, room, publisher, ingest):
    """spec.paused: no media while paused; each resume continues the playlist after a discontinuity."""
    run = record(room, recording={"maxIdleSeconds": 5, **ingest}, paused=True)
    joined = _joined(run)
    assert joined["status"]["phase"] == "Paused"
    p = publisher(room, display="ivan", duration=60)
    p.wait_event("published", timeout=60)
    time.sleep(6)  # past maxIdleSeconds: paused, nothing is recorded, yet the room is not empty (no NoUsers stop)
    assert run.proc.poll() is None, run.describe()
    assert not any(e["status"].get("activeParticipants") for e in run.events)
    run.resume()
    resumed = run.wait_event("resumed", timeout=10)
    assert resumed["status"]["phase"] == "Recording" and resumed["status"]["activeParticipants"] == 1, resumed
    time.sleep(4)
    run.pause()
    paused = run.wait_event("paused", timeout=10)
    assert paused["status"]["phase"] == "Paused" and paused["status"]["activeParticipants"] == 0, paused
    time.sleep(6)
    run.resume()
    run.wait_event("resumed", timeout=10, predicate=lambda e: e is not resumed)
    time.sleep(4)
    run.terminate()
    status = run.wait(60)
    assert status["phase"] == "Completed" and status["stopReason"] == "Requested", status

    (_name, folder), = recording_folders(run.output).items()
    _check_playlist_and_files(folder, 2)
    info, d = read_participant(folder)
    assert d.decode_errors == 0
    disc = [i for i, (_, _, flag) in enumerate(info.entries) if flag]
    assert len(disc) == 1, info.entries  # the first resume starts the playlist; the second continues it
    total = sum(dur for _, dur, _ in info.entries)
    assert 6.5 < total < 10, (total, info.entries)  # ~4 s + ~4 s recorded, none of the 6 s + 6 s paused
    gaps = [b - a for a, b in itertools.pairwise(d.video_times) if b - a > 1.0]
    assert len(gaps) == 1 and 5.5 < gaps[0] < 8.0, gaps  # the second pause, on the recording's timeline
    manifest = _manifest(run)
    assert len(manifest["pauses"]) == 2 and all(x["pausedAt"] and x["resumedAt"] for x in manifest["pauses"])
    assert len(manifest["participants"][0]["joins"]) == 2


@FORMATS
def test_mp4_output_holds_the_media_of_the_playlist(record, room, publisher, fmt):
    """outputs: [hls, mp4]: one MP4 per participant with the segments' media (fMP4: Opus as sent); a rejoin is a
    gap in it."""
    run = record(room, recording={"outputs": ["hls", "mp4"], **fmt})
    _joined(run)
    p = publisher(room, display="judy", duration=11, leave_at=4, rejoin_at=7, flash_beep=True, id=4102)
    p.wait(90)
    status = run.wait(60)
    assert status["phase"] == "Completed", status
    (_name, folder), = recording_folders(run.output).items()
    _info, hls = read_participant(folder)
    mp4 = folder / "recording.mp4"
    assert mp4.is_file()
    record_ = _manifest(run)["participants"][0]["mp4"]
    assert record_["key"].endswith("/recording.mp4") and record_["bytes"] == mp4.stat().st_size
    assert record_["sha256"] == hashlib.sha256(mp4.read_bytes()).hexdigest()
    d = decode_segments([mp4])
    assert d.decode_errors == 0 and d.sizes == {(640, 480)}
    assert abs(d.video_frames - hls.video_frames) <= 2, (d.video_frames, hls.video_frames)
    # fMP4: the segments hold up to one silent audio frame more at each edge of each run (2 runs here): a run's
    # tracks start and end together there (output/fmp4.py); the MP4 keeps the packets as they came
    padding = 4 * 1024 if fmt else 0
    assert -2048 <= hls.audio_samples - d.audio_samples <= 2048 + padding, (d.audio_samples, hls.audio_samples)
    with av.open(str(mp4)) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == AUDIO[fmt.get("segmentFormat", "")]
    gaps = [b - a for a, b in itertools.pairwise(d.video_times) if b - a > 1.0]
    assert len(gaps) == 1 and 2.0 < gaps[0] < 4.5, gaps  # away from 4 s to 7 s, minus the rejoin's setup
    offsets = av_offsets(d.flashes, d.beeps, d.video_times)
    assert len(offsets) >= 4 and max(abs(o) for o in offsets) <= 0.040, offsets


def test_mp4_of_a_participant_whose_camera_stays_off_has_the_audio(record, room, publisher):
    run = record(room, recording={"outputs": ["hls", "mp4"]})
    _joined(run)
    publisher(room, display="kim", duration=14, video_delay=60).wait(90)  # video published, never sent
    assert run.wait(60)["phase"] == "Completed"
    (_name, folder), = recording_folders(run.output).items()
    _info, hls = read_participant(folder)
    d = decode_segments([folder / "recording.mp4"])
    assert hls.video_frames == 0 and d.video_frames == 0 and d.decode_errors == 0
    assert hls.audio_samples > 12 * 48000 and abs(d.audio_samples - hls.audio_samples) <= 2048, \
        (d.audio_samples, hls.audio_samples)


HOSTILE = ["../../../etc/passwd", "/abs/olute",
           "a\x07b\x1bc", "\uff21\uff22\uff0f\uff0e\uff0e", "x" * 300, "\u202eevil.ts", ".hidden",
           "../../../escape", "zero\u200bwidth\u2060", "\u05e9\u05dc\u05d5\u05dd\u202b"]


def test_hostile_display_names_stay_inside_the_prefix(record, room, publisher):
    run = record(room, recording={"streamTypes": "audio"})
    _joined(run)
    pubs = [publisher(room, display=name, duration=3, no_video=True) for name in HOSTILE]
    for p in pubs:
        p.wait(120)
    run.wait(60)
    out = run.output.resolve()
    files = [Path(root) / f for root, _, fs in os.walk(out) for f in fs]
    assert files
    for f in files:
        assert out in f.resolve().parents
        rel = f.relative_to(out)
        assert all(re.fullmatch(r"[A-Za-z0-9._-]+", part) and not part.startswith(".") for part in rel.parts), rel
        assert len(str(rel)) < 300
    # no file or folder named after a path a display name aimed at, anywhere in the test's folder (spool too)
    stray = [f for f in run.workdir.parent.rglob("*") if f.name in ("escape", "passwd", "etc", "abs", "olute")]
    assert not stray, stray
    folders = recording_folders(run.output)
    assert len(folders) == len(HOSTILE), sorted(folders)
    displays = sorted(p["display"] for p in _manifest(run)["participants"])
    assert displays == sorted(HOSTILE)  # the manifest keeps the real names


def test_one_percent_loss_on_the_forward_leg(record, room, publisher, test_network):
    rule = test_network.add_udp_loss("40000:44999", 0.01)
    try:
        run = record(room, recording={"segmentSeconds": 2})
        _joined(run)
        p = publisher(room, display="lossy", duration=12)
        sent = p.wait(90)
        run.wait(60)
    finally:
        rule.remove()
    (info, d), = _participant_outputs(run).values()  # no damaged frame stored (decoded fully)
    # the recording continues to the end and keeps most frames: a frame that lost a packet is dropped, and the
    # frames after it until the keyframe the recorder asks for at once (issue 16; 2 % loss: tests/integration/
    # test_whole_frames.py). Measured (under two CPU hogs): 16-19 packets lost, 14-37 frames dropped, 90-96 %
    # kept; in a CI-loaded run 22 lost, 94 dropped, 74 % kept (the publisher slower to send the keyframe)
    (part,) = _manifest(run)["participants"]
    assert part["packetsLost"] > 0, part
    assert d.video_frames + part["droppedFrames"] <= sent["video_frames"], part  # nothing counted twice
    # the keyframe request works: a loss costs a few frames, not the frames up to the next periodic keyframe
    assert part["droppedFrames"] <= 6 * part["packetsLost"], part
    assert d.video_frames >= 0.6 * sent["video_frames"], (d.video_frames, sent["video_frames"], part)
    print(f"1 % loss: gate lost {part['packetsLost']} packets, dropped {part['droppedFrames']} frames "
          f"({part['incompleteFrames']} incomplete); stored {d.video_frames}/{sent['video_frames']} frames")
    assert sum(dur for _, dur, _ in info.entries) > 10.5
    # every segment starts at a keyframe: damage cannot outlive the segment (≤ segmentSeconds + 1 s)
    import av
    for uri, _, _ in info.entries:
        path = recording_folders(run.output)[next(iter(recording_folders(run.output)))] / uri
        with av.open(str(path)) as c:
            first = next(c.decode(video=0))
            assert first.key_frame, uri


# -- errors: each a distinct reason, a message to act on, and no hang --------------------------------------------

def _fails(run: RecorderRun, reason: str, within: float = 30) -> dict:
    status = run.wait(within)
    assert run.proc.returncode == 1, run.describe()
    assert status["phase"] == "Failed" and status["reason"] == reason, status
    assert status["message"], status
    return status


def test_janus_unreachable(record, room, test_network):
    st = _fails(record(room, server=f"ws://{test_network.addr}:9"), "JanusUnreachable")
    assert "spec.room.server" in st["message"]


def test_room_missing(record, room):
    st = _fails(record(room, room_id=987654321), "RoomNotFound")
    assert "987654321" in st["message"]


def test_wrong_pin(record, make_room):
    room = make_room(pin="1234")
    room.pin = "9999"
    st = _fails(record(room), "RoomUnauthorized")
    assert "pin" in st["message"]


def test_wrong_admin_key_refuses_forwarding(record, room, publisher):
    run = record(room, env={"REEL_ROOM_ADMIN_KEY": "wrong"})
    _joined(run)
    publisher(room, display="ivan", duration=20, no_video=True)
    st = _fails(run, "ForwardUnauthorized", within=60)
    assert "adminKey" in st["message"]


def test_a_vp8_room_where_nobody_can_be_recorded_fails_with_a_clear_reason(record, make_room, publisher):
    """Video-only VP8 publishers, individual mode: nobody can be recorded; the session says why once the room
    has been without anyone recorded for maxIdleSeconds (a recordable participant could still have come)."""
    room = make_room(videocodec="vp8")
    run = record(room)
    _joined(run)
    publisher(room, display="judy", duration=20, no_audio=True)
    skipped = run.wait_event("participants", timeout=60)["status"]["participants"]
    assert skipped[0]["skipped"][0]["reason"] == "CodecUnsupported" and skipped[0]["playlist"] is None, skipped
    st = _fails(run, "CodecUnsupported", within=60)
    assert "nobody could be recorded" in st["message"] and "videocodec=h264" in st["message"]


def test_a_vp8_participant_in_an_h264_room_costs_the_others_nothing(record, make_room, publisher):
    """Alice and Bob publish H.264, Carol joins with VP8 (a room that allows both): Alice and Bob are recorded
    whole, Carol's sound is recorded and her video is listed as skipped, with what to do."""
    room = make_room(videocodec="h264,vp8")
    run = record(room)
    _joined(run)
    a = publisher(room, display="alice", duration=12)
    b = publisher(room, display="bob", duration=12)
    a.wait_event("published", timeout=60)
    b.wait_event("published", timeout=60)
    c = publisher(room, display="carol", duration=8, video_codec="vp8")
    published = c.wait_event("published", timeout=60)
    assert any(s.get("codec") == "vp8" for s in published["streams"]), published
    for p in (a, b, c):
        p.wait(90)
    status = run.wait(60)
    assert status["phase"] == "Completed" and status["stopReason"] == "NoUsers", status
    by_name = {p["display"]: p for p in status["participants"]}
    [skip] = by_name["carol"]["skipped"]
    assert skip["kind"] == "video" and skip["codec"] == "vp8" and skip["reason"] == "CodecUnsupported", skip
    assert "videocodec=h264" in skip["message"]
    assert "skipped" not in by_name["alice"] and "skipped" not in by_name["bob"]
    outputs = _participant_outputs(run)
    for name in ("alice", "bob"):
        (info, decoded), = [v for k, v in outputs.items() if k.startswith(name)]
        assert decoded.video_frames > 0 and decoded.audio_samples > 0 and decoded.decode_errors == 0, name
        assert sum(d for _, d, _ in info.entries) > 10, (name, info.entries)
    (info, decoded), = [v for k, v in outputs.items() if k.startswith("carol")]
    assert decoded.video_frames == 0 and decoded.audio_samples > 0 and decoded.decode_errors == 0
    assert 6 < sum(d for _, d, _ in info.entries) < 9, info.entries
    carol = next(p for p in _manifest(run)["participants"] if p["display"] == "carol")
    assert carol["skipped"] == [skip]


def test_invalid_session_exits_2_with_every_problem(tmp_path):
    import subprocess
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: reel.dev/v1alpha1\nkind: RecordingSession\nmetadata: {name: x}\n"
                   "spec: {room: {server: 'http://nope', id: ''}, storage: {bucket: 'Bad_Bucket'}}\n")
    r = subprocess.run(["reel-recorder", "--session", str(bad), "--output", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "spec.room.server" in r.stderr and "spec.room.id" in r.stderr and "bucket" in r.stderr
    assert not (tmp_path / "o").exists()


@FORMATS
def test_a_recorder_killed_mid_recording_is_continued_by_its_replacement(record, room, publisher, fmt):
    """SIGKILL (OOM, node lost): nothing flushed. A second recorder started with --resume continues the same
    recording: same id and folder, numbering on, a discontinuity, the interruption and lost segments listed; the
    MP4, built by the replacement from the stored segments, covers both runs with the gap. fMP4: each run has its
    own init segment, the first run's taken over with its segments."""
    recording = {"segmentSeconds": 2, "maxIdleSeconds": 10, "outputs": ["hls", "mp4"], **fmt}
    first = record(room, recording=recording)
    _joined(first)
    alice = publisher(room, display="alice", duration=20)
    first.wait_event("progress", timeout=30, predicate=lambda e: e["status"]["upload"]["segments"] >= 3)
    first.kill()  # SIGKILL: the open segment and anything in the spool die with it
    killed_at = time.monotonic()
    prefix = first.events[-1]["status"]["manifest"][: -len("manifest.json")]
    first_id = first.events[-1]["status"]["recordingId"]
    second = record(room, recording=recording, output=first.output, extra_args=["--resume", prefix])
    _joined(second)
    resumed_after = time.monotonic() - killed_at
    sent = alice.wait(90)
    status = second.wait(90)
    assert status["phase"] == "Completed" and status["recordingId"] == first_id, status

    [folder] = recording_folders(first.output).values()
    info, decoded = read_participant(folder)
    assert info.ended and decoded.decode_errors == 0
    numbers = [int(re.match(r"seg_(\d+)\.(ts|m4s)", uri).group(1)) for uri, _, _ in info.entries]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    gaps = [i for i, (_, _, disc) in enumerate(info.entries) if disc]
    assert len(gaps) == 1 and 2 <= gaps[0] < len(info.entries) - 2, info.entries  # one gap: the lost recorder
    manifest = _manifest(first)
    [interruption] = manifest["interruptions"]
    assert interruption["reason"] == "ResumedByHand" and interruption["resumedAt"] >= interruption["interruptedAt"]
    segs = [s for p in manifest["participants"] for s in p["segments"]]
    assert [s["name"] for s in segs] == [uri for uri, _, _ in info.entries]
    inits = manifest["participants"][0].get("inits", [])
    if fmt:  # fMP4: each run starts with an init segment of its own (and a new one wherever the init changes)
        firsts = [s for i, s in enumerate(segs) if i == 0 or s["discontinuity"]]
        assert all(s["init"] == "init_" + s["name"][4:9] + ".mp4" for s in firsts), segs
        assert {s["init"] for s in segs} == {i["name"] for i in inits} and len(inits) >= 2, inits
    for s in segs + inits:
        data = (first.output / s["key"]).read_bytes()
        assert s["bytes"] == len(data) and s["sha256"] == hashlib.sha256(data).hexdigest()
    for key in interruption["lostSegments"]:
        assert not (first.output / key).exists()
    # the gap: what the dead recorder had not closed, and the time until the second one records again
    total = sum(d for _, d, _ in info.entries)
    missing = sent["video_frames"] / FPS - total
    assert 0 < missing < resumed_after + 6, (missing, resumed_after)
    [p] = manifest["participants"]
    mp4 = folder / "recording.mp4"
    assert p["mp4"]["sha256"] == hashlib.sha256(mp4.read_bytes()).hexdigest()
    assert p["mp4"]["bytes"] == mp4.stat().st_size
    whole = decode_segments([mp4])
    assert whole.decode_errors == 0 and abs(whole.video_frames - decoded.video_frames) <= 2, \
        (whole.video_frames, decoded.video_frames)
    assert abs(whole.audio_samples - decoded.audio_samples) <= 4096, (whole.audio_samples, decoded.audio_samples)
    def widest_gap(times):
        return max(b - a for a, b in itertools.pairwise(sorted(times)))
    # the interruption is the same gap in the MP4 as in the playlist (where the kill and the resume fell)
    assert widest_gap(whole.video_times) > 3 / FPS, widest_gap(whole.video_times)
    assert abs(widest_gap(whole.video_times) - widest_gap(decoded.video_times)) < 0.1
    print(f"resume: {len(interruption['lostSegments'])} segment(s) lost, {missing:.1f} s of media missing, "
          f"replacement joined {resumed_after:.1f} s after the kill")
