"""Composite layout geometry (recorder_image/reel_recorder/composite/layout.py): pure, no media."""

from __future__ import annotations

import itertools

import pytest

from reel_recorder.composite.layout import MAX_TILES, Rect, cells, fit, grid, grid_shape, speaker

SIZES = [(1280, 720), (640, 480), (642, 362), (720, 1280)]


def ids(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


def assert_sane(result: dict, width: int, height: int) -> None:
    for r in result.values():
        assert r.x % 2 == 0 and r.y % 2 == 0 and r.w % 2 == 0 and r.h % 2 == 0, r
        assert r.w > 0 and r.h > 0, r
        assert r.x >= 0 and r.y >= 0 and r.x + r.w <= width and r.y + r.h <= height, r
    for a, b in itertools.combinations(result.values(), 2):
        overlap_w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
        overlap_h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
        assert overlap_w <= 0 or overlap_h <= 0, (a, b)


@pytest.mark.parametrize(("n", "shape"), [(1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (2, 2)), (5, (3, 2)),
                                          (6, (3, 2)), (7, (3, 3)), (9, (3, 3)), (10, (4, 3)), (16, (4, 4))])
def test_grid_shape(n, shape):
    assert grid_shape(n) == shape


def test_grid_one_is_the_whole_frame_two_side_by_side_four_quadrants():
    assert grid(1280, 720, ["a"]) == {"a": Rect(0, 0, 1280, 720)}
    assert grid(1280, 720, ["a", "b"]) == {"a": Rect(0, 0, 640, 720), "b": Rect(640, 0, 640, 720)}
    assert grid(1280, 720, ids(4)) == {"p0": Rect(0, 0, 640, 360), "p1": Rect(640, 0, 640, 360),
                                       "p2": Rect(0, 360, 640, 360), "p3": Rect(640, 360, 640, 360)}


def test_grid_centres_an_incomplete_last_row():
    c = grid(1280, 720, ids(3))
    assert c["p0"] == Rect(0, 0, 640, 360) and c["p1"] == Rect(640, 0, 640, 360)
    assert c["p2"] == Rect(320, 360, 640, 360)
    c = grid(1280, 720, ids(5))  # 3 + 2, the second row centred
    assert abs(c["p3"].x - (1280 - (c["p4"].x + c["p4"].w))) <= 2
    assert c["p3"].x + c["p3"].w == c["p4"].x


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("n", range(1, 20))
def test_grid_cells_are_even_inside_and_disjoint(width, height, n):
    c = grid(width, height, ids(n))
    assert list(c) == ids(min(n, MAX_TILES))  # the first ones by join order, at most 16
    assert_sane(c, width, height)
    cols, rows = grid_shape(min(n, MAX_TILES))
    if cols * rows == len(c):  # a full grid tiles the (even part of the) frame without gaps
        assert sum(r.w * r.h for r in c.values()) == (width & ~1) * (height & ~1)


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 20])
def test_speaker_layout_is_sane(width, height, n):
    c = speaker(width, height, ids(n), "p1" if n > 1 else "p0")
    assert len(c) == min(n, MAX_TILES)
    assert_sane(c, width, height)


def test_speaker_large_on_the_left_others_in_a_strip_on_the_right():
    c = speaker(1280, 720, ["a", "b", "c"], "b")
    main = c["b"]
    assert main == Rect(0, 0, 1024, 720)
    small = [c["a"], c["c"]]  # join order kept in the strip
    assert all(r.x == 1024 and r.w == 256 for r in small)
    assert small[0].y < small[1].y
    assert all(r.w * r.h < main.w * main.h / 4 for r in small)


def test_speaker_unknown_means_first_and_portrait_puts_the_strip_below():
    assert speaker(1280, 720, ["a", "b"], "zz")["a"].w == 1024
    c = speaker(720, 1280, ["a", "b"], "b")
    assert c["b"] == Rect(0, 0, 720, 1024)
    assert c["a"].y == 1024 and c["a"].h == 256
    assert speaker(1280, 720, ["a"], "a") == {"a": Rect(0, 0, 1280, 720)}


def test_cells_dispatch_and_unknown_layout():
    assert cells("grid", 640, 480, ["a"]) == {"a": Rect(0, 0, 640, 480)}
    assert cells("speaker", 640, 480, ["a", "b"], "b")["b"].x == 0
    assert cells("grid", 640, 480, []) == {}
    with pytest.raises(ValueError, match="unknown layout"):
        cells("mosaic", 640, 480, ["a"])


def test_fit_letterboxes_and_pillarboxes_centred_even():
    cell = Rect(640, 0, 640, 360)  # 16:9
    assert fit(1280, 720, cell) == cell
    r = fit(640, 480, cell)  # 4:3 in 16:9: pillarbox
    assert (r.w, r.h) == (480, 360) and r.x == 640 + 80 and r.y == 0
    r = fit(1280, 720, Rect(0, 0, 320, 240))  # 16:9 in 4:3: letterbox
    assert (r.w, r.h) == (320, 180) and r.y == 30
    r = fit(333, 999, Rect(2, 4, 100, 100))
    assert r.w % 2 == 0 and r.h % 2 == 0 and r.x % 2 == 0 and r.y % 2 == 0 and r.h == 100
    assert fit(0, 0, cell).empty
