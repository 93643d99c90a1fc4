"""Synthetic whole-slide images: both readers see the pyramid the plan describes, pixels and truth match.

One lossless slide is written for the module (4000x3000 in 1024-px blocks, so the right and bottom blocks are
cropped and the smallest level's size is rounded down); checks that need another file write small ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

import papscreen.datasets.synthetic.slide as slide_module
from papscreen.datasets.synthetic import GLASS_LEVEL, SlidePlan, TruthCell, render_block, write_synthetic_slide
from papscreen.imaging.slides import OpenSlideReader, SlideReader, TiffReader, open_slide

DOWNSAMPLES = (1, 4, 16)
PLAN = SlidePlan(
    4000,
    3000,
    tissue_blocks=((0, 0), (2, 1), (3, 2)),
    composition={"NILM": 6},
    block_compositions={(3, 2): {"NILM": 2, "LSIL": 1}},
    planted={"HSIL": 2, "SCC": 1},
    block_px=1024,
    seed=3,
)
READERS: dict[str, Callable[[Path], SlideReader]] = {
    "open_slide": open_slide,
    "OpenSlideReader": OpenSlideReader,
    "TiffReader": TiffReader,
}


def _small_plan(**overrides: object) -> SlidePlan:
    arguments: dict[str, object] = {
        "width": 2048,
        "height": 1536,
        "tissue_blocks": ((1, 0),),
        "composition": {"NILM": 3},
        "planted": {"HSIL": 1},
        "block_px": 1024,
        "seed": 5,
    }
    arguments.update(overrides)
    return SlidePlan(**arguments)  # type: ignore[arg-type]


def _write(path: Path, plan: SlidePlan, **kwargs: object) -> list[TruthCell]:
    options: dict[str, object] = {"tile_px": 256, "downsamples": DOWNSAMPLES, "compression": "zlib"}
    options.update(kwargs)
    return write_synthetic_slide(path, plan, **options)  # type: ignore[arg-type]


def _level0(path: Path) -> np.ndarray:
    with open_slide(path) as slide:
        return slide.read_region((0, 0), 0, slide.dimensions)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[TruthCell]]:
    path = tmp_path_factory.mktemp("slide") / "slide.tif"
    return path, _write(path, PLAN)


# -- the pyramid -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_readers_see_levels_and_mpp(written: tuple[Path, list[TruthCell]], reader: Callable) -> None:
    path, _ = written
    with reader(path) as slide:
        assert slide.level_count == 3
        assert slide.dimensions == (4000, 3000)
        assert slide.level_dimensions == ((4000, 3000), (1000, 750), (250, 187))
        assert slide.level_downsamples == pytest.approx((1.0, 4.0, (16.0 + 3000 / 187) / 2))
        assert slide.mpp == pytest.approx(0.25)


def test_open_slide_hands_it_to_openslide(written: tuple[Path, list[TruthCell]]) -> None:
    with open_slide(written[0]) as slide:
        assert isinstance(slide, OpenSlideReader)


def test_mpp_is_written_as_asked(tmp_path: Path) -> None:
    path = tmp_path / "slide.tif"
    _write(path, _small_plan(), mpp=0.5)
    for reader in READERS.values():
        with reader(path) as slide:
            assert slide.mpp == pytest.approx(0.5)


@pytest.mark.parametrize(
    "block", [(2, 1), (1, 0), (3, 2), (3, 0)], ids=["tissue", "glass", "cropped-tissue", "cropped-glass"]
)
@pytest.mark.parametrize("reader", [OpenSlideReader, TiffReader], ids=["openslide", "tifffile"])
def test_level0_is_the_rendered_block(
    written: tuple[Path, list[TruthCell]], block: tuple[int, int], reader: Callable
) -> None:
    rgb, _ = render_block(PLAN, *block)
    with reader(written[0]) as slide:
        region = slide.read_region((block[0] * 1024, block[1] * 1024), 0, (rgb.shape[1], rgb.shape[0]))
    np.testing.assert_array_equal(region, rgb)


def test_edge_blocks_are_cropped_to_the_slide() -> None:
    assert render_block(PLAN, 3, 2)[0].shape == (3000 - 2048, 4000 - 3072, 3)
    assert render_block(PLAN, 0, 2)[0].shape == (3000 - 2048, 1024, 3)


@pytest.mark.parametrize("level", [1, 2], ids=["x4", "x16"])
@pytest.mark.parametrize("reader", [OpenSlideReader, TiffReader], ids=["openslide", "tifffile"])
def test_lower_levels_are_area_averages_of_level0(
    written: tuple[Path, list[TruthCell]], level: int, reader: Callable
) -> None:
    path, _ = written
    level0 = _level0(path)
    downsample = DOWNSAMPLES[level]
    with reader(path) as slide:
        width, height = slide.level_dimensions[level]
        pixels = slide.read_region((0, 0), level, (width, height))
    expected = cv2.resize(
        level0[: height * downsample, : width * downsample], (width, height), interpolation=cv2.INTER_AREA
    )
    assert np.abs(pixels.astype(int) - expected).max() <= 1


# -- truth -------------------------------------------------------------------------------------------------
def test_truth_counts_are_composition_plus_planted(written: tuple[Path, list[TruthCell]]) -> None:
    _, cells = written
    expected = Counter({"NILM": 6 + 6 + 2, "LSIL": 1, "HSIL": 2, "SCC": 1})
    assert Counter(cell.label for cell in cells) == expected
    assert PLAN.cell_counts == dict(expected)
    assert all(cell.kind == "squamous" for cell in cells)


def test_truth_lies_inside_tissue_blocks(written: tuple[Path, list[TruthCell]]) -> None:
    _, cells = written
    for cell in cells:
        assert 0 <= cell.x < PLAN.width
        assert 0 <= cell.y < PLAN.height
        assert (int(cell.x // PLAN.block_px), int(cell.y // PLAN.block_px)) in PLAN.tissue_blocks


def test_truth_matches_render_block(written: tuple[Path, list[TruthCell]]) -> None:
    _, cells = written
    rendered = [
        cell
        for col, row in sorted(PLAN.tissue_blocks, key=lambda b: (b[1], b[0]))
        for cell in render_block(PLAN, col, row)[1]
    ]
    assert cells == rendered


def test_planted_cells_are_spread_by_the_seed() -> None:
    plan = SlidePlan(8192, 8192, tissue_blocks=((0, 0), (1, 1), (2, 2), (3, 3)), planted={"SCC": 40}, block_px=2048)
    shares = [plan.block_composition(*block).get("SCC", 0) for block in plan.tissue_blocks]
    assert sum(shares) == 40
    assert sum(share > 0 for share in shares) >= 3
    assert plan.block_composition(0, 1) == {}


# -- determinism and files ---------------------------------------------------------------------------------
def test_same_plan_same_slide(tmp_path: Path) -> None:
    plan = _small_plan()
    first, second = tmp_path / "a.tif", tmp_path / "b.tif"
    assert _write(first, plan) == _write(second, plan)
    np.testing.assert_array_equal(_level0(first), _level0(second))
    other = tmp_path / "c.tif"
    _write(other, _small_plan(seed=6))
    assert not np.array_equal(_level0(first), _level0(other))


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "slide.tif"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _write(path, _small_plan())
    assert path.read_bytes() == b"keep me"
    cells = _write(path, _small_plan(), overwrite=True)
    assert len(cells) == 4
    assert _level0(path).shape == (1536, 2048, 3)


def test_leaves_no_scratch_files(tmp_path: Path) -> None:
    _write(tmp_path / "slide.tif", _small_plan())
    assert [p.name for p in tmp_path.iterdir()] == ["slide.tif"]


def test_jpeg_slide_is_close_to_the_rendered_blocks(tmp_path: Path) -> None:
    plan = _small_plan()
    path = tmp_path / "slide.tif"
    write_synthetic_slide(path, plan, tile_px=256, downsamples=(1, 4))
    with open_slide(path) as slide:
        assert isinstance(slide, OpenSlideReader)
        assert slide.level_dimensions == ((2048, 1536), (512, 384))
        tissue = slide.read_region((1024, 0), 0, (1024, 1024))
    difference = np.abs(tissue.astype(int) - render_block(plan, 1, 0)[0])
    assert difference.mean() < 2.0


def test_bigtiff_is_read_by_both_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slide_module, "_BIGTIFF_RAW_BYTES", 0)
    path = tmp_path / "slide.tif"
    _write(path, _small_plan(), compression=None)
    assert path.read_bytes()[:4] == b"II+\x00"
    for reader in READERS.values():
        with reader(path) as slide:
            np.testing.assert_array_equal(
                slide.read_region((1024, 0), 0, (1024, 1024)), render_block(_small_plan(), 1, 0)[0]
            )


def test_near_empty_slide_is_glass(tmp_path: Path) -> None:
    path = tmp_path / "glass.tif"
    assert _write(path, _small_plan(tissue_blocks=(), planted={})) == []
    pixels = _level0(path)
    assert abs(float(pixels.mean()) - GLASS_LEVEL) < 0.1
    assert 1.0 < float(pixels.std()) < 2.0


def test_one_cell_slide(tmp_path: Path) -> None:
    plan = _small_plan(tissue_blocks=((0, 1),), composition={"HSIL": 1}, planted={})
    cells = _write(tmp_path / "one.tif", plan)
    assert [cell.label for cell in cells] == ["HSIL"]
    assert cells[0].y >= 1024


# -- refusals ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"width": 0}, "width"),
        ({"height": -5}, "height"),
        ({"height": 1.5}, "height"),
        ({"block_px": 1000}, "block_px"),
        ({"seed": -1}, "seed"),
        ({"tissue_blocks": ((2, 0),)}, "tissue_blocks"),
        ({"tissue_blocks": ((1, 0), (1, 0))}, "tissue_blocks"),
        ({"tissue_blocks": ((1,),)}, "tissue_blocks"),
        ({"tissue_blocks": (1, 0)}, "tissue_blocks"),
        ({"composition": {"ASCUS": 1}}, "composition"),
        ({"composition": {"NILM": -1}}, "composition"),
        ({"planted": {"HSIL": 1.0}}, "planted"),
        ({"tissue_blocks": (), "planted": {"HSIL": 1}}, "planted"),
        ({"block_compositions": {(0, 0): {"NILM": 1}}}, "block_compositions"),
        ({"block_compositions": {(1, 0): {"SCC": -2}}}, "block_compositions"),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
def test_invalid_plans_are_refused(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        _small_plan(**overrides)


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"tile_px": 100}, "tile_px"),
        ({"tile_px": 768}, "tile_px"),
        ({"downsamples": (2, 4)}, "downsamples"),
        ({"downsamples": (1, 16, 4)}, "downsamples"),
        ({"downsamples": (1, 3)}, "downsamples"),
        ({"downsamples": (1, 2048)}, "downsamples"),
        ({"compression": "lzw"}, "compression"),
        ({"mpp": 0.0}, "mpp"),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
def test_invalid_writer_arguments_are_refused(tmp_path: Path, arguments: dict[str, object], name: str) -> None:
    path = tmp_path / "slide.tif"
    with pytest.raises(ValueError, match=name):
        _write(path, _small_plan(), **arguments)
    assert list(tmp_path.iterdir()) == []


def test_render_block_outside_the_slide_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        render_block(PLAN, 4, 0)
