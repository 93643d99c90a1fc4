"""Gallery mosaics: size follows the crops, lines wrap at per_row, empty classes and galleries still say so."""

from __future__ import annotations

import numpy as np
import pytest

from papscreen.bethesda import CLASS_COLOURS
from papscreen.imaging.mosaic import gallery_mosaic


def _crops(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(20, 70)), int(rng.integers(20, 70)), 3), np.uint8) for _ in range(n)]


def test_white_rgb_uint8() -> None:
    out = gallery_mosaic({"HSIL": _crops(3)}, tile_px=24)
    assert out.ndim == 3
    assert out.shape[2] == 3
    assert out.dtype == np.uint8
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[-1, -1].tolist() == [255, 255, 255]


def test_width_grows_until_per_row_then_height_grows() -> None:
    sizes = {n: gallery_mosaic({"NILM": _crops(n)}, tile_px=40, per_row=4).shape[:2] for n in (1, 2, 4, 5, 8, 9)}
    assert sizes[1][1] < sizes[2][1] < sizes[4][1]
    assert sizes[4][1] == sizes[5][1] == sizes[8][1] == sizes[9][1]  # wraps instead of widening
    assert sizes[1][0] == sizes[2][0] == sizes[4][0] < sizes[5][0] == sizes[8][0] < sizes[9][0]


def test_tiles_are_resized_and_framed_in_the_class_colour() -> None:
    crop = np.zeros((50, 30, 3), np.uint8)  # black, so tile pixels are easy to find
    out = gallery_mosaic({"SCC": [crop]}, tile_px=40)
    black = np.argwhere((out == 0).all(axis=2))
    (top, left), (bottom, right) = black.min(axis=0), black.max(axis=0)
    assert (bottom - top + 1, right - left + 1) == (40, 40)
    assert out[top - 1, left + 10].tolist() == list(CLASS_COLOURS["SCC"])
    assert out[bottom + 1, right].tolist() == list(CLASS_COLOURS["SCC"])


def test_each_class_gets_a_section_and_an_empty_one_still_shows() -> None:
    one = gallery_mosaic({"HSIL": _crops(2)}, tile_px=24)
    two = gallery_mosaic({"HSIL": _crops(2), "SCC": []}, tile_px=24)
    assert two.shape[0] > one.shape[0]
    assert (two[one.shape[0] - 8 :] != 255).any()  # header and "none found" drawn below
    colours = {tuple(p) for p in two.reshape(-1, 3).tolist()}
    assert tuple(CLASS_COLOURS["HSIL"]) in colours
    assert tuple(CLASS_COLOURS["SCC"]) in colours


def test_captions_add_height_and_must_match_crops() -> None:
    crops = _crops(3)
    plain = gallery_mosaic({"LSIL": crops}, tile_px=32)
    captioned = gallery_mosaic({"LSIL": crops}, tile_px=32, captions={"LSIL": ["0.97", "0.91", "0.80"]})
    assert captioned.shape[0] > plain.shape[0]
    assert captioned.shape[1] == plain.shape[1]
    with pytest.raises(ValueError, match="3 crops but 2 captions"):
        gallery_mosaic({"LSIL": crops}, captions={"LSIL": ["0.97", "0.91"]})


def test_title_and_no_classes() -> None:
    crops = _crops(2)
    assert gallery_mosaic({"NILM": crops}, title="slide 7").shape[0] > gallery_mosaic({"NILM": crops}).shape[0]
    empty = gallery_mosaic({})
    assert empty.shape[0] < 100
    assert empty.shape[1] < 200
    assert (empty != 255).any()  # says "no cells"


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ({"NILM": [np.zeros((10, 10), np.uint8)]}, {}, "H x W x 3"),
        ({"NILM": [np.zeros((10, 10, 3), np.float64)]}, {}, "uint8"),
        ({"NILM": []}, {"tile_px": 4}, "tile_px"),
        ({"NILM": []}, {"per_row": 0}, "per_row"),
    ],
    ids=["gray-crop", "float-crop", "tiny-tile", "no-columns"],
)
def test_bad_input_is_refused(rows: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gallery_mosaic(rows, **kwargs)
