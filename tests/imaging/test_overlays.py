"""Cell boxes on thumbnails: colours on the outline, severity on top, grey for unknown labels, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from papscreen.bethesda import CLASS_COLOURS
from papscreen.imaging.overlays import UNKNOWN_COLOUR, add_legend, draw_cell_boxes


@pytest.fixture
def thumb() -> np.ndarray:
    return np.full((60, 80, 3), 255, np.uint8)


@pytest.mark.parametrize("label", ["NILM", "LSIL", "HSIL", "SCC"])
def test_box_outline_has_the_class_colour(thumb: np.ndarray, label: str) -> None:
    # Centre (300, 200) level-0 at scale 0.1 -> (30, 20); side 100 * 0.1 = 10 -> columns/rows 25..34 and 15..24.
    out = draw_cell_boxes(thumb, np.array([[300.0, 200.0]]), [label], box_px=100, scale=0.1, thickness=1)
    colour = list(CLASS_COLOURS[label])
    for row, col in [(15, 25), (15, 30), (24, 34), (20, 25), (20, 34), (24, 28)]:
        assert out[row, col].tolist() == colour, (row, col)
    assert out[20, 30].tolist() == [255, 255, 255]  # inside stays clear
    assert out[14, 30].tolist() == [255, 255, 255]  # just outside
    assert thumb.min() == 255  # input untouched


def test_more_severe_class_drawn_on_top(thumb: np.ndarray) -> None:
    # Two identical boxes on one spot: SCC listed first, NILM last, SCC must still win.
    xy = np.array([[300.0, 200.0], [300.0, 200.0], [300.0, 200.0]])
    out = draw_cell_boxes(thumb, xy, ["SCC", "HSIL", "NILM"], box_px=100, scale=0.1)
    assert out[15, 30].tolist() == list(CLASS_COLOURS["SCC"])
    reversed_order = draw_cell_boxes(thumb, xy, ["SCC", "HSIL", "NILM"], 100, 0.1, order=("SCC", "HSIL", "NILM"))
    assert reversed_order[15, 30].tolist() == list(CLASS_COLOURS["NILM"])


def test_unknown_label_is_grey_and_beneath_graded_classes(thumb: np.ndarray) -> None:
    out = draw_cell_boxes(thumb, np.array([[100.0, 100.0]]), ["mystery"], box_px=100, scale=0.1)
    assert out[5, 10].tolist() == list(UNKNOWN_COLOUR)
    both = draw_cell_boxes(thumb, np.array([[100.0, 100.0]] * 2), ["LSIL", "mystery"], box_px=100, scale=0.1)
    assert both[5, 10].tolist() == list(CLASS_COLOURS["LSIL"])


def test_small_boxes_keep_a_minimum_size_and_edges_clip(thumb: np.ndarray) -> None:
    out = draw_cell_boxes(thumb, np.array([[500.0, 500.0], [0.0, 0.0]]), ["HSIL", "HSIL"], box_px=10, scale=0.02)
    changed = np.argwhere((out != 255).any(axis=2))
    tiny = changed[(changed[:, 0] > 5) & (changed[:, 1] > 5)]
    assert np.ptp(tiny[:, 0]) + 1 == 3
    assert np.ptp(tiny[:, 1]) + 1 == 3
    assert out.shape == thumb.shape


def test_custom_colours_and_empty_input(thumb: np.ndarray) -> None:
    out = draw_cell_boxes(thumb, np.array([[300.0, 200.0]]), ["X"], 100, 0.1, {"X": (1, 2, 3)})
    assert out[15, 30].tolist() == [1, 2, 3]
    empty = draw_cell_boxes(thumb, np.zeros((0, 2)), [], box_px=100, scale=0.1)
    np.testing.assert_array_equal(empty, thumb)
    assert empty is not thumb


@pytest.mark.parametrize(
    ("image", "xy", "labels", "message"),
    [
        (np.zeros((10, 10), np.uint8), np.zeros((1, 2)), ["NILM"], "H x W x 3"),
        (np.zeros((10, 10, 4), np.uint8), np.zeros((1, 2)), ["NILM"], "H x W x 3"),
        (np.zeros((10, 10, 3), np.float32), np.zeros((1, 2)), ["NILM"], "uint8"),
        (np.zeros((10, 10, 3), np.uint8), np.zeros((2, 3)), ["NILM", "NILM"], r"\(N, 2\)"),
        (np.zeros((10, 10, 3), np.uint8), np.zeros((2, 2)), ["NILM"], "one label per cell"),
        (np.zeros((10, 10, 3), np.uint8), np.array([[np.nan, 0.0]]), ["NILM"], "finite"),
    ],
    ids=["gray", "rgba", "float", "xy-3-cols", "label-count", "nan"],
)
def test_bad_input_is_refused(image: np.ndarray, xy: np.ndarray, labels: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        draw_cell_boxes(image, xy, labels, box_px=10, scale=1.0)


@pytest.mark.parametrize(("box_px", "scale"), [(0, 1.0), (10, 0.0), (10, -1.0)], ids=["box", "scale", "negative"])
def test_bad_geometry_is_refused(thumb: np.ndarray, box_px: float, scale: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        draw_cell_boxes(thumb, np.zeros((1, 2)), ["NILM"], box_px=box_px, scale=scale)


def test_legend_adds_a_white_band_with_swatches() -> None:
    image = np.zeros((50, 400, 3), np.uint8)
    out = add_legend(image, {"NILM": 120, "SCC": 2, "odd": 1})
    assert out.shape[0] > 50
    assert out.shape[1] == 400
    np.testing.assert_array_equal(out[:50], image)
    band = out[50:]
    colours = {tuple(p) for p in band.reshape(-1, 3).tolist()}
    assert tuple(CLASS_COLOURS["NILM"]) in colours
    assert tuple(CLASS_COLOURS["SCC"]) in colours
    assert UNKNOWN_COLOUR in colours
    assert (band.reshape(-1, 3) == 255).all(axis=1).mean() > 0.5  # mostly white


def test_legend_wraps_on_a_narrow_image_and_handles_no_counts() -> None:
    counts = {"NILM": 120, "LSIL": 4, "HSIL": 3, "SCC": 2}
    wide = add_legend(np.zeros((10, 800, 3), np.uint8), counts)
    narrow = add_legend(np.zeros((10, 120, 3), np.uint8), counts)
    assert narrow.shape[0] - 10 > wide.shape[0] - 10
    empty = add_legend(np.zeros((10, 200, 3), np.uint8), {})
    assert empty.shape[0] > 10
    assert (empty[10:] != 255).any()
    with pytest.raises(ValueError, match="H x W x 3"):
        add_legend(np.zeros((10, 10), np.uint8), counts)
