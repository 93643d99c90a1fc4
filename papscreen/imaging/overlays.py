"""Cell boxes and a class legend drawn on a slide thumbnail, for people to see where the graded cells are.

A reviewer looks at the overlay to find the abnormal cells quickly, so the drawing favours them: boxes are drawn
from least to most severe, so where boxes overlap the most severe one stays on top and is never hidden under a
crowd of NILM boxes. Colours come from ``CLASS_COLOURS`` (colour-blind safe); a label with no colour (an
unexpected class name) is drawn grey rather than dropped, so nothing the model found goes missing from the view.

Cell positions are level-0 pixels (x = column, y = row), as in the cell table; ``scale`` is thumbnail pixels per
level-0 pixel, so the same table draws on a thumbnail of any size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from papscreen.bethesda import BETHESDA_CLASSES, CLASS_COLOURS

__all__ = ["UNKNOWN_COLOUR", "add_legend", "draw_cell_boxes"]

UNKNOWN_COLOUR: tuple[int, int, int] = (128, 128, 128)
"""RGB colour of a label that has no entry in the colour table."""

_MIN_BOX_PX = 3
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_COLOUR = (30, 30, 30)
_WHITE = (255, 255, 255)


def draw_cell_boxes(
    thumbnail: np.ndarray,
    xy: np.ndarray,
    labels: Sequence[str],
    box_px: float,
    scale: float,
    colours: Mapping[str, tuple[int, int, int]] = CLASS_COLOURS,
    *,
    thickness: int | None = None,
    order: Sequence[str] = BETHESDA_CLASSES,
) -> np.ndarray:
    """Draw a square outline around every cell, coloured by its class, the most severe on top.

    Args:
        thumbnail: HxWx3 uint8 RGB image to draw on; it is not modified.
        xy: (N, 2) cell centres (x, y) in level-0 pixels.
        labels: N class names, one per row of ``xy``.
        box_px: side of a box in level-0 pixels (about one cell, such as the stage-2 crop size).
        scale: thumbnail pixels per level-0 pixel (thumbnail width / slide width).
        colours: RGB colour per class name; names not in it are drawn in ``UNKNOWN_COLOUR``.
        thickness: line width in thumbnail pixels; by default 1 for boxes under 24 px and 2 for larger ones, so
            small boxes stay open enough to show the cell inside.
        order: class names from least to most severe: later names are drawn later, on top. Labels not in
            ``order`` are drawn first, beneath every graded class.

    Returns:
        A new HxWx3 uint8 image with the boxes; boxes partly outside the thumbnail are clipped.

    Raises:
        ValueError: ``thumbnail`` is not an HxWx3 uint8 image, ``xy`` is not (N, 2) finite, ``labels`` does not
            have N entries, ``box_px`` or ``scale`` is not positive, or ``thickness`` < 1.

    Examples:
        >>> thumb = np.full((40, 60, 3), 255, np.uint8)
        >>> out = draw_cell_boxes(thumb, np.array([[200.0, 200.0]]), ["HSIL"], box_px=100, scale=0.1)
        >>> out[15, 20].tolist(), out[20, 15].tolist(), out[20, 20].tolist()  # top edge, left edge, inside
        ([213, 94, 0], [213, 94, 0], [255, 255, 255])
        >>> int(thumb.min())  # the input is left as it was
        255
    """
    image = _check_image(thumbnail, "thumbnail")
    points = np.asarray(xy, np.float64)
    if points.size == 0:
        points = points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"xy must be an (N, 2) array of (x, y) positions, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("xy must hold finite (x, y) positions")
    labels = list(labels)
    if len(labels) != len(points):
        raise ValueError(f"got {len(points)} positions but {len(labels)} labels; give one label per cell")
    if not (math.isfinite(box_px) and box_px > 0):
        raise ValueError(f"box_px must be a positive number of level-0 pixels, got {box_px}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale (thumbnail pixels per level-0 pixel) must be positive, got {scale}")
    if thickness is not None and thickness < 1:
        raise ValueError(f"thickness must be at least 1 pixel, got {thickness}")

    out = np.array(image, dtype=np.uint8, order="C", copy=True)
    side = max(round(box_px * scale), _MIN_BOX_PX)
    line = thickness if thickness is not None else (1 if side < 24 else 2)
    rank = {name: i for i, name in enumerate(order)}
    # Stable sort: within a class, later cells still land on top of earlier ones.
    drawing_order = sorted(range(len(labels)), key=lambda i: rank.get(labels[i], -1))
    for i in drawing_order:
        x, y = points[i] * scale
        left, top = round(x - side / 2), round(y - side / 2)
        colour = tuple(int(c) for c in colours.get(labels[i], UNKNOWN_COLOUR))
        cv2.rectangle(out, (left, top), (left + side - 1, top + side - 1), colour, line, lineType=cv2.LINE_8)
    return out


def add_legend(
    image: np.ndarray, counts: Mapping[str, int], colours: Mapping[str, tuple[int, int, int]] = CLASS_COLOURS
) -> np.ndarray:
    """Add a white band under an image naming each class with its colour swatch and count ("NILM 120").

    The text size follows the image width so the legend stays readable when the overlay is shown at thumbnail
    size; entries wrap onto more lines when they do not fit side by side.

    Args:
        image: HxWx3 uint8 RGB image (usually the output of ``draw_cell_boxes``).
        counts: cells per class name, in the order to list them.
        colours: RGB colour per class name; names not in it get an ``UNKNOWN_COLOUR`` swatch.

    Returns:
        A new (H + band)xWx3 uint8 image: ``image`` on top, the legend band below. With no counts the band says
        "no cells".

    Raises:
        ValueError: ``image`` is not an HxWx3 uint8 image.

    Examples:
        >>> out = add_legend(np.zeros((100, 300, 3), np.uint8), {"NILM": 120, "HSIL": 3})
        >>> out.shape[0] > 100, out.shape[1], bool((out[:100] == 0).all()), out[-1, -1].tolist()
        (True, 300, True, [255, 255, 255])
    """
    base = _check_image(image, "image")
    width = base.shape[1]
    font_scale = min(max(width / 900.0, 0.4), 1.2)
    text_px = cv2.getTextSize("Hg", _FONT, font_scale, 1)[0][1]
    stroke = 1 if font_scale < 0.8 else 2
    swatch = text_px + 2
    pad = max(4, text_px // 2)
    line_h = swatch + pad

    entries = [(f"{name} {count}", colours.get(name, UNKNOWN_COLOUR)) for name, count in counts.items()]
    if not entries:
        entries = [("no cells", None)]
    # Lay the entries out left to right, wrapping when the next one would not fit.
    placed: list[tuple[int, int, str, tuple[int, int, int] | None]] = []
    x, row = pad, 0
    for text, colour in entries:
        text_w = cv2.getTextSize(text, _FONT, font_scale, stroke)[0][0]
        entry_w = (swatch + pad // 2 if colour is not None else 0) + text_w
        if x > pad and x + entry_w > width - pad:
            x, row = pad, row + 1
        placed.append((x, row, text, colour))
        x += entry_w + 2 * pad
    band_h = (row + 1) * line_h + pad

    band = np.full((band_h, width, 3), 255, np.uint8)
    for x, row, text, colour in placed:
        top = pad + row * line_h
        text_x = x
        if colour is not None:
            cv2.rectangle(band, (x, top), (x + swatch - 1, top + swatch - 1), tuple(int(c) for c in colour), -1)
            text_x = x + swatch + pad // 2
        baseline_y = top + (swatch + text_px) // 2
        cv2.putText(band, text, (text_x, baseline_y), _FONT, font_scale, _TEXT_COLOUR, stroke, cv2.LINE_AA)
    return np.concatenate([base, band], axis=0)


def _check_image(image: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{what} must be an H x W x 3 RGB image, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"{what} must be 8-bit (uint8), got dtype {array.dtype}")
    return array
