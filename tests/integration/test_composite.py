"""Composite recording (spec.recording.mode composite/both) against a real Janus with aiortc publishers: the whole
meeting as one HLS recording, decoded back with PyAV.

The publishers send a solid colour each (``colour=``, with the harness's barcode strip on top and a noisy patch
bottom-right) and a tone each (``tone=``), so the decoded composite says who is where (the colour in each tile's
region) and who is heard (each tone's peak in the spectrum of the mix). Times: the manifest's ``startedAt`` is
the wall time of recording time 0; its composite segments' ``start`` is recording time; the publishers' and the
manifest's wall times map onto the composite's timeline through the first.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import av
import numpy as np
import pytest
from tests.harness.media import colour_yuv, parse_colour
from tests.support.analyze import av_offsets, decoder_errors, parse_playlist, read_participant, recording_folders
from tests.support.composite_media import peak_frequencies
from tests.support.ingests import INGESTS

W, H = 640, 360
COLOURS = {"alice": "#ff0000", "bob": "#00ff00", "carol": "#0000ff", "dave": "#ffff00"}
TONES = {"alice": 440, "bob": 620, "carol": 830, "dave": 1170}  # no one a harmonic or a 2f1-f2 product of others
BACKGROUND = (16, 128, 128)  # the default background, #000000
NAME_TILE = colour_yuv((48, 52, 60))  # composite/labels.py NAME_TILE: a participant without video
TOLERANCE = 14  # per Y/U/V component, mean of a sampled box (H.264 at a few hundred kbit/s, twice)


def _manifest(run) -> dict:
    [path] = run.output.rglob("manifest.json")
    return json.loads(path.read_text())


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- the decoded composite ------------------------------------------------------------------------------------------
@dataclass
class Composite:
    """The composite folder decoded: pictures (Y, U, V planes) and audio (mono float) on the recording timeline."""

    frames: list[tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(default_factory=list)
    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)
    entries: list[tuple[str, float, bool]] = field(default_factory=list)  # the playlist's (uri, duration, disc)
    ended: bool = False
    streams: list[set[str]] = field(default_factory=list)  # the stream types of each segment
    decode_errors: int = 0
    started_at: float = 0.0  # wall time of recording time 0 (the manifest's startedAt)

    def rec(self, wall: float) -> float:
        """A wall time on the recording timeline."""
        return wall - self.started_at

    def between(self, t0: float, t1: float):
        return [(t, p) for t, p in self.frames if t0 <= t < t1]

    def samples(self, t0: float, t1: float) -> np.ndarray:
        chunks = [s for t, s in self.audio if t0 <= t and t + len(s) / 48000 <= t1]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = []
    for p in frame.planes:
        a = np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)
        out.append(a[:, : p.width].copy())
    return tuple(out)


def read_composite(run) -> Composite:
    """The composite of ``run``: every listed segment decoded, each checked against the manifest (checksum, start
    on the recording timeline = the first timestamp in the segment)."""
    manifest = _manifest(run)
    folder = recording_folders(run.output)["composite"]
    info = parse_playlist((folder / "index.m3u8").read_text())
    segments = {Path(s["key"]).name: s for s in manifest["composite"]["segments"]}
    out = Composite(entries=info.entries, ended=info.ended, started_at=_wall(manifest["startedAt"]))
    for uri, _dur, _disc in info.entries:
        path = folder / uri
        seg = segments[uri]
        assert seg["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), uri
        first = None
        # audio as a player reads it, AAC as the PMT says (stream type 0x0F): FFmpeg probes such a stream, and a
        # segment of a few silent frames (a run ending just after a cut) probes as MP2 and merges them into one
        # packet; the frames after the first of a packet get their time from the samples before them
        aac, next_audio = av.CodecContext.create("aac", "r"), None
        with decoder_errors() as logged, av.open(str(path)) as c:
            out.streams.append({s.type for s in c.streams})
            for packet in c.demux(*c.streams.video[:1], *c.streams.audio[:1]):
                audio = packet.stream.type == "audio"
                if audio and packet.size == 0:
                    continue
                try:
                    frames = aac.decode(packet) if audio else packet.decode()
                except av.error.InvalidDataError:
                    out.decode_errors += 1
                    continue
                for fr in frames:
                    if audio:
                        t = float(fr.pts * packet.time_base) if fr.pts is not None else next_audio
                        next_audio = t + fr.samples / fr.sample_rate
                    else:
                        t = float(fr.pts * fr.time_base)
                    first = t if first is None else min(first, t)
                    if isinstance(fr, av.VideoFrame):
                        assert fr.format.name == "yuv420p" and (fr.width, fr.height) == (W, H), fr
                        out.frames.append((t, _planes(fr)))
                    else:
                        out.audio.append((t, fr.to_ndarray().astype(np.float32).mean(axis=0)))
        out.decode_errors += len(logged)  # a picture the decoder concealed is an error too (issue 16)
        # the timestamps are the recording's time: what the manifest says the segment starts at
        assert first is not None and abs(first - seg["start"]) < 0.1, (uri, first, seg["start"])
    out.frames.sort(key=lambda f: f[0])
    out.audio.sort(key=lambda a: a[0])
    return out


def yuv_at(planes, x: int, y: int, half: int = 8) -> tuple[float, float, float]:
    """Mean (Y, U, V) of the box of ``2 * half`` pixels around (x, y)."""
    py, pu, pv = planes
    cx, cy, ch = x // 2, y // 2, half // 2
    return (float(py[y - half:y + half, x - half:x + half].mean()),
            float(pu[cy - ch:cy + ch, cx - ch:cx + ch].mean()), float(pv[cy - ch:cy + ch, cx - ch:cx + ch].mean()))


def is_colour(yuv, expected, tolerance: float = TOLERANCE) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(yuv, expected, strict=True))


def yuv(colour: str) -> tuple[int, int, int]:
    return colour_yuv(parse_colour(colour))


# tile centres of the grid at W x H (issue 13: 1 → the whole frame, 2 → side by side, 3-4 → 2x2), in join order;
# centres are inside the (letterboxed) picture and away from the name label at its bottom
CENTRES = {1: [(W // 2, H // 2)],
           2: [(W // 4, H // 2), (3 * W // 4, H // 2)],
           4: [(W // 4, H // 4), (3 * W // 4, H // 4), (W // 4, 3 * H // 4), (3 * W // 4, 3 * H // 4)]}


def _start_in_order(room, publisher, names: list[str], *, end_after: float, gap: float = 0.3,
                    options: dict[str, dict] | None = None) -> list:
    """Publishers started one after another (each once the previous one publishes, so the join order is known),
    each publishing until about ``end_after`` s after the first one started; ``options``: more flags by name."""
    started = time.monotonic()
    pubs = []
    for name in names:
        left = max(4.0, end_after - (time.monotonic() - started))
        p = publisher(room, display=name, duration=round(left, 1), colour=COLOURS[name], tone=TONES[name],
                      **(options or {}).get(name, {}))
        p.wait_event("published", timeout=60)
        time.sleep(gap)
        pubs.append(p)
    return pubs


def _join_order(manifest: dict) -> list[str]:
    parts = sorted(manifest["participants"], key=lambda p: p["joins"][0]["joinedAt"])
    return [p["display"] for p in parts]


def _leaving(comp: Composite, pubs: list) -> list[float]:
    """When each publisher's leave request went out, on the recording timeline. (The manifest's leftAt is later:
    the recorder notes a leave once that participant's ingest has stopped, ~0.7 s after it.)"""
    return [comp.rec(p.wait_event("leaving", timeout=5)["wall"]) for p in pubs]


def _together(manifest: dict, comp: Composite, pubs: list) -> tuple[float, float]:
    """The stretch of the recording timeline where every participant was in the room: from the last join the
    recorder saw (the manifest's joinedAt) to the first leave request."""
    joins = [j for p in manifest["participants"] for j in p["joins"]]
    return max(comp.rec(_wall(j["joinedAt"])) for j in joins), min(_leaving(comp, pubs))


def _check_tones(samples: np.ndarray, tones: list[int]) -> list[float]:
    """Each tone is one of the strongest peaks of the spectrum, and they are heard at about the same level."""
    assert len(samples) > 48000, len(samples)
    peaks = peak_frequencies(samples, count=len(tones))
    assert sorted(round(f) for f in peaks) == sorted(tones), (peaks, tones)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / 48000)
    levels = [float(spectrum[np.abs(freqs - f) < 3].max()) for f in tones]
    assert max(levels) / min(levels) < 2.0, dict(zip(tones, levels, strict=True))  # within 6 dB of each other
    return peaks


# -- tests ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", [{}, {"segmentFormat": "fmp4"}], ids=["ts", "fmp4"])
def test_mode_both_gives_each_participant_and_the_composite(record, room, publisher, fmt):
    """fMP4: the composite's folder too (its audio is AAC: it is mixed), the participants' with Opus as sent."""
    run = record(room, recording={"mode": "both", "composite": {"width": 640, "height": 360}, **fmt})
    run.wait_event("joined", timeout=30)
    a = publisher(room, display="alice", duration=8)
    b = publisher(room, display="bob", duration=8)
    a.wait(60)
    b.wait(60)
    status = run.wait(60)
    assert status["phase"] == "Completed", status
    folders = recording_folders(run.output)
    assert "composite" in folders and len(folders) == 3, folders
    info, decoded = read_participant(folders["composite"])
    assert info.ended and decoded.decode_errors == 0 and decoded.sizes == {(640, 360)}, decoded
    total = sum(d for _, d, _ in info.entries)
    assert 6.0 < total < 10.0, info.entries
    assert decoded.audio_samples > 6 * 48000
    manifest = _manifest(run)
    composite = manifest["composite"]
    assert composite["playlist"].endswith("composite/index.m3u8") and composite["frames"] > 0
    assert bool(composite.get("inits")) == bool(fmt) and all(bool(s.get("init")) == bool(fmt)
                                                             for s in composite["segments"])
    for s in composite["segments"] + composite.get("inits", []):
        data = (run.output / s["key"]).read_bytes()
        assert s["sha256"] == hashlib.sha256(data).hexdigest()
    if fmt:
        for name, folder in folders.items():
            with av.open(str(folder / "index.m3u8")) as c:
                assert c.streams.audio[0].codec_context.name == ("aac" if name == "composite" else "opus"), name
    assert status["composite"]["playlist"] == composite["playlist"]
    assert composite["playlist"] in status["playlists"] and len(status["playlists"]) == 3
    print(f"composite: {total:.1f} s, {composite['frames']} frames, {composite['droppedFrames']} dropped")


COMPOSITE = {"mode": "composite", "composite": {"width": W, "height": H}}


@pytest.mark.parametrize("n", [1, 2, 4])
def test_grid_shows_each_colour_in_its_tile_and_mixes_each_tone(record, room, publisher, n):
    names = list(COLOURS)[:n]
    run = record(room, recording=COMPOSITE)
    run.wait_event("joined", timeout=30)
    pubs = _start_in_order(room, publisher, names, end_after=7 + n)
    for p in pubs:
        p.wait(90)
    status = run.wait(60)
    assert status["phase"] == "Completed", status
    manifest = _manifest(run)
    assert _join_order(manifest) == names, manifest["participants"]
    assert [p["playlist"] for p in manifest["participants"]] == [None] * n  # mode composite: no media of their own
    comp = read_composite(run)
    assert comp.ended and comp.decode_errors == 0 and comp.entries, comp.entries
    assert status["composite"]["playlist"] == manifest["composite"]["playlist"] and status["playlists"] == [
        manifest["composite"]["playlist"]]
    t0, t1 = _together(manifest, comp, pubs)
    window = comp.between(t0 + 1.5, t1 - 0.3)  # everyone's picture has arrived (forward, keyframe, alignment)
    assert len(window) >= 2 * 15, (t0, t1, len(window))
    for t, planes in window:
        for name, (x, y) in zip(names, CENTRES[n], strict=True):
            got = yuv_at(planes, x, y)
            assert is_colour(got, yuv(COLOURS[name])), (f"t={t:.3f}", name, (x, y), got, yuv(COLOURS[name]))
    samples = comp.samples(t0 + 1.5, t1 - 0.5)  # a publisher stops its media 0.25 s before its leave request
    peaks = _check_tones(samples, [TONES[name] for name in names])
    peak, rms = float(np.abs(samples).max()), float(np.sqrt(np.mean(np.square(samples))))
    if n == 1:  # a single speaker under the limiter's threshold passes unchanged: the tone is 0.3 of full scale,
        # sent at 0.3 x 0.707 (aiortc's Opus encoder upmixes mono to stereo at -3 dB): RMS 0.15
        assert abs(rms / (0.3 * 0.5) - 1) < 0.08, rms
    else:  # a sum limited, not clipped: at most the limit (-1 dBFS, 0.89) and a little AAC overshoot
        assert peak <= 0.95, peak
    print(f"{n} participant(s): {len(window)} frames checked, together {t1 - t0:.1f} s, "
          f"peaks {[round(f, 1) for f in peaks]} Hz, peak amplitude {peak:.3f}, RMS {rms:.3f}, "
          f"frames {manifest['composite']['frames']}, dropped {manifest['composite']['droppedFrames']}")


def _layout(planes) -> int | None:
    """1: alice alone (the whole frame: pillarboxed, background at the left edge); 2: alice on the left, someone
    else on the right; None: neither (nothing shown yet)."""
    red = yuv(COLOURS["alice"])
    edge, right = yuv_at(planes, 40, H // 2), yuv_at(planes, 3 * W // 4, H // 2)
    if is_colour(edge, BACKGROUND) and is_colour(right, red):
        return 1
    if is_colour(edge, red) and not is_colour(right, red):
        return 2
    return None


def test_a_join_and_a_leave_reflow_the_layout_within_a_second(record, room, publisher):
    run = record(room, recording=COMPOSITE)
    run.wait_event("joined", timeout=30)
    a = publisher(room, display="alice", duration=15, colour=COLOURS["alice"], tone=TONES["alice"])
    a.wait_event("published", timeout=60)
    time.sleep(3)
    b = publisher(room, display="bob", duration=6, colour=COLOURS["bob"], tone=TONES["bob"])
    b_published = b.wait_event("published", timeout=60)
    b_leaving = b.wait_event("leaving", timeout=60)  # his leave request goes out
    b.wait(60)
    a.wait(60)
    assert run.wait(60)["phase"] == "Completed"
    manifest = _manifest(run)
    comp = read_composite(run)
    assert comp.decode_errors == 0
    [bob] = [p for p in manifest["participants"] if p["display"] == "bob"]
    [run_b] = bob["joins"]
    layouts = [(t, _layout(planes), planes) for t, planes in comp.frames]
    # alice alone, then side by side from bob's join, then alone again from his leave
    first_two = next(t for t, lay, _ in layouts if lay == 2)
    back = next(t for t, lay, _ in layouts if t > first_two and lay == 1)
    before = [lay for t, lay, _ in layouts if t < first_two]
    during = [lay for t, lay, _ in layouts if first_two <= t < back]
    after = [lay for t, lay, _ in layouts if t >= back]
    assert set(before) <= {1, None} and 1 in before, before  # None: before alice's first picture
    assert set(during) == {2} and set(after) == {1}, (during, after)
    green = next(t for t, _lay, planes in layouts
                 if first_two <= t < back and is_colour(yuv_at(planes, 3 * W // 4, H // 2), yuv(COLOURS["bob"])))
    # once shown, bob's picture stays until the layout goes back (his last picture is kept)
    assert all(is_colour(yuv_at(planes, 3 * W // 4, H // 2), yuv(COLOURS["bob"]))
               for t, _lay, planes in layouts if green <= t < back)
    # the events: as the publisher saw them (published; its leave request), and as the recorder saw them (the
    # manifest's joinedAt/leftAt), on the composite's timeline
    join, leave = comp.rec(b_published["wall"]), comp.rec(b_leaving["wall"])
    seen_join, seen_leave = comp.rec(_wall(run_b["joinedAt"])), comp.rec(_wall(run_b["leftAt"]))
    print(f"join at {join:.3f} s: layout changed after {(first_two - join) * 1000:.0f} ms "
          f"({(first_two - seen_join) * 1000:.0f} ms after the manifest's joinedAt), his picture after "
          f"{(green - join) * 1000:.0f} ms; leave at {leave:.3f} s: layout changed after "
          f"{(back - leave) * 1000:.0f} ms ({(back - seen_leave) * 1000:.0f} ms after the manifest's leftAt)")
    # Janus tells the publisher (webrtcup) and the room (a publishers event) at the same moment, and either process
    # may read it first: the layout may not change before the earlier of the two, nor later than a second after
    # the publisher's own view.  (The CI run of 2026-12-01 saw the recorder's joinedAt 15 ms before "published".)
    joined = min(join, seen_join)
    assert first_two >= joined and first_two - join <= 1.0 and 0 <= back - leave <= 1.0, (
        first_two - joined, first_two - join, back - leave)
    # the manifest's times are the recorder's: it notes the leave once that participant's ingest has stopped
    # (~0.7 s after the leave), the composite reflows before that
    assert -0.1 <= first_two - seen_join <= 1.0 and back - seen_leave <= 1.0, (first_two - seen_join,
                                                                                back - seen_leave)


def test_camera_off_gives_a_name_tile(record, room, publisher):
    """bob publishes video but never sends a picture (camera off), carol publishes no video at all: both get a
    tile with their name while alice's picture shows; everyone is heard."""
    run = record(room, recording=COMPOSITE)
    run.wait_event("joined", timeout=30)
    names = ["alice", "bob", "carol"]
    pubs = _start_in_order(room, publisher, names, end_after=11,
                           options={"bob": {"video_delay": 60}, "carol": {"no_video": True}})
    for p in pubs:
        p.wait(90)
    assert run.wait(60)["phase"] == "Completed"
    manifest = _manifest(run)
    assert _join_order(manifest) == names
    comp = read_composite(run)
    assert comp.decode_errors == 0
    t0, t1 = _together(manifest, comp, pubs)
    window = comp.between(t0 + 1.5, t1 - 0.3)
    assert len(window) >= 2 * 15, (t0, t1, len(window))
    # 3 tiles: 2x2, the incomplete last row centred: alice top left, bob top right, carol bottom middle
    cells = {"alice": (0, 0), "bob": (W // 2, 0), "carol": (W // 4, H // 2)}
    cw, ch = W // 2, H // 2
    for t, planes in window:
        x, y = cells["alice"]
        assert is_colour(yuv_at(planes, x + cw // 2, y + ch // 2), yuv(COLOURS["alice"])), t
        for name in ("bob", "carol"):
            x, y = cells[name]
            tile = yuv_at(planes, x + cw // 2, y + ch // 5)  # above the name, which is in the middle
            assert is_colour(tile, NAME_TILE, 6), (f"t={t:.3f}", name, tile)
            assert not any(is_colour(tile, yuv(c)) for c in COLOURS.values())
            text = planes[0][y + ch // 2 - 12:y + ch // 2 + 12, x + cw // 4:x + 3 * cw // 4]
            assert text.max() > 180, (name, int(text.max()))  # the name, in white
    _check_tones(comp.samples(t0 + 1.5, t1 - 0.5), [TONES[name] for name in names])


@INGESTS
def test_vp8_room_composite_records_it_and_mode_both_keeps_it_out_of_their_own_folder(record, make_room, publisher,
                                                                                      ingest):
    """A VP8 room: the composite decodes VP8, so mode composite records it whole; mode both records the picture
    in the composite only (their own folder, MPEG-TS copying, cannot carry VP8: their sound only, the video
    listed as skipped with what to do)."""
    room = make_room(videocodec="vp8")
    composite = record(room, recording={**COMPOSITE, **ingest})
    both = record(room, recording={**COMPOSITE, "mode": "both", **ingest})
    composite.wait_event("joined", timeout=30)
    both.wait_event("joined", timeout=30)
    p = publisher(room, display="alice", duration=8, colour=COLOURS["alice"], tone=TONES["alice"])
    p.wait(60)
    for run in (composite, both):
        status = run.wait(60)
        assert status["phase"] == "Completed", status
        manifest = _manifest(run)
        comp = read_composite(run)
        assert comp.decode_errors == 0
        t0, t1 = _together(manifest, comp, [p])
        window = comp.between(t0 + 1.5, t1 - 0.3)
        assert len(window) >= 3 * 15, (t0, t1, len(window))
        for t, planes in window:
            got = yuv_at(planes, W // 2, H // 2)
            assert is_colour(got, yuv(COLOURS["alice"])), (t, got)
        _check_tones(comp.samples(t0 + 1.5, t1 - 0.5), [TONES["alice"]])
    [alice] = status["participants"]  # mode both's
    [skip] = alice["skipped"]
    assert skip["kind"] == "video" and skip["reason"] == "CodecUnsupported", skip
    assert "composite only" in skip["message"] and "videocodec=h264" in skip["message"], skip
    own = {k: v for k, v in recording_folders(both.output).items() if k != "composite"}
    (folder,) = own.values()
    info, decoded = read_participant(folder)
    assert decoded.video_frames == 0 and decoded.audio_samples > 0 and decoded.decode_errors == 0
    print(f"VP8 room: composite and mode both record the picture; mode both's own folder: "
          f"{sum(d for _, d, _ in info.entries):.1f} s of sound")


def _composite_av_offsets(folder: Path) -> list[float]:
    """A/V offsets (video - audio) of the composite of one flash-and-beep participant. As for a participant's own
    recording (tests.support.analyze), with one difference: the composite has pictures before the participant's
    first one (a name tile, dark), so only the frames that show their picture count as video, and a recording
    that starts in the middle of a flash has no onset there."""
    info = parse_playlist((folder / "index.m3u8").read_text())
    flashes, beeps, pictures = [], [], []
    for uri, _, _ in info.entries:
        with av.open(str(folder / uri)) as c:
            for packet in c.demux(*c.streams.video[:1], *c.streams.audio[:1]):
                for fr in packet.decode():
                    t = float(fr.pts * fr.time_base)
                    if isinstance(fr, av.VideoFrame):
                        y = fr.to_ndarray(format="gray")
                        if abs(float(y[H // 4 - 8:H // 4 + 8, W // 2 - 8:W // 2 + 8].mean()) - NAME_TILE[0]) > 20:
                            pictures.append(t)  # black or white: the participant's picture, not their name tile
                            if y.mean() > 128:
                                flashes.append(t)
                    else:
                        loud = np.nonzero(np.abs(fr.to_ndarray()).max(axis=0) > 0.1)[0]
                        if loud.size:
                            beeps.append(t + loud[0] / fr.sample_rate)
    return av_offsets(flashes, beeps, pictures)


def test_composite_av_offset_with_a_flash_and_beep_publisher(record, room, publisher):
    """One publisher whose flash and beep come from one clock, recorded twice at once, mode both: the composite at
    30 fps and at the default 15 fps. Each participant's own copy tells what the ingest's alignment contributes
    (the same in every mode); what the composite adds is its choice of picture: the one nearest to each output
    frame's time, so at most half an output frame (17 ms at 30 fps, 33 ms at 15 fps), early or late. That holds
    for media that reaches the composite within its latency (0.3 s); on a machine too busy for that (CI: two
    recorders, Janus and a publisher on two cores, the second recorder starting while the first records) a
    picture can come later, or a tick be dropped, and the flash is shown a picture late: the recorder must then
    have counted it (status.composite latePictures, droppedFrames), and at least five flashes must be exact."""
    runs = {30: record(room, recording={"mode": "both", "composite": {"width": W, "height": H, "fps": 30}})}
    runs[30].wait_event("joined", timeout=30)
    p = publisher(room, display="sync", duration=12, flash_beep=True)
    # the second recorder once the first forwards: two recorders in one network namespace share its address,
    # and a port pair checked free by both at the same moment would be given to both
    runs[30].wait_event("participants", timeout=30, predicate=lambda e: e["status"]["activeParticipants"] == 1)
    runs[15] = record(room, recording={"mode": "both", "composite": {"width": W, "height": H}})
    p.wait(90)
    for fps, run in runs.items():
        status = run.wait(60)
        assert status["phase"] == "Completed", fps
        counted = status["composite"]["latePictures"] + status["composite"]["droppedFrames"]
        folders = recording_folders(run.output)
        composite = _composite_av_offsets(folders.pop("composite"))
        (folder,) = folders.values()
        _info, d = read_participant(folder)
        own = av_offsets(d.flashes, d.beeps, d.video_times)
        assert len(composite) >= 5 and len(own) >= 5, (fps, composite, own)  # the second recorder starts ~2 s late
        added = [c - statistics.median(own) for c in composite]
        print(f"A/V offset (video - audio) at {fps} fps: composite {_ms(composite)}, the participant's own copy "
              f"{_ms(own)}: the composite adds {_ms(added)}; late pictures and dropped ticks: {counted}")
        # the composite adds at most half an output frame to what the ingest's alignment gives the participant,
        # except where a picture came too late or a tick was dropped, which the recorder counted
        exact = [c for c, a in zip(composite, added, strict=True) if abs(a) <= 0.5 / fps + 0.002]
        assert len(composite) - len(exact) <= counted and len(exact) >= 5, (fps, counted, composite, own)
        assert max(own) - min(own) <= 0.002 and max(exact) - min(exact) <= 0.002, (exact, own)
        if fps == 30:
            # issue 13: A/V sync within 20 ms, measured. Met at 30 fps, as measured here: the output frames' phase
            # follows the first audio packet (the recorder is in the room before the publisher starts, so it is
            # the same every run) and the composite shows each flash -19.9 ms or +13.4 ms from its beep, by the
            # sign of the ingest's skew. In general it is the skew (~±6 ms) plus up to half a frame (17 ms); at
            # the default 15 fps half a frame alone is 33 ms, so 15 fps is not held to 20 ms.
            assert max(abs(c) for c in exact) <= 0.020, composite


def _ms(offsets: list[float]) -> str:
    values = sorted({round(o * 1000, 1) for o in offsets})
    return "/".join(f"{v:+.1f}" for v in values) + " ms"


def test_audio_only_recording_mixes_every_tone(record, room, publisher):
    run = record(room, recording={**COMPOSITE, "streamTypes": "audio"})
    run.wait_event("joined", timeout=30)
    pubs = _start_in_order(room, publisher, ["alice", "bob"], end_after=9, options={"bob": {"no_video": True}})
    for p in pubs:
        p.wait(90)
    assert run.wait(60)["phase"] == "Completed"
    manifest = _manifest(run)
    comp = read_composite(run)
    assert comp.ended and comp.decode_errors == 0 and not comp.frames
    assert comp.streams and all(s == {"audio"} for s in comp.streams), comp.streams
    assert manifest["composite"]["frames"] == 0
    t0, t1 = _together(manifest, comp, pubs)
    _check_tones(comp.samples(t0 + 1.5, t1 - 0.5), [TONES["alice"], TONES["bob"]])
    total = sum(d for _, d, _ in comp.entries)
    first_join = min(comp.rec(_wall(j["joinedAt"])) for p in manifest["participants"] for j in p["joins"])
    last_leave = max(_leaving(comp, pubs))
    # from the first media to the last leave: no idle tail (maxIdleSeconds 5). Up to ~0.75 s more when two leave
    # within that of each other: the recorder handles the second leave once the first one's ingest has stopped
    assert last_leave - first_join - 1.0 < total <= last_leave - first_join + 1.0, (total, first_join, last_leave)
    print(f"audio only: {total:.2f} s, first join {first_join:.2f} s, last leave {last_leave:.2f} s")


def test_pause_and_resume_continue_the_composite_after_a_discontinuity(record, room, publisher):
    run = record(room, recording=COMPOSITE)
    run.wait_event("joined", timeout=30)
    p = publisher(room, display="alice", duration=60, colour=COLOURS["alice"], tone=TONES["alice"])
    p.wait_event("published", timeout=60)
    time.sleep(4)
    run.pause()
    paused = run.wait_event("paused", timeout=10)
    time.sleep(3)
    run.resume()
    resumed = run.wait_event("resumed", timeout=10)
    time.sleep(4)
    run.terminate()
    status = run.wait(60)
    p.stop()
    assert status["phase"] == "Completed" and status["stopReason"] == "Requested", status
    manifest = _manifest(run)
    comp = read_composite(run)
    assert comp.ended and comp.decode_errors == 0
    disc = [i for i, (_, _, flag) in enumerate(comp.entries) if flag]
    assert len(disc) == 1 and disc[0] > 0, comp.entries  # the resumed run follows a discontinuity
    assert [s["discontinuity"] for s in manifest["composite"]["segments"]] == [flag for _, _, flag in comp.entries]
    [pause] = manifest["pauses"]
    paused_at, resumed_at = comp.rec(_wall(pause["pausedAt"])), comp.rec(_wall(pause["resumedAt"]))
    times = [t for t, _ in comp.frames]
    gaps = [(a, b) for a, b in itertools.pairwise(times) if b - a > 0.5]
    assert len(gaps) == 1, gaps
    (last, first), = gaps
    print(f"pause {paused_at:.2f}-{resumed_at:.2f} s; composite pictures until {last:.2f} s, again from {first:.2f} s")
    # the composite's run ends at the pause (not once the ingest has stopped) and the next starts after the resume
    assert paused_at - 0.1 <= last <= paused_at + 0.1 and resumed_at <= first <= resumed_at + 2.0, (
        last, first, paused_at, resumed_at)
    segments = manifest["composite"]["segments"]
    after = segments[disc[0]]
    assert after["start"] >= resumed_at and segments[disc[0] - 1]["start"] + segments[disc[0] - 1]["duration"] <= (
        paused_at + 0.1), (segments, paused_at, resumed_at)
    assert not [t for t, _ in comp.audio if last + 0.1 < t < first - 0.1], "audio while paused"
    for a, b in ((times[0], last), (first, times[-1])):  # each run: alice's picture once it has arrived, her tone
        shown = comp.between(a + 1.0, b)
        assert len(shown) >= 2 * 15 and all(is_colour(yuv_at(planes, W // 2, H // 2), yuv(COLOURS["alice"]))
                                            for _, planes in shown), (a, b)
        _check_tones(comp.samples(a + 1.0, b), [TONES["alice"]])
    assert paused["status"]["phase"] == "Paused" and resumed["status"]["phase"] == "Recording"
