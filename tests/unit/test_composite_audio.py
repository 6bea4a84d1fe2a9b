"""The composite's mix (composite/audio.py, composite/limiter.py): Opus tones decoded, placed on the
recording clock, summed and limited."""

from __future__ import annotations

import numpy as np
import pytest
from tests.support.composite_media import RATE, peak_frequencies, tone, tone_opus

from reel_recorder.composite.audio import AudioMixer, SpeakerChoice
from reel_recorder.composite.limiter import Limiter


def rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x))))


def feed(mixer, pid, packets, t0):
    for i, p in enumerate(packets):
        mixer.push(pid, p, t0 + i * 0.02)


def mix_range(mixer, t0, t1, fps=15) -> np.ndarray:
    """Mix [t0, t1) in ticks of 1/fps, as the engine does."""
    a0 = round(t0 * RATE)
    n = round((t1 - t0) * fps)
    out = [mixer.mix((a0 + round(k * RATE / fps)) / RATE, (a0 + round((k + 1) * RATE / fps)) / RATE)
           for k in range(n)]
    return np.concatenate(out, axis=1)


@pytest.fixture(scope="module")
def tones():
    return {f: tone_opus(f, 2.0, 0.3) for f in (440, 1000)} | {"loud": tone_opus(440, 2.0, 0.9),
                                                                 "loud2": tone_opus(1000, 2.0, 0.9)}


def test_two_tones_both_in_the_mix(tones):
    m = AudioMixer()
    m.add("a")
    m.add("b")
    feed(m, "a", tones[440], 1.0)
    feed(m, "b", tones[1000], 1.0 + 0.0004)  # another arrival jitter
    x = mix_range(m, 1.0, 3.0)
    assert x.shape == (2, 2 * RATE)
    peaks = peak_frequencies(x[0, RATE // 4:])
    assert sorted(round(f / 10) * 10 for f in peaks) == [440, 1000]
    assert m.late_samples == 0


def test_loud_sum_is_limited_never_clipped(tones):
    m = AudioMixer()
    m.add("a")
    m.add("b")
    feed(m, "a", tones["loud"], 0.0)
    feed(m, "b", tones["loud2"], 0.0)
    x = mix_range(m, 0.0, 2.0)
    assert np.abs(x).max() <= 10 ** (-1 / 20) + 1e-3  # the limiter's ceiling, -1 dBFS: below full scale
    assert rms_db(x[0, RATE // 2:]) > -9  # limited, not muted


def test_single_speaker_keeps_its_level(tones):
    m = AudioMixer()
    m.add("a")
    feed(m, "a", tones[440], 0.5)
    x = mix_range(m, 0.5, 2.5)
    ref = tone(440, 1.0, 0.3)
    assert abs(rms_db(x[0, RATE // 2:RATE + RATE // 2]) - rms_db(ref)) < 1.0
    assert abs(rms_db(x[1, RATE // 2:RATE + RATE // 2]) - rms_db(ref)) < 1.0  # mono voice on both channels


def test_audio_lands_at_its_time_and_missing_audio_is_silence(tones):
    m = AudioMixer()
    m.add("a")
    m.add("quiet")  # never sends anything
    feed(m, "a", tones[440][:25], 1.25)  # 0.5 s of tone from t = 1.25
    x = mix_range(m, 1.0, 2.0)[0]
    loud = np.flatnonzero(np.abs(x) > 0.05)
    # the tone starts at 1.25 s: the Opus decoder's delay (the encoder's 312 samples of look-ahead, as a sender's
    # encoder has too) is taken out (issue 16); it ends where the 25 packets' (0.5 s) decoded output ends, the
    # encoder's last 312 samples never sent
    assert abs(loud[0] / RATE - 0.25) < 0.002
    assert abs(loud[-1] / RATE - (0.75 - 312 / RATE)) < 0.002
    assert np.abs(x[: RATE // 5]).max() == 0 and np.abs(x[-RATE // 5:]).max() == 0


def test_late_audio_is_dropped_and_counted(tones):
    m = AudioMixer()
    m.add("a")
    mix_range(m, 0.0, 1.0)
    feed(m, "a", tones[440][:10], 0.9)  # 0.2 s, half of it for a time already mixed
    assert m.late_samples == pytest.approx(0.1 * RATE, abs=960)
    x = mix_range(m, 1.0, 1.2)[0]
    assert np.abs(x[: RATE // 20]).max() > 0.1


def test_limiter_keeps_time_alignment():
    lim = Limiter(RATE, "stereo")
    x = np.zeros((2, RATE), np.float32)
    x[:, 1000] = 0.5
    y = np.concatenate([lim.process(x[:, i:i + 3200]) for i in range(0, RATE, 3200)] + [lim.flush()], axis=1)
    assert y.shape[1] == RATE
    assert int(np.argmax(np.abs(y[0]))) == 1000


def test_removed_participant_is_heard_until_their_buffer_ends(tones):
    m = AudioMixer()
    m.add("a")
    feed(m, "a", tones[440][:50], 0.0)
    m.remove("a")
    feed(m, "a", tones[440][50:], 1.0)  # after leaving: ignored
    x = mix_range(m, 0.0, 2.0)[0]
    assert np.abs(x[RATE // 4:3 * RATE // 4]).max() > 0.2
    assert np.abs(x[RATE + 480:]).max() == 0


def test_loudness_and_speaker_choice(tones):
    m = AudioMixer()
    for pid in ("a", "b"):
        m.add(pid)
    feed(m, "a", tone_opus(440, 2.0, 0.05), 0.0)
    feed(m, "b", tones[1000], 0.0)
    levels = m.loudness(2.0)
    assert levels["b"] > levels["a"] + 10
    choice = SpeakerChoice(hold=2.0)
    assert choice.update(levels, 0.0) == "b"
    assert choice.update({"a": -10.0, "b": -12.0}, 1.0) == "b"  # not clearly louder, and held
    assert choice.update({"a": -3.0, "b": -12.0}, 1.5) == "b"  # clearly louder, but b holds the tile 2 s
    assert choice.update({"a": -3.0, "b": -12.0}, 2.5) == "a"
    assert choice.update({"a": -90.0, "b": -90.0}, 9.0) == "a"  # silence changes nothing
    assert choice.update({"b": -20.0}, 10.0) == "b"  # the speaker left
