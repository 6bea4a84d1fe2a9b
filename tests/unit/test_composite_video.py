"""The composite picture (composite/video.py): synthetic solid-colour H.264 streams decoded, scaled, composed;
each tile's colour checked in the composed frame."""

from __future__ import annotations

import av
import numpy as np
import pytest
from tests.support.composite_media import solid_h264

from reel_recorder.composite import labels
from reel_recorder.composite.layout import Rect
from reel_recorder.composite.video import VideoCompositor

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
BACKGROUND = (0, 0, 64)


@pytest.fixture(scope="module")
def streams():
    return {c: solid_h264(c, count=6) for c in (RED, GREEN, BLUE, YELLOW)} | {
        "wide": solid_h264(RED, width=320, height=180, count=6)}


def rgb(frame: av.VideoFrame) -> np.ndarray:
    assert frame.format.name == "yuv420p"
    return frame.to_ndarray(format="rgb24").astype(int)


def near(pixel, colour, tol=24) -> bool:
    return all(abs(int(p) - c) <= tol for p, c in zip(pixel, colour, strict=True))


def centre(r: Rect) -> tuple[int, int]:
    return r.y + r.h // 2, r.x + r.w // 2


def feed(comp, pid, packets, t0=0.0, fps=30):
    for i, p in enumerate(packets):
        comp.decode(pid, p, t0 + i / fps)


def make(width=640, height=480, **kw) -> VideoCompositor:
    kw.setdefault("background", "#000040")
    kw.setdefault("show_names", False)
    return VideoCompositor(width, height, fps=15, **kw)


def test_four_participants_each_colour_in_its_tile(streams):
    comp = make()
    colours = [RED, GREEN, BLUE, YELLOW]
    for i in range(4):
        comp.add(f"p{i}", f"P{i}", joined_at=0.1 * i)
    for i, c in enumerate(colours):
        feed(comp, f"p{i}", streams[c])
    img = rgb(comp.compose(1.0))
    assert img.shape == (480, 640, 3)
    quadrants = [(120, 160), (120, 480), (360, 160), (360, 480)]  # join order: left to right, top to bottom
    for (y, x), c in zip(quadrants, colours, strict=True):
        assert near(img[y, x], c), (y, x, img[y, x], c)
    assert comp.shown_ids() == ["p0", "p1", "p2", "p3"]


def test_letterbox_shows_the_background_around_a_picture_of_another_shape(streams):
    comp = make()
    comp.add("a", "A", 0.0)
    feed(comp, "a", streams["wide"])  # 16:9 in a 4:3 frame: bars above and below
    img = rgb(comp.compose(1.0))
    assert near(img[240, 320], RED)
    assert near(img[10, 320], BACKGROUND, 8) and near(img[470, 320], BACKGROUND, 8)


def test_participant_without_video_gets_a_name_tile(streams):
    comp = make()
    comp.add("a", "Alice", 0.0)
    comp.add("b", "Bob", 0.0)
    feed(comp, "a", streams[RED])
    img = rgb(comp.compose(1.0))
    tile = img[:, 320:]
    assert near(img[240, 160], RED)
    assert near(tile[20, 20], labels.NAME_TILE, 6)
    assert (tile.min(axis=2) > 200).sum() > 50  # the name, in white


def test_names_drawn_on_tiles_when_asked(streams):
    plain, named = make(), make(show_names=True)
    for comp in (plain, named):
        comp.add("a", "Alice", 0.0)
        feed(comp, "a", streams[BLUE])
    a, b = rgb(plain.compose(1.0)), rgb(named.compose(1.0))
    bottom_left = (slice(420, 480), slice(0, 200))
    changed = np.abs(a[bottom_left] - b[bottom_left]).sum(axis=2) > 60
    assert changed.sum() > 200
    assert np.array_equal(a[:300], b[:300])  # nowhere else


def test_stalled_participant_keeps_last_picture_and_follows_a_new_layout(streams):
    comp = make()
    comp.add("a", "A", 0.0)
    feed(comp, "a", streams[RED])  # then nothing more from "a"
    assert near(rgb(comp.compose(1.0))[240, 320], RED)
    comp.add("b", "B", 1.5)
    feed(comp, "b", streams[GREEN], t0=1.5)
    img = rgb(comp.compose(2.0))
    assert near(img[240, 160], RED) and near(img[240, 480], GREEN)
    assert comp.cell_of("a") == Rect(0, 0, 320, 480)


def test_join_and_leave_follow_the_timeline(streams):
    comp = make()
    comp.add("a", "A", 0.0)
    comp.add("b", "B", 5.0)  # joins later on the timeline
    feed(comp, "a", streams[RED])
    assert comp.compose(1.0) and comp.shown_ids() == ["a"]
    comp.compose(5.0)
    assert comp.shown_ids() == ["a", "b"]
    comp.remove("a", at=6.0)
    comp.compose(5.9)
    assert comp.shown_ids() == ["a", "b"]
    comp.compose(6.0)
    assert comp.shown_ids() == ["b"]
    assert comp.cell_of("b") == Rect(0, 0, 640, 480)
    comp.decode("a", streams[RED][0], 6.5)  # media after leaving is ignored
    assert "a" not in comp.stats()


def test_picture_is_chosen_by_its_time():
    comp = make()
    comp.add("a", "A", 0.0)
    red, blue = solid_h264(RED, count=3), solid_h264(BLUE, count=3, seed=2)
    feed(comp, "a", red, t0=1.0)
    feed(comp, "a", blue, t0=2.0)  # a new IDR: the same stream turning blue at t = 2.0
    assert near(rgb(comp.compose(1.5))[240, 320], RED)
    assert near(rgb(comp.compose(1.99))[240, 320], BLUE)  # within half an output frame: the nearer picture
    assert near(rgb(comp.compose(3.0))[240, 320], BLUE)


def test_a_picture_that_comes_after_its_time_was_composed_is_shown_late_and_counted():
    """The blue picture of 2.0 s is decoded after the picture of 2.0 s was composed (later than the engine's
    latency): that picture keeps red, the next shows blue, and the late picture is counted (status.composite)."""
    comp = make()
    comp.add("a", "A", 0.0)
    red, blue = solid_h264(RED, count=3), solid_h264(BLUE, count=3, seed=2)
    feed(comp, "a", red, t0=1.0)
    assert near(rgb(comp.compose(1.99))[240, 320], RED)
    assert comp.late_pictures == 0
    feed(comp, "a", blue, t0=2.0)  # 2.0 s: within half a frame of 1.99 (late); 2.033 and 2.067 s are not
    assert comp.late_pictures == 1 and comp.stats()["a"]["late"] == 1
    assert near(rgb(comp.compose(1.99 + 1 / 15))[240, 320], BLUE)
    assert comp.late_pictures == 1


def test_damaged_video_keeps_last_picture_and_waits_for_a_keyframe(streams):
    asked = []
    comp = make()
    comp.add("a", "A", 0.0, request_keyframe=lambda: asked.append(1))
    comp.decode("a", streams[RED][1], 0.0)  # no keyframe yet: skipped, a keyframe asked for
    assert asked and comp.stats()["a"]["decoded"] == 0
    feed(comp, "a", streams[RED][:3], t0=0.1)
    junk = av.Packet(b"\x00\x00\x00\x01\x41" + bytes(range(256)) * 4)
    comp.decode("a", junk, 0.3)
    comp.decode("a", streams[RED][3], 0.35)
    assert near(rgb(comp.compose(1.0))[240, 320], RED)
    errors = comp.stats()["a"]["errors"]
    assert errors >= 1 and len(asked) >= 2
    blue = solid_h264(BLUE, count=2)
    comp.decode("a", blue[1], 1.1)  # still waiting: a P picture is not decoded
    comp.decode("a", blue[0], 1.2)  # the keyframe
    assert near(rgb(comp.compose(1.3))[240, 320], BLUE)


def test_video_ended_shows_the_name_tile_until_video_returns(streams):
    comp = make()
    comp.add("a", "Alice", 0.0)
    feed(comp, "a", streams[RED])
    comp.video_ended("a", at=2.0)
    assert near(rgb(comp.compose(1.0))[240, 320], RED)
    assert near(rgb(comp.compose(2.5))[10, 10], labels.NAME_TILE, 6)
    feed(comp, "a", solid_h264(GREEN, count=2), t0=3.0)
    assert near(rgb(comp.compose(3.1))[240, 320], GREEN)


def test_speaker_layout_puts_the_speaker_large(streams):
    comp = make(1280, 720, layout="speaker")
    comp.add("a", "A", 0.0)
    comp.add("b", "B", 0.1)
    feed(comp, "a", streams[RED])
    feed(comp, "b", streams[GREEN])
    comp.set_speaker("b")
    img = rgb(comp.compose(1.0))
    assert near(img[360, 512], GREEN)
    assert comp.cell_of("a").x == 1024


def test_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even"):
        VideoCompositor(641, 480, fps=15)


def test_beyond_sixteen_the_later_ones_wait_and_enter_with_their_last_picture(streams):
    comp = make(320, 240)
    for i in range(17):
        comp.add(f"p{i}", f"P{i}", joined_at=i * 0.01)
    comp.compose(0.5)
    feed(comp, "p16", streams[GREEN], t0=0.6)
    comp.compose(1.0)
    assert "p16" in comp.shown_ids() and comp.cell_of("p16") is None  # present, not placed
    comp.remove("p0", at=1.5)
    img = rgb(comp.compose(1.5))
    cell = comp.cell_of("p16")
    assert cell is not None and near(img[centre(cell)], GREEN, 40)


def test_vp8_video_composes_too():
    """Composite decodes, so a VP8 room (which MPEG-TS cannot carry as is) can be recorded."""
    comp = make()
    comp.add("a", "A", 0.0, codec="vp8")
    feed(comp, "a", solid_h264(GREEN, count=4, codec="libvpx"))
    assert comp.stats()["a"] == {"decoded": 4, "errors": 0, "late": 0}
    assert near(rgb(comp.compose(1.0))[240, 320], GREEN)


def test_a_resolution_switch_at_a_keyframe_follows_the_new_shape():
    comp = make()
    comp.add("a", "A", 0.0)
    feed(comp, "a", solid_h264(RED, width=320, height=240, count=3), t0=0.0)
    feed(comp, "a", solid_h264(BLUE, width=320, height=180, count=3), t0=1.0)  # new SPS with the IDR
    img = rgb(comp.compose(2.0))
    assert near(img[240, 320], BLUE) and near(img[10, 320], BACKGROUND, 8)  # now letterboxed
    assert comp.stats()["a"]["errors"] == 0
