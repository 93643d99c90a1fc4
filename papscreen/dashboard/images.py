"""The pictures of the slide page: the overlay, gallery crops, and a region view of a whole slide.

Pure functions (no Streamlit), so they are testable on their own. Each returns a :class:`Picture`: the image,
or, when a file is missing or unreadable, a message saying what is wrong and what to do. A results folder that
was cleaned up or a scan moved away must leave the rest of the page usable, so nothing here raises for that.

The region view exists because a whole slide's overlay is a thumbnail: at 2048 px across, a 100 000 px slide
shows a cell as a dot. It reads a window of the stored scan around one cell, at full or near-full resolution,
and draws every cell in the window with its class colour, the chosen one ringed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from papscreen.bethesda import BETHESDA_CLASSES, CLASS_COLOURS
from papscreen.db.queries.slide_view import CellRow
from papscreen.errors import PapscreenError
from papscreen.imaging.image_io import DEFAULT_MAX_PIXELS, read_rgb
from papscreen.imaging.overlays import add_legend, draw_cell_boxes
from papscreen.imaging.slides import open_slide

__all__ = [
    "DEFAULT_REGION_OUTPUT_PX",
    "REGION_SIZES",
    "Picture",
    "load_gallery_crop",
    "load_overlay",
    "region_box",
    "region_view",
    "results_file",
]

REGION_SIZES: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
"""Region sides (level-0 px) the page offers: from one cell's neighbourhood to a low-power field."""

DEFAULT_REGION_OUTPUT_PX = 768
"""Side of the region picture; wider windows are read from a coarser pyramid level and shrunk to it."""

_MAX_REGION_SIDE = 16_384
_HIGHLIGHT_COLOUR = (0, 0, 0)


@dataclass(frozen=True)
class Picture:
    """An image to show, or the reason there is none.

    Attributes:
        image: HxWx3 uint8 RGB, or None.
        message: why there is no image (what is missing, what to do); None when there is one.
        caption: a line to show under the image.
        path: the file the image was read from, when it is one as it stands (the page serves the file itself
            rather than encoding the pixels again).
    """

    image: np.ndarray | None
    message: str | None = None
    caption: str = ""
    path: Path | None = None

    @property
    def source(self) -> np.ndarray | str | None:
        """What to hand ``st.image``: the file when there is one, else the pixels."""
        return str(self.path) if self.path is not None else self.image

    @property
    def ok(self) -> bool:
        """Whether there is an image to show."""
        return self.image is not None

    @classmethod
    def missing(cls, message: str) -> Picture:
        """No image, and why."""
        return cls(None, message)


def results_file(results_dir: str | Path | None, name: str | None) -> Path | None:
    """The path of a file of an analysis' results folder, or None when it would lie outside the folder.

    Gallery entries come from the database; a name that climbs out of the folder (``../``) is refused rather
    than read.

    Examples:
        >>> str(results_file("/r/slide-1", "gallery/HSIL/001.png"))
        '/r/slide-1/gallery/HSIL/001.png'
        >>> results_file("/r/slide-1", "../../etc/passwd") is None
        True
    """
    if not results_dir or not name:
        return None
    folder = Path(results_dir).resolve()
    path = (folder / name).resolve()
    return path if path.is_relative_to(folder) else None


def _load(results_dir: str | Path | None, name: str | None, what: str) -> Picture:
    if not results_dir:
        return Picture.missing(f"No {what}: this analysis recorded no results folder. Re-score the slide to make one.")
    path = results_file(results_dir, name)
    if path is None:
        return Picture.missing(f"No {what}: {name!r} is not a file of the results folder {results_dir}.")
    if not path.is_file():
        return Picture.missing(
            f"The {what} {path} is missing (the results folder was moved or cleaned up). "
            "Re-score the slide to write it again; the cells and their reviews are kept in the database."
        )
    try:
        return Picture(read_rgb(path, max_pixels=DEFAULT_MAX_PIXELS), path=path)
    except PapscreenError as e:
        return Picture.missing(f"The {what} cannot be shown: {e}")


def load_overlay(results_dir: str | Path | None, name: str | None = "overlay.png") -> Picture:
    """The analysis' overlay (thumbnail with the cells' boxes and a legend).

    Examples:
        >>> load_overlay(None).message
        'No overlay: this analysis recorded no results folder. Re-score the slide to make one.'
    """
    return _load(results_dir, name or "overlay.png", "overlay")


def load_gallery_crop(results_dir: str | Path | None, file: str) -> Picture:
    """One gallery crop (``results_dir/<file>``, such as ``gallery/HSIL/001.png``).

    Examples:
        >>> "is missing" in load_gallery_crop("/nowhere", "gallery/HSIL/001.png").message
        True
    """
    return _load(results_dir, file, "gallery crop")


def region_box(center: tuple[float, float], size: int, dimensions: tuple[int, int] | None) -> tuple[int, int, int, int]:
    """The level-0 window (x0, y0, x1, y1) of side ``size`` around ``center``, kept inside the slide.

    A cell near an edge gets a window that still lies on the slide (not half white padding), unless the slide is
    smaller than the window.

    Examples:
        >>> region_box((100, 5000), 512, (10_000, 8_000))
        (0, 4744, 512, 5256)
        >>> region_box((100, 100), 512, (300, 200))
        (-106, -156, 406, 356)
    """
    cx, cy = center
    x0, y0 = round(cx - size / 2), round(cy - size / 2)
    if dimensions is not None:
        x0, y0 = _fit(x0, size, dimensions[0]), _fit(y0, size, dimensions[1])
    return x0, y0, x0 + size, y0 + size


def _fit(start: int, size: int, extent: int | None) -> int:
    """A window's start kept on the slide along one axis (centred when the slide is the shorter)."""
    if extent is None:
        return start
    return min(max(start, 0), extent - size) if extent >= size else round((extent - size) / 2)


def region_view(
    stored_path: str | Path | None,
    center: tuple[float, float],
    cells: Sequence[CellRow],
    *,
    size: int = 512,
    output_px: int = DEFAULT_REGION_OUTPUT_PX,
    highlight: int | None = None,
    max_file_bytes: int = 20 * 1024**3,
    max_image_pixels: int = DEFAULT_MAX_PIXELS,
) -> Picture:
    """Read a window of the stored scan around ``center`` and draw the cells in it, ``highlight`` ringed.

    Args:
        stored_path: the scan as the intake stored it (``Slide.stored_path``).
        center: level-0 (x, y) to centre on, usually a cell.
        cells: the cells to draw (level-0 positions and boxes; those outside the window are skipped). Each is
            drawn in the colour of :attr:`CellRow.label`, the reviewer's class when there is one.
        size: side of the window in level-0 pixels.
        output_px: side of the returned picture when the window is larger (read from a coarser level).
        highlight: id of a cell to ring in black, so the reviewer sees which one is meant.
        max_file_bytes: as the intake's limit, for :func:`~papscreen.imaging.slides.open_slide`.
        max_image_pixels: as the intake's limit, for plain images.

    Returns:
        A picture with a legend of the classes in the window, or the reason there is none.

    Examples:
        >>> region_view(None, (0, 0), []).message
        'No region view: the scan was never stored (it is not in the slide store).'
    """
    if not stored_path:
        return Picture.missing("No region view: the scan was never stored (it is not in the slide store).")
    path = Path(stored_path)
    if not path.exists():
        return Picture.missing(
            f"No region view: the scan {path} is no longer in the slide store (moved or deleted). "
            "Put it back to see its cells at full resolution; the overlay and gallery still show."
        )
    if not 1 <= size <= _MAX_REGION_SIDE:
        return Picture.missing(f"No region view: a region side must be 1 to {_MAX_REGION_SIDE} px, not {size}.")
    try:
        with open_slide(path, max_file_bytes=max_file_bytes, max_image_pixels=max_image_pixels) as slide:
            x0, y0, x1, y1 = region_box(center, size, slide.dimensions)
            downsample = max(size / max(output_px, 1), 1.0)
            level = slide.best_level_for_downsample(downsample)
            level_downsample = slide.level_downsamples[level]
            side = max(math.ceil(size / level_downsample), 1)
            window = slide.read_region((x0, y0), level, (side, side))
    except (PapscreenError, ValueError, OSError) as e:
        return Picture.missing(f"No region view: {e}")
    if side > output_px:
        window = cv2.resize(window, (output_px, output_px), interpolation=cv2.INTER_AREA)
    scale = window.shape[1] / size
    inside = [c for c in cells if x0 <= c.x < x1 and y0 <= c.y < y1]
    image = window
    if inside:
        xy = np.array([[c.x - x0, c.y - y0] for c in inside], np.float64)
        box_px = float(np.median([c.box_px for c in inside]))
        image = draw_cell_boxes(image, xy, [c.label for c in inside], box_px, scale)
        chosen = [c for c in inside if c.id == highlight]
        if chosen:
            ring = np.array([[chosen[0].x - x0, chosen[0].y - y0]], np.float64)
            image = draw_cell_boxes(
                image, ring, ["chosen"], box_px * 1.5, scale, {"chosen": _HIGHLIGHT_COLOUR}, thickness=3
            )
    counts = Counter(c.label for c in inside)
    ordered = {name: counts[name] for name in BETHESDA_CLASSES if counts[name]}
    ordered.update({name: n for name, n in counts.items() if name not in ordered})
    image = add_legend(image, ordered, CLASS_COLOURS)
    caption = f"level-0 x {x0}-{x1}, y {y0}-{y1} ({size} px square), {len(inside)} cells"
    return Picture(image, caption=caption)
