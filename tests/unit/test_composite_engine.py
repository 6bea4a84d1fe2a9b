"""The composite engine end to end (composite/engine.py, encoder.py, tee.py) on synthetic media: solid-colour
H.264 and Opus tones in, H.264 + AAC packets out that decode to the right tiles and tones.

Most tests drive the engine's ticks with ``pump(now)`` on a simulated clock (fast, deterministic); one runs
its thread on the real clock."""

from __future__ import annotations

import threading
import time

import av
import numpy as np
import pytest
from tests.support.composite_media import decode_all, peak_frequencies, solid_h264, tone_opus

from reel_recorder.clock import RecordingClock
from reel_recorder.composite.config import CompositeConfig
from reel_recorder.composite.encoder import AacPassthrough
from reel_recorder.composite.engine import CompositeEngine
from reel_recorder.composite.tee import TeeSink
from reel_recorder.media import h264

RED, BLUE = (255, 0, 0), (0, 0, 255)
FPS = 15


@pytest.fixture(scope="module")
def media():
    return {"red": solid_h264(RED, count=90, gop=30), "blue": solid_h264(BLUE, count=90, gop=30, seed=2),
            "a440": tone_opus(440, 3.0), "a1000": tone_opus(1000, 3.0)}


class Out:
    def __init__(self):
        self.packets: list[tuple[str, av.Packet, float]] = []
        self.run_ends: list[int] = []

    def __call__(self, kind, packet, t):
        self.packets.append((kind, packet, t))

    def run_end(self):
        self.run_ends.append(len(self.packets))

    def of(self, kind):
        return [(p, t) for k, p, t in self.packets if k == kind]


def engine_for(out: Out, **config) -> CompositeEngine:
    config = {"width": 320, "height": 240, "fps": FPS, "video_bitrate": 300_000, "segment_seconds": 1.0} | config
    return CompositeEngine(CompositeConfig(**config), RecordingClock(0.0), out, on_run_end=out.run_end)


def simulate(engine, streams: dict, t0: float, until: float, step: float = 0.01) -> None:
    """Feed each (pid, kind) packet list (30 fps video, 20 ms audio, from t0) when the simulated clock reaches
    its time, pumping the engine as the clock goes."""
    cursors = dict.fromkeys(streams, 0)
    now = t0
    while now < until:
        for (pid, kind), packets in streams.items():
            spacing = 1 / 30 if kind == "video" else 0.02
            i = cursors[(pid, kind)]
            while i < len(packets) and t0 + i * spacing <= now - 0.005:
                getattr(engine, kind)(pid, packets[i], t0 + i * spacing)
                i += 1
            cursors[(pid, kind)] = i
        engine.pump(now)
        now += step


def two_participants(media) -> dict:
    return {("a", "video"): media["red"], ("a", "audio"): media["a440"],
            ("b", "video"): media["blue"], ("b", "audio"): media["a1000"]}


def test_end_to_end_h264_and_aac_that_decode(media):
    out = Out()
    engine = engine_for(out)
    engine.add("a", "Alice", 0.0)
    engine.add("b", "Bob", 0.0)
    simulate(engine, two_participants(media), 1.0, 4.0)
    engine.close(at=4.0)
    video, audio = out.of("video"), out.of("audio")
    # video: 3 s at 15 fps from the first media (t = 1.0), a keyframe with SPS/PPS every segment (1 s)
    times = [t for _, t in video]
    assert len(video) == 45 and times[0] == pytest.approx(1.0)
    assert np.allclose(np.diff(times), 1 / FPS)
    keys = [t for p, t in video if p.is_keyframe]
    assert keys == pytest.approx([1.0, 2.0, 3.0])
    assert all(h264.has_parameter_sets(bytes(p)) for p, _ in video if p.is_keyframe)
    assert all(p.pts == round(t * 90000) for p, t in video)
    frames = decode_all("h264", [p for p, _ in video])
    assert len(frames) == 45
    img = frames[30].to_ndarray(format="rgb24").astype(int)
    assert np.abs(img[120, 80] - RED).max() < 30 and np.abs(img[120, 240] - BLUE).max() < 30
    # audio: AAC from the same start (less the encoder's 1024-sample priming), contiguous, both tones
    pts = [p.pts for p, _ in audio]
    assert pts[0] == 48000 - 1024 and set(np.diff(pts)) == {1024}
    assert pts[-1] / 48000 == pytest.approx(4.0, abs=0.05)
    decoded = decode_all("aac", [p for p, _ in audio], extradata=engine.audio_template.codec_context.extradata)
    samples = np.concatenate([f.to_ndarray() for f in decoded], axis=1)[0]
    assert sorted(round(f / 10) * 10 for f in peak_frequencies(samples[48000:])) == [440, 1000]
    assert engine.stats()["droppedFrames"] == 0 and out.run_ends == [len(out.packets)]


def test_everyone_leaving_ends_the_run_there_and_a_return_starts_another(media):
    out = Out()
    engine = engine_for(out)
    engine.add("a", "Alice", 0.0)
    streams = {("a", "video"): media["red"][:45], ("a", "audio"): media["a440"][:75]}
    simulate(engine, streams, 1.0, 2.5)
    engine.remove("a", at=2.5)
    simulate(engine, {}, 2.5, 4.0)  # no trailing idle time: the run ended at 2.5
    assert len(out.run_ends) == 1
    assert max(t for _, t in out.of("video")) < 2.5
    assert max(p.pts + p.duration for p, _ in out.of("audio")) / 48000 == pytest.approx(2.5, abs=0.03)
    engine.add("a", "Alice", 5.0)
    first_again = len(out.packets)
    simulate(engine, {("a", "video"): media["red"][:30]}, 5.0, 6.0)
    engine.close(at=6.0)
    assert engine.runs == 2 and len(out.run_ends) == 2
    again = [(p, t) for k, p, t in out.packets[first_again:] if k == "video"]
    assert again[0][1] == pytest.approx(5.0) and again[0][0].is_keyframe


def test_pause_is_a_gap(media):
    out = Out()
    engine = engine_for(out)
    engine.add("a", "Alice", 0.0)
    simulate(engine, {("a", "video"): media["red"][:30]}, 1.0, 2.0)
    engine.pause(at=2.0)
    simulate(engine, {("a", "video"): media["red"][:30]}, 2.0, 3.0)  # ignored while paused
    assert len(out.run_ends) == 1 and max(t for _, t in out.of("video")) < 2.0
    engine.resume()
    simulate(engine, {("a", "video"): media["red"][:30]}, 3.0, 4.0)
    engine.close(at=4.0)
    times = [t for _, t in out.of("video")]
    assert not [t for t in times if 2.0 <= t < 3.0]
    assert min(t for t in times if t >= 3.0) == pytest.approx(3.0) and engine.runs == 2


def test_a_slow_compositor_drops_pictures_never_sound(media):
    out = Out()
    engine = engine_for(out, drop_after=0.2)
    engine.add("a", "Alice", 0.0)
    for i, p in enumerate(media["a440"][:100]):
        engine.audio("a", p, 1.0 + i * 0.02)
    for i, p in enumerate(media["red"][:60]):
        engine.video("a", p, 1.0 + i / 30)
    engine.pump(3.5)  # the compositor woke up far behind its ticks
    assert engine.dropped_frames > 10
    assert engine.frames + engine.dropped_frames == 34  # ticks 1.0 ... 3.2 are due at 3.5 - latency (0.3)
    pts = [p.pts for p, _ in out.of("audio")]
    assert set(np.diff(pts)) == {1024} and pts[-1] / 48000 > 3.0


def test_audio_only_composite(media):
    out = Out()
    engine = engine_for(out, video=False)
    engine.add("a", "Alice", 0.0)
    engine.add("b", "Bob", 0.0)
    simulate(engine, {("a", "audio"): media["a440"][:50], ("b", "audio"): media["a1000"][:50],
                      ("a", "video"): media["red"][:10]}, 1.0, 2.0)
    engine.close(at=2.0)
    assert not out.of("video") and len(out.of("audio")) > 40


def test_engine_thread_on_the_real_clock(media):
    out = Out()
    clock = RecordingClock()
    engine = CompositeEngine(CompositeConfig(width=320, height=240, fps=FPS, video_bitrate=300_000,
                                             latency=0.15), clock, out, on_run_end=out.run_end)
    tap = engine.add("a", "Alice")
    engine.start()
    start = clock.now()

    def feed(kind, packets, spacing):
        for i, p in enumerate(packets):
            t = start + i * spacing
            time.sleep(max(0.0, t - clock.now()))
            getattr(tap, kind)(p, t)

    feeders = [threading.Thread(target=feed, args=("video", media["red"][:30], 1 / 30)),
               threading.Thread(target=feed, args=("audio", media["a440"][:50], 0.02))]
    for f in feeders:
        f.start()
    for f in feeders:
        f.join()
    engine.close(at=start + 1.0)
    assert engine.error is None and engine.dropped_frames == 0
    assert len(out.of("video")) == 15 and len(out.of("audio")) >= 45
    assert len(decode_all("h264", [p for p, _ in out.of("video")])) == len(out.of("video"))


def test_tee_feeds_the_writer_first_and_keeps_composite_failures_to_itself():
    calls = []

    class Writer:
        request_keyframe = None

        def video(self, packet, t):
            calls.append(("writer", t))

        def audio(self, packet, t):
            calls.append(("writer-audio", t))

    class Broken:
        request_keyframe = None

        def video(self, packet, t):
            calls.append(("composite", t))
            raise RuntimeError("boom")

        def audio(self, packet, t):
            calls.append(("composite-audio", t))

    writer, composite = Writer(), Broken()
    tee = TeeSink(writer, composite)
    tee.video(av.Packet(b"x"), 1.0)
    tee.video(av.Packet(b"x"), 2.0)
    tee.audio(av.Packet(b"x"), 3.0)
    assert calls == [("writer", 1.0), ("composite", 1.0), ("writer", 2.0), ("composite", 2.0),
                     ("writer-audio", 3.0), ("composite-audio", 3.0)]
    assert tee.errors == 2

    def ask():
        return None

    tee.request_keyframe = ask
    assert writer.request_keyframe is ask and composite.request_keyframe is ask


def test_packets_record_through_a_participant_writer(media, tmp_path):
    """The wiring the engine's docstring describes: a ParticipantWriter for "composite" fed the engine's
    packets, its Opus->AAC transcoder replaced by AacPassthrough."""
    from reel_recorder.output.writer import ParticipantWriter

    out = Out()
    engine = engine_for(out)
    segments = []
    writer = ParticipantWriter("composite", tmp_path, segment_seconds=1.0, on_segment=segments.append,
                               audio_transcoder=lambda: AacPassthrough(engine.audio_template))
    engine.on_packet = lambda kind, p, t: getattr(writer, kind)(p, t)
    engine.on_run_end = writer.pause
    engine.add("a", "Alice", 0.0)
    simulate(engine, two_participants(media) | {("b", "video"): [], ("b", "audio"): []}, 1.0, 4.0)
    engine.close(at=4.0)
    writer.close()
    assert len(segments) >= 3 and all(s.has_video and s.has_audio for s in segments)
    assert sum(s.duration for s in segments) == pytest.approx(3.0, abs=0.1)
    for seg in segments:
        with av.open(str(seg.path)) as c:
            kinds = {s.type for s in c.streams}
            frames = list(c.decode(video=0))
        assert kinds == {"video", "audio"} and frames


@pytest.mark.parametrize(("settings", "message"), [
    ({"width": 641}, "even"), ({"height": 10}, "even"), ({"fps": 0}, "fps"), ({"layout": "mosaic"}, "layout"),
    ({"background": "red"}, "background"), ({"video": False, "audio": False}, "neither"),
    ({"video_bitrate": 10}, "videoBitrate"),
])
def test_config_refuses_nonsense(settings, message):
    with pytest.raises(ValueError, match=message):
        CompositeConfig(**settings)


def flash_and_beep(flashes: list[float], seconds: float, flash: float = 0.1):
    """30 fps black video turning white, and a 1 kHz beep, for ``flash`` s from each of ``flashes`` (media time);
    the audio is given as (packet, t), t the time of the packet's input as a WebRTC sender stamps it."""
    from fractions import Fraction

    def on(t):
        return any(f <= t < f + flash for f in flashes)

    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 160, 120, "yuv420p"
    enc.time_base, enc.framerate, enc.gop_size = Fraction(1, 30), Fraction(30), 30
    enc.options = {"preset": "ultrafast", "tune": "zerolatency"}
    video = []
    for i in range(round(seconds * 30)):
        frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 255 if on(i / 30) else 0, np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        video += [(p, i / 30) for p in enc.encode(frame)]
    aenc = av.CodecContext.create("libopus", "w")
    aenc.sample_rate, aenc.layout, aenc.format, aenc.time_base = 48000, "mono", "s16", Fraction(1, 48000)
    t = np.arange(round(seconds * 48000)) / 48000
    beeps = np.array([on(x) for x in t]) * 0.5 * np.sin(2 * np.pi * 1000 * t) * 32767
    audio = []
    for i in range(0, len(t) - 959, 960):
        frame = av.AudioFrame.from_ndarray(beeps[None, i:i + 960].astype(np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, i
        audio += [(p, (p.pts + 312) / 48000) for p in aenc.encode(frame)]  # stamped as WebRTC senders do
    return video, audio


def onsets(times, on, gap=0.3):
    found = []
    for i in range(1, len(on)):
        if on[i] and not on[i - 1] and (not found or times[i] - found[-1] > gap):
            found.append(times[i])
    return found


def test_flash_and_beep_stay_in_sync():
    """The composite keeps a participant's audio and video together: the sound exactly where it was (the
    limiter's look-ahead compensated), a picture at the output tick nearest its time (the first tick T with
    T + 1/(2 fps) >= the picture's time). So a flash is shown at most half an output frame (33 ms at 15 fps)
    early or late, 0 on average over phases; the rest of any offset is the source's own frame spacing."""
    flashes = [0.5 + k * (0.5 + 1 / (15 * 12)) for k in range(12)]
    video, audio = flash_and_beep(flashes, 7.0)
    out = Out()
    engine = engine_for(out, width=160, height=120)
    engine.add("a", "A", 0.0)
    t0, vi, ai, now = 1.0, 0, 0, 1.0
    while now < t0 + 7.0:
        while vi < len(video) and t0 + video[vi][1] <= now - 0.005:
            engine.video("a", video[vi][0], t0 + video[vi][1])
            vi += 1
        while ai < len(audio) and t0 + audio[ai][1] <= now - 0.005:
            engine.audio("a", audio[ai][0], t0 + audio[ai][1])
            ai += 1
        engine.pump(now)
        now += 0.01
    engine.close(at=t0 + 7.0)
    pictures = decode_all("h264", [p for p, _ in out.of("video")])
    v_on = onsets([t for _, t in out.of("video")], [f.to_ndarray(format="gray")[60, 80] > 128 for f in pictures])
    dec = av.CodecContext.create("aac", "r")
    dec.extradata = engine.audio_template.codec_context.extradata
    times, level = [], []
    for p, _ in out.of("audio"):
        for f in dec.decode(p):
            x = np.abs(f.to_ndarray()[0]) > 0.1
            times += list((p.pts + np.arange(len(x))) / 48000)
            level += list(x)
    a_on = onsets(times, level)
    assert len(v_on) == len(a_on) == len(flashes)
    assert np.allclose(a_on, [t0 + f for f in flashes], atol=0.002)  # the sound exactly where it was
    shown = np.array([t0 + np.ceil(f * 30 - 1e-9) / 30 for f in flashes])  # the first white source picture
    first_tick = min(t for _, t in out.of("video"))
    expected = first_tick + np.ceil((shown - 1 / 30 - first_tick) * FPS - 1e-6) / FPS
    assert np.allclose(v_on, expected, atol=0.001)
    assert np.abs(np.array(v_on) - shown).max() <= 0.5 / FPS + 0.001
