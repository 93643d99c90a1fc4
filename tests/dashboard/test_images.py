"""The slide page's pictures: overlay and crops from the results folder, the region view from the stored scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from papscreen.bethesda import CLASS_COLOURS
from papscreen.dashboard.images import (
    Picture,
    load_gallery_crop,
    load_overlay,
    region_box,
    region_view,
    results_file,
)
from papscreen.datasets.synthetic.slide import SlidePlan, write_synthetic_slide
from papscreen.db.queries.slide_view import CellRow
from papscreen.imaging.image_io import write_rgb

BLACK = [0, 0, 0]


def _cell(cell_id: int, x: float, y: float, cls: str, side: int = 32, reviewer_label: str | None = None) -> CellRow:
    half = side // 2
    box = (round(x) - half, round(y) - half, round(x) - half + side, round(y) - half + side)
    return CellRow(cell_id, x, y, box, cls, 0.5, 0.9, {cls: 1.0}, reviewer_label=reviewer_label)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results" / "slide-00000001" / "s1-1-s2-2"
    write_rgb(folder / "overlay.png", np.full((20, 30, 3), 7, np.uint8))
    write_rgb(folder / "gallery" / "HSIL" / "001.png", np.full((16, 16, 3), 200, np.uint8))
    return folder


@pytest.fixture
def white_scan(tmp_path: Path) -> Path:
    """A plain 1024 x 768 white field: boxes drawn on it are easy to find."""
    path = tmp_path / "store" / "field.png"
    write_rgb(path, np.full((768, 1024, 3), 255, np.uint8))
    return path


def test_overlay_and_crop_load(results: Path) -> None:
    overlay = load_overlay(results)
    crop = load_gallery_crop(str(results), "gallery/HSIL/001.png")

    assert overlay.ok
    assert overlay.message is None
    assert overlay.image is not None
    assert overlay.image.shape == (20, 30, 3)
    assert int(overlay.image[0, 0, 0]) == 7
    assert crop.image is not None
    assert crop.image.shape == (16, 16, 3)


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("no-folder", "recorded no results folder"),
        ("missing-overlay", "is missing (the results folder was moved or cleaned up)"),
        ("missing-crop", "is missing"),
        ("outside", "is not a file of the results folder"),
        ("corrupt", "cannot be shown"),
    ],
    ids=lambda v: v if " " not in v else "",
)
def test_missing_or_bad_files_give_a_message(results: Path, what: str, expected: str) -> None:
    if what == "no-folder":
        picture = load_overlay(None)
    elif what == "missing-overlay":
        (results / "overlay.png").unlink()
        picture = load_overlay(results)
    elif what == "missing-crop":
        picture = load_gallery_crop(results, "gallery/SCC/001.png")
    elif what == "outside":
        picture = load_gallery_crop(results, "../../../../etc/passwd")
    else:
        (results / "overlay.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        picture = load_overlay(results)

    assert not picture.ok
    assert picture.image is None
    assert picture.message is not None
    assert expected in picture.message


def test_results_file_stays_inside_the_folder(results: Path) -> None:
    assert results_file(results, "gallery/HSIL/001.png") == (results / "gallery/HSIL/001.png").resolve()
    assert results_file(results, "gallery/../overlay.png") == (results / "overlay.png").resolve()
    assert results_file(results, "../other/overlay.png") is None
    assert results_file(results, "/etc/passwd") is None
    assert results_file(None, "overlay.png") is None


@pytest.mark.parametrize(
    ("center", "size", "dimensions", "expected"),
    [
        ((500, 400), 200, (1000, 1000), (400, 300, 600, 500)),
        ((10, 990), 200, (1000, 1000), (0, 800, 200, 1000)),
        ((995, 5), 200, (1000, 1000), (800, 0, 1000, 200)),
        ((50, 50), 400, (100, 300), (-150, -50, 250, 350)),
        ((50, 50), 100, None, (0, 0, 100, 100)),
    ],
    ids=["middle", "bottom-left", "top-right", "slide-smaller", "unknown-size"],
)
def test_region_box(
    center: tuple[float, float],
    size: int,
    dimensions: tuple[int, int] | None,
    expected: tuple[int, int, int, int],
) -> None:
    assert region_box(center, size, dimensions) == expected


def test_region_view_draws_the_cells_in_the_window_with_class_colours(white_scan: Path) -> None:
    cells = [
        _cell(1, 300.0, 300.0, "HSIL"),
        _cell(2, 400.0, 350.0, "NILM", reviewer_label="SCC"),  # the reviewer's class wins
        _cell(3, 900.0, 700.0, "LSIL"),  # outside the window: not drawn, not counted
    ]

    picture = region_view(white_scan, (300.0, 300.0), cells, size=256, highlight=1)

    assert picture.ok, picture.message
    image = picture.image
    assert image is not None
    assert image.shape[1] == 256
    assert image.shape[0] > 256  # the legend band below
    x0, y0 = 300 - 128, 300 - 128
    assert image[300 - 16 - y0, 300 - x0].tolist() == list(CLASS_COLOURS["HSIL"])  # top edge of the HSIL box
    assert image[350 - 16 - y0, 400 - x0].tolist() == list(CLASS_COLOURS["SCC"])
    assert image[300 - 24 - y0, 300 - x0].tolist() == BLACK  # the ring around the chosen cell
    assert image[300 - y0, 300 - x0].tolist() == [255, 255, 255]  # the cell itself is not covered
    assert picture.caption == "level-0 x 172-428, y 172-428 (256 px square), 2 cells"


def test_region_view_of_an_empty_window(white_scan: Path) -> None:
    picture = region_view(white_scan, (100.0, 100.0), [_cell(1, 900.0, 700.0, "HSIL")], size=128)

    assert picture.image is not None
    assert bool((picture.image[:128] == 255).all())
    assert picture.caption.endswith("0 cells")


def test_region_view_reads_a_coarser_level_for_a_wide_window(tmp_path: Path) -> None:
    scan = tmp_path / "pyramid.tif"
    plan = SlidePlan(2048, 2048, tissue_blocks=((0, 0), (1, 1)), block_px=1024, composition={"NILM": 3}, seed=3)
    truth = write_synthetic_slide(scan, plan, tile_px=256, downsamples=(1, 4))
    cells = [_cell(i, t.x, t.y, t.label) for i, t in enumerate(truth)]
    target = cells[0]

    near = region_view(scan, (target.x, target.y), cells, size=512, highlight=target.id)
    wide = region_view(scan, (1024.0, 1024.0), cells, size=2048, output_px=256)

    assert near.image is not None
    assert near.image.shape[1] == 512  # level 0, as read
    assert wide.image is not None
    assert wide.image.shape[1] == 256  # level 1 (512 px), shrunk to the output side
    assert wide.caption.endswith(f"{len(cells)} cells")


@pytest.mark.parametrize(
    ("stored", "size", "expected"),
    [
        (None, 256, "the scan was never stored"),
        ("gone.svs", 256, "is no longer in the slide store"),
        ("corrupt.svs", 256, "No region view: "),
        ("field.png", 0, "a region side must be"),
    ],
    ids=["never-stored", "gone", "corrupt", "bad-size"],
)
def test_region_view_problems_give_a_message(
    tmp_path: Path, white_scan: Path, stored: str | None, size: int, expected: str
) -> None:
    (tmp_path / "store" / "corrupt.svs").write_bytes(b"II*\x00 this is not a slide")
    path = None if stored is None else tmp_path / "store" / stored

    picture = region_view(path, (10.0, 10.0), [], size=size)

    assert picture == Picture(None, picture.message)
    assert picture.message is not None
    assert expected in picture.message
