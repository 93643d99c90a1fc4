"""One picture of the most suspicious cells of a slide, class by class, for a report or the dashboard.

A cytologist confirms a machine grade by looking at the cells behind it, so the gallery puts each class's crops
side by side at one size under a header in the class colour, with each tile framed in that colour (so a tile
cut out of the picture still says its class) and an optional caption such as the model's probability. A class
with no crops still gets its header and says "none found": an empty HSIL row is itself a finding, and a missing
row would look like a bug.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from papscreen.bethesda import CLASS_COLOURS

__all__ = ["gallery_mosaic"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_COLOUR = (30, 30, 30)
_MUTED_COLOUR = (110, 110, 110)
_UNKNOWN_COLOUR = (128, 128, 128)
_MARGIN = 8  # around the whole gallery
_GAP = 6  # between framed tiles
_BORDER = 2  # frame around each tile
_HEADER_SCALE = 0.6
_TITLE_SCALE = 0.7


def gallery_mosaic(
    rows: Mapping[str, Sequence[np.ndarray]],
    *,
    tile_px: int = 96,
    per_row: int = 10,
    captions: Mapping[str, Sequence[str]] | None = None,
    colours: Mapping[str, tuple[int, int, int]] = CLASS_COLOURS,
    title: str | None = None,
) -> np.ndarray:
    """Lay out cell crops class by class: a coloured header, then framed tiles ``per_row`` to a line.

    The gallery is as wide as its longest line of tiles (at most ``per_row``), and never narrower than its
    headers and title.

    Args:
        rows: crops per class name, in the order the classes are shown; each crop is an HxWx3 uint8 RGB image
            of any size and is resized to ``tile_px`` square (``cv2.INTER_AREA``).
        tile_px: side of each tile, pixels.
        per_row: tiles per line; a class with more crops wraps onto further lines.
        captions: optional short text per crop (such as ``"0.97"``), per class; a class given here must have one
            caption per crop. Classes not given have no captions.
        colours: RGB colour per class name, for headers and frames; other names are grey.
        title: optional line of text above everything (such as the slide name).

    Returns:
        The gallery, HxWx3 uint8 RGB on white. With no classes at all, a small image saying "no cells".

    Raises:
        ValueError: a crop is not an HxWx3 uint8 image, a class's captions do not match its crops in number, or
            ``tile_px`` < 8 or ``per_row`` < 1.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> crops = [rng.integers(0, 256, (50, 40, 3), dtype=np.uint8) for _ in range(3)]
        >>> out = gallery_mosaic({"HSIL": crops, "SCC": []}, tile_px=32, per_row=2)
        >>> out.dtype, out.shape[2], out[0, 0].tolist()
        (dtype('uint8'), 3, [255, 255, 255])
        >>> wider = gallery_mosaic({"HSIL": crops, "SCC": []}, tile_px=32, per_row=3)
        >>> wider.shape[1] > out.shape[1], wider.shape[0] < out.shape[0]  # one line of 3 instead of 2 + 1
        (True, True)
        >>> gallery_mosaic({}).shape[2]
        3
    """
    if tile_px < 8:
        raise ValueError(f"tile_px must be at least 8 pixels, got {tile_px}")
    if per_row < 1:
        raise ValueError(f"per_row must be at least 1, got {per_row}")
    captions = captions or {}
    sections: list[tuple[str, tuple[int, int, int], list[np.ndarray], list[str] | None]] = []
    for name, crops in rows.items():
        tiles = [_tile(crop, tile_px, name, k) for k, crop in enumerate(crops)]
        texts = None
        if name in captions:
            texts = [str(text) for text in captions[name]]
            if len(texts) != len(tiles):
                raise ValueError(f"class {name!r} has {len(tiles)} crops but {len(texts)} captions; give one each")
        colour = tuple(int(c) for c in colours.get(name, _UNKNOWN_COLOUR))
        sections.append((name, colour, tiles, texts))

    text_px = _text_height(_HEADER_SCALE)
    header_h = text_px + 14
    caption_scale = min(max(tile_px / 240.0, 0.35), 0.6)
    caption_h = _text_height(caption_scale) + 6
    title_h = _text_height(_TITLE_SCALE) + 16 if title else 0
    pitch = tile_px + 2 * _BORDER + _GAP

    # Width: the longest line of tiles, or the widest piece of text.
    columns = max((min(len(tiles), per_row) for _, _, tiles, _ in sections), default=0)
    width = 2 * _MARGIN + max(columns * pitch - _GAP, 0)
    texts_to_fit = [(name, _HEADER_SCALE, 2) for name, *_ in sections]
    if any(not tiles for _, _, tiles, _ in sections):
        texts_to_fit.append(("none found", 0.5, 1))
    if title:
        texts_to_fit.append((title, _TITLE_SCALE, 2))
    if not sections:
        texts_to_fit.append(("no cells", _HEADER_SCALE, 1))
    width = max(width, *(_text_width(text, scale, stroke) + 2 * _MARGIN for text, scale, stroke in texts_to_fit))

    height = _MARGIN + title_h
    for _, _, tiles, texts in sections:
        lines = -(-len(tiles) // per_row)
        line_h = tile_px + 2 * _BORDER + (caption_h if texts else 0) + _GAP
        height += header_h + (lines * line_h if tiles else header_h)
    if not sections:
        height += header_h
    height += _MARGIN

    canvas = np.full((height, width, 3), 255, np.uint8)
    y = _MARGIN
    if title:
        _put(canvas, title, (_MARGIN, y + _text_height(_TITLE_SCALE) + 4), _TITLE_SCALE, _TEXT_COLOUR, 2)
        y += title_h
    if not sections:
        _put(canvas, "no cells", (_MARGIN, y + text_px + 4), _HEADER_SCALE, _MUTED_COLOUR, 1)
        return canvas
    for name, colour, tiles, texts in sections:
        _put(canvas, name, (_MARGIN, y + text_px + 4), _HEADER_SCALE, colour, 2)
        rule_y = y + header_h - 5
        canvas[rule_y : rule_y + 2, _MARGIN : width - _MARGIN] = colour
        y += header_h
        if not tiles:
            _put(canvas, "none found", (_MARGIN, y + _text_height(0.5) + 4), 0.5, _MUTED_COLOUR, 1)
            y += header_h
            continue
        line_h = tile_px + 2 * _BORDER + (caption_h if texts else 0) + _GAP
        for k, tile in enumerate(tiles):
            left = _MARGIN + (k % per_row) * pitch
            top = y + (k // per_row) * line_h
            framed = tile_px + 2 * _BORDER
            canvas[top : top + framed, left : left + framed] = colour
            canvas[top + _BORDER : top + _BORDER + tile_px, left + _BORDER : left + _BORDER + tile_px] = tile
            if texts:
                text = _fit(texts[k], caption_scale, framed)
                text_w = _text_width(text, caption_scale, 1)
                baseline = top + framed + caption_h - 3
                _put(canvas, text, (left + (framed - text_w) // 2, baseline), caption_scale, _TEXT_COLOUR, 1)
        y += -(-len(tiles) // per_row) * line_h
    return canvas


def _tile(crop: np.ndarray, tile_px: int, name: str, index: int) -> np.ndarray:
    array = np.asarray(crop)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"crop {index} of class {name!r} must be an H x W x 3 RGB image, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"crop {index} of class {name!r} must be 8-bit (uint8), got dtype {array.dtype}")
    if array.shape[:2] == (tile_px, tile_px):
        return array
    return cv2.resize(np.ascontiguousarray(array), (tile_px, tile_px), interpolation=cv2.INTER_AREA)


def _text_height(scale: float) -> int:
    return cv2.getTextSize("Hg", _FONT, scale, 1)[0][1]


def _text_width(text: str, scale: float, stroke: int) -> int:
    return cv2.getTextSize(text, _FONT, scale, stroke)[0][0]


def _fit(text: str, scale: float, width: int) -> str:
    """Shorten ``text`` with a trailing "." until it fits ``width`` pixels."""
    if _text_width(text, scale, 1) <= width:
        return text
    while len(text) > 1 and _text_width(text + ".", scale, 1) > width:
        text = text[:-1]
    return text + "."


def _put(
    canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour: tuple[int, ...], stroke: int
) -> None:
    cv2.putText(canvas, text, origin, _FONT, scale, tuple(int(c) for c in colour), stroke, cv2.LINE_AA)
