"""Synthetic media for the test publishers, and helpers to analyse decoded recordings.

Video frames (yuv420p) are precomputed once per resolution; per frame only a 16-row strip at the top is
rewritten: a **barcode** of the publisher's running frame number (32 blocks, most significant bit first,
white = 1, luma 235/16).  :func:`read_barcode` decodes it from a decoded frame, so a test can tell exactly
which sent frames a recording contains.

Modes:
- ``pattern``: colour bars, a moving white box and a noisy patch (keeps the encoder near its target bitrate),
  cycle of ``fps`` frames;
- ``flash``: black frames; frames whose media time lies in ``[k, k + flash_s)`` for every whole second ``k``
  are white (the barcode strip excepted);
- ``colour``: one solid colour (``--colour "#RRGGBB"``, converted like swscale does: BT.601 limited range) with a
  noisy patch in the bottom-right quarter (the pattern's, its luma around the colour's) and the barcode strip,
  cycle of ``fps`` frames: each publisher's picture can be told apart in a composite by its colour.

Audio: 48 kHz mono s16, 20 ms (960-sample) frames: a sine (``tone``, 440 Hz unless ``--tone`` says otherwise), or
1 kHz beeps of ``flash_s`` starting at every whole second, silence elsewhere (``beep``).
"""

from __future__ import annotations

import fractions

import numpy as np

try:  # av is needed by publishers and analysis, not to import this module's constants
    import av
except ImportError:  # pragma: no cover
    av = None

BARCODE_ROWS = 16
BARCODE_BITS = 32
Y_BLACK, Y_WHITE = 16, 235
AUDIO_RATE = 48000
AUDIO_FRAME = 960  # 20 ms
VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)


# -- video -------------------------------------------------------------------------------------------------
def _bars_yuv(w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # 75 % colour bars (BT.601 limited range): white, yellow, cyan, green, magenta, red, blue, black
    bars = [(180, 128, 128), (162, 44, 142), (131, 156, 44), (112, 72, 58), (84, 184, 198), (65, 100, 212),
            (35, 212, 114), (16, 128, 128)]
    y = np.empty((h, w), np.uint8)
    u = np.empty((h // 2, w // 2), np.uint8)
    v = np.empty((h // 2, w // 2), np.uint8)
    for i, (yy, uu, vv) in enumerate(bars):
        x0, x1 = i * w // 8, (i + 1) * w // 8
        y[:, x0:x1] = yy
        u[:, x0 // 2:x1 // 2] = uu
        v[:, x0 // 2:x1 // 2] = vv
    return y, u, v


def _frame_from_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> av.VideoFrame:
    h, w = y.shape
    arr = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(h * 3 // 2, w)
    return av.VideoFrame.from_ndarray(arr, format="yuv420p")


def make_pattern_frames(w: int, h: int, count: int, seed: int = 1, noise: int = 12) -> list[av.VideoFrame]:
    """``count`` frames of moving test pattern (one cycle)."""
    rng = np.random.default_rng(seed)
    by, bu, bv = _bars_yuv(w, h)
    frames = []
    box = max(8, h // 8)
    ph, pw = h // 4, w // 4
    texture = rng.integers(40, 212, (ph, pw)).astype(np.int16)
    for i in range(count):
        y, u, v = by.copy(), bu.copy(), bv.copy()
        # moving white box along a diagonal
        x = int((w - box) * i / count)
        yy = BARCODE_ROWS + int((h - BARCODE_ROWS - box) * i / count)
        y[yy:yy + box, x:x + box] = Y_WHITE
        u[yy // 2:(yy + box) // 2, x // 2:(x + box) // 2] = 128
        v[yy // 2:(yy + box) // 2, x // 2:(x + box) // 2] = 128
        # textured patch bottom-right: a fixed texture plus fresh low-amplitude noise every frame spends bits
        # like camera noise does, without looking like a scene cut to the encoder
        y[h - ph:, w - pw:] = np.clip(texture + rng.integers(-noise, noise + 1, (ph, pw)), 16, 235)
        y[:BARCODE_ROWS] = Y_BLACK
        u[:BARCODE_ROWS // 2] = 128
        v[:BARCODE_ROWS // 2] = 128
        frames.append(_frame_from_planes(y, u, v))
    return frames


def parse_colour(value: str) -> tuple[int, int, int]:
    """``"#RRGGBB"`` (or ``RRGGBB``) → (r, g, b)."""
    text = value.strip().lstrip("#")
    if len(text) != 6:
        raise ValueError(f"colour {value!r}: expected #RRGGBB")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def colour_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """(Y, U, V) of an RGB colour, BT.601 limited range (what swscale makes of RGB by default)."""
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return round(y), round(u), round(v)


def make_colour_frames(w: int, h: int, rgb: tuple[int, int, int], count: int, seed: int = 1,
                       noise: int = 12) -> list[av.VideoFrame]:
    """``count`` frames of one solid colour: a noisy patch bottom-right (fresh noise every frame, luma only, as
    in :func:`make_pattern_frames`, so the encoder spends bits as with a camera) and the barcode strip on top."""
    rng = np.random.default_rng(seed)
    cy, cu, cv = colour_yuv(rgb)
    ph, pw = h // 4, w // 4
    texture = cy + rng.integers(-24, 25, (ph, pw)).astype(np.int16)
    frames = []
    for _ in range(count):
        y = np.full((h, w), cy, np.uint8)
        u = np.full((h // 2, w // 2), cu, np.uint8)
        v = np.full((h // 2, w // 2), cv, np.uint8)
        y[h - ph:, w - pw:] = np.clip(texture + rng.integers(-noise, noise + 1, (ph, pw)), 16, 235)
        y[:BARCODE_ROWS] = Y_BLACK
        u[:BARCODE_ROWS // 2] = 128
        v[:BARCODE_ROWS // 2] = 128
        frames.append(_frame_from_planes(y, u, v))
    return frames


def make_flat_frame(w: int, h: int, luma: int) -> av.VideoFrame:
    y = np.full((h, w), luma, np.uint8)
    y[:BARCODE_ROWS] = Y_BLACK
    u = np.full((h // 2, w // 2), 128, np.uint8)
    return _frame_from_planes(y, u, u.copy())


def stamp_barcode(frame: av.VideoFrame, number: int) -> None:
    """Write ``number`` as a 32-bit barcode into the top strip of ``frame`` (in place)."""
    plane = frame.planes[0]
    rows = np.asarray(memoryview(plane)).reshape(plane.height, plane.line_size)
    w = plane.width
    bw = w // BARCODE_BITS
    strip = rows[:BARCODE_ROWS]
    for b in range(BARCODE_BITS):
        bit = (number >> (BARCODE_BITS - 1 - b)) & 1
        strip[:, b * bw:(b + 1) * bw] = Y_WHITE if bit else Y_BLACK


def read_barcode(y: np.ndarray) -> int:
    """Frame number from the luma plane (2-D array, height x width) of a decoded frame."""
    w = y.shape[1]
    bw = w // BARCODE_BITS
    strip = y[2:BARCODE_ROWS - 2].astype(np.int32)
    n = 0
    for b in range(BARCODE_BITS):
        block = strip[:, b * bw + bw // 4:(b + 1) * bw - bw // 4]
        n = (n << 1) | int(block.mean() > (Y_BLACK + Y_WHITE) / 2)
    return n


def frame_luma(y: np.ndarray) -> float:
    """Mean luma below the barcode strip (flash detection: white ≈ 235, black ≈ 16)."""
    return float(y[BARCODE_ROWS:].mean())


def flash_frame_count(fps: float, flash_s: float) -> int:
    return int(np.ceil(flash_s * fps))


# -- audio -------------------------------------------------------------------------------------------------
def _audio_frames_from_second(samples: np.ndarray) -> list[av.AudioFrame]:
    frames = []
    for i in range(AUDIO_RATE // AUDIO_FRAME):
        chunk = samples[i * AUDIO_FRAME:(i + 1) * AUDIO_FRAME].astype(np.int16).reshape(1, -1)
        f = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        f.sample_rate = AUDIO_RATE
        frames.append(f)
    return frames


def make_tone_frames(freq: float = 440.0, amplitude: float = 0.3) -> list[av.AudioFrame]:
    """One second (50 frames) of a sine; ``freq`` should be a whole number of Hz to loop seamlessly."""
    t = np.arange(AUDIO_RATE) / AUDIO_RATE
    return _audio_frames_from_second(np.sin(2 * np.pi * freq * t) * amplitude * 32767)


def make_beep_frames(flash_s: float, freq: float = 1000.0, amplitude: float = 0.5) -> list[av.AudioFrame]:
    """One second (50 frames): a ``freq`` beep lasting ``flash_s`` from the start, then silence."""
    t = np.arange(AUDIO_RATE) / AUDIO_RATE
    s = np.sin(2 * np.pi * freq * t) * amplitude * 32767
    s[round(flash_s * AUDIO_RATE):] = 0
    return _audio_frames_from_second(s)


def beep_onsets(samples: np.ndarray, rate: int, threshold: float = 0.1,
                min_gap_s: float = 0.5) -> list[float]:
    """Times (s, relative to the first sample) where the absolute amplitude first exceeds ``threshold`` (of
    full scale) after at least ``min_gap_s`` of quiet; ``samples`` mono float in [-1, 1] or int16."""
    x = np.abs(samples.astype(np.float64))
    if samples.dtype == np.int16:
        x /= 32768.0
    loud = np.flatnonzero(x > threshold)
    onsets: list[float] = []
    last = -1e9
    for i in loud:
        if i - last > min_gap_s * rate:
            onsets.append(i / rate)
        last = i
    return onsets


# -- schedules ---------------------------------------------------------------------------------------------
def video_slots_for_second(k: int, fps: float, vfr: bool, rng: np.random.Generator | None) -> list[float]:
    """Media times (s) of the video frames in second ``k``; always one at exactly ``k``.

    CFR: ``k + j/fps``.  VFR: 20-30 frames in that second (chosen at random) with jittered spacing."""
    if not vfr:
        n = round(fps)
        return [k + j / n for j in range(n)]
    assert rng is not None
    n = int(rng.integers(20, 31))
    base = np.arange(n) / n
    jitter = rng.uniform(-0.3, 0.3, n) / n
    jitter[0] = 0.0
    return [k + float(t) for t in np.sort(base + jitter)]
