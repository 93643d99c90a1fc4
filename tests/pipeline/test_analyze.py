"""The slide engine on synthetic whole-slide pyramids and fields, with the session's trained models.

Acceptance: cells found match the ground truth (recall >= 0.95 within 10 px), no cell is counted twice at tile
seams, negative / HSIL / SCC slides get their category, a near-empty slide is unsatisfactory; a damaged region
raises a clear error. The slides are 6144 x 4096 pyramids (levels 1 and 1/4) of 2048 px blocks, three of them
holding 40 normal cells each (plus the planted abnormal ones) with inflammation and debris, the rest empty glass.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy.spatial import cKDTree

from papscreen.config import Settings
from papscreen.datasets.synthetic import SlidePlan, render_field, write_synthetic_slide
from papscreen.errors import UnreadableRegionError
from papscreen.imaging.crops import cut_crops
from papscreen.imaging.slides import ArraySlideReader, OpenSlideReader, TiffReader, open_slide
from papscreen.models.device import torch_threads
from papscreen.models.train_stage1 import Stage1TrainingResult
from papscreen.models.train_stage2 import Stage2TrainingResult
from papscreen.pipeline import ModelPair, SlideResult, analyze

MATCH_PX = 10.0
MIN_RECALL = 0.95
TISSUE = ((0, 0), (1, 0), (1, 1))
PLANTED = {"negative": {}, "hsil": {"HSIL": 20}, "scc": {"SCC": 15}}
"""Abnormal cells planted among the 120 normal ones: a few percent of the cells, as on a positive smear."""
EXPECTED = {"negative": "NILM", "hsil": "HSIL", "scc": "SCC"}
MIN_CELLS_SLIDE = 60
"""These slides hold a few hundred cells, not a real slide's thousands: adequacy is judged at 60 here."""


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def models(trained_stage1: Stage1TrainingResult, trained_stage2: Stage2TrainingResult) -> ModelPair:
    return ModelPair.of(trained_stage1.detector, trained_stage2.classifier)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("home"), grading={"min_cells_slide": MIN_CELLS_SLIDE})


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray]]:
    """Each synthetic slide's file and its squamous ground truth (level-0 x, y)."""
    folder = tmp_path_factory.mktemp("slides")
    out = {}
    for name, planted in PLANTED.items():
        plan = SlidePlan(6144, 4096, tissue_blocks=TISSUE, composition={"NILM": 40}, planted=planted, seed=1)
        truth = write_synthetic_slide(folder / f"{name}.tif", plan, downsamples=(1, 4))
        out[name] = (folder / f"{name}.tif", np.array([[c.x, c.y] for c in truth]))
    return out


@pytest.fixture(scope="module")
def results(
    slides: dict[str, tuple[Path, np.ndarray]], models: ModelPair, settings: Settings
) -> dict[str, SlideResult]:
    out = {}
    for name, (path, _) in slides.items():
        with open_slide(path) as slide:
            out[name] = analyze(slide, models, settings)
    return out


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    if len(found) == 0:
        return 0.0
    distance, _ = cKDTree(found).query(truth)
    return float(np.mean(distance <= MATCH_PX))


@pytest.mark.parametrize("name", list(PLANTED))
def test_cells_found_match_the_ground_truth(
    name: str, slides: dict[str, tuple[Path, np.ndarray]], results: dict[str, SlideResult]
) -> None:
    _, truth = slides[name]
    recall = _recall(results[name].cells.xy, truth)
    print(f"\n{name}: recall {recall:.3f} of {len(truth)} cells within {MATCH_PX} px, {len(results[name].cells)} found")
    assert recall >= MIN_RECALL


@pytest.mark.parametrize("name", list(PLANTED))
def test_slide_category_and_adequacy(name: str, results: dict[str, SlideResult]) -> None:
    summary = results[name].summary
    print(f"\n{name}: {summary.category}, support {summary.grade_support}, counts {summary.class_counts}")
    assert summary.category == EXPECTED[name]
    assert summary.adequacy == "satisfactory"
    assert summary.scan_kind == "slide"
    assert summary.mpp == pytest.approx(0.25)
    assert sum(summary.class_counts.values()) == summary.cell_count == len(results[name].cells)


def test_abnormal_slides_rank_above_the_negative_one(results: dict[str, SlideResult]) -> None:
    scores = {name: result.summary.abnormal_score for name, result in results.items()}
    assert scores["negative"] < min(scores["hsil"], scores["scc"])


def test_near_empty_slide_is_unsatisfactory(tmp_path: Path, models: ModelPair, settings: Settings) -> None:
    plan = SlidePlan(4096, 4096, tissue_blocks=((1, 0),), composition={"NILM": 2}, seed=2)
    write_synthetic_slide(tmp_path / "sparse.tif", plan, downsamples=(1, 4))
    with open_slide(tmp_path / "sparse.tif") as slide:
        summary = analyze(slide, models, settings).summary
    assert summary.adequacy == "unsatisfactory"
    assert f"fewer than the {MIN_CELLS_SLIDE}" in summary.adequacy_reason
    assert summary.cell_count < MIN_CELLS_SLIDE


def test_no_cell_is_counted_twice_at_tile_seams(
    slides: dict[str, tuple[Path, np.ndarray]], models: ModelPair, settings: Settings, results: dict[str, SlideResult]
) -> None:
    """Small tiles put hundreds of seams through the cells; the result is the one the 2048 px tiles gave."""
    path, truth = slides["hsil"]
    small = settings.model_copy(update={"analysis": settings.analysis.model_copy(update={"tile_px": 512})})
    with open_slide(path) as slide:
        tiled = analyze(slide, models, small)
    assert tiled.summary.tiles["total"] > 4 * results["hsil"].summary.tiles["total"]
    pairs = cKDTree(tiled.cells.xy).query_pairs(models.stage1.config.min_distance_px)
    assert not pairs
    reference = results["hsil"].cells.xy
    assert len(tiled.cells) == len(reference)
    distance, _ = cKDTree(reference).query(tiled.cells.xy)
    assert distance.max() < 1.0
    assert _recall(tiled.cells.xy, truth) >= MIN_RECALL


def test_blank_glass_is_skipped_without_losing_cells(
    slides: dict[str, tuple[Path, np.ndarray]], models: ModelPair, settings: Settings, results: dict[str, SlideResult]
) -> None:
    path, _ = slides["negative"]
    every_tile = settings.model_copy(
        update={"analysis": settings.analysis.model_copy(update={"skip_blank_tiles": False})}
    )
    with open_slide(path) as slide:
        full = analyze(slide, models, every_tile)
    skipped = results["negative"].summary.tiles
    assert skipped["analysed"] < skipped["total"] == full.summary.tiles["analysed"]
    np.testing.assert_allclose(np.sort(full.cells.xy, axis=0), np.sort(results["negative"].cells.xy, axis=0), atol=1e-6)


def test_a_field_gives_what_the_two_stages_give_by_hand(models: ModelPair, settings: Settings) -> None:
    field = render_field(np.random.default_rng(4), {"NILM": 20, "LSIL": 3, "SCC": 2})
    result = analyze(ArraySlideReader(field.rgb), models, settings)
    found = models.stage1.detect(field.rgb)
    order = np.lexsort((found.xy[:, 1], found.xy[:, 0]))
    mine = np.lexsort((result.cells.xy[:, 1], result.cells.xy[:, 0]))
    np.testing.assert_allclose(result.cells.xy[mine], found.xy[order], atol=1e-9)
    crops = cut_crops(field.rgb, found.xy[order], models.stage2.crop_size)
    np.testing.assert_allclose(result.cells.probabilities[mine], models.stage2.predict_proba(crops), atol=1e-5)
    assert result.summary.scan_kind == "field"
    assert result.summary.tiles == {"total": 1, "analysed": 1}


def test_stage1_reads_a_lower_pyramid_level_when_it_matches_the_working_scale(
    tmp_path: Path, models: ModelPair, settings: Settings
) -> None:
    plan = SlidePlan(4096, 2048, tissue_blocks=((0, 0), (1, 0)), composition={"NILM": 40}, seed=3)
    truth = write_synthetic_slide(tmp_path / "half.tif", plan, downsamples=(1, 2, 8), compression="zlib")
    assert models.stage1.config.working_scale == 0.5
    with open_slide(tmp_path / "half.tif") as slide:
        result = analyze(slide, models, settings)
    assert result.summary.stage1_level == 1
    assert _recall(result.cells.xy, np.array([[c.x, c.y] for c in truth])) >= MIN_RECALL


def test_openslide_and_tifffile_give_the_same_cells(tmp_path: Path, models: ModelPair, settings: Settings) -> None:
    plan = SlidePlan(4096, 2048, tissue_blocks=((1, 0),), composition={"NILM": 30}, planted={"HSIL": 5}, seed=4)
    write_synthetic_slide(tmp_path / "both.tif", plan, downsamples=(1, 4), compression="zlib")
    with OpenSlideReader(tmp_path / "both.tif") as slide:
        through_openslide = analyze(slide, models, settings)
    with TiffReader(tmp_path / "both.tif") as slide:
        through_tifffile = analyze(slide, models, settings)
    np.testing.assert_allclose(through_openslide.cells.xy, through_tifffile.cells.xy, atol=1e-9)
    np.testing.assert_allclose(through_openslide.cells.probabilities, through_tifffile.cells.probabilities, atol=1e-6)


def test_gallery_overlay_and_progress(
    slides: dict[str, tuple[Path, np.ndarray]], models: ModelPair, settings: Settings
) -> None:
    reports: list[tuple[str, int, int]] = []
    small_gallery = settings.model_copy(update={"analysis": settings.analysis.model_copy(update={"gallery_size": 5})})
    with open_slide(slides["scc"][0]) as slide:
        result = analyze(slide, models, small_gallery, progress=lambda *r: reports.append(r))
    gallery = result.gallery
    assert len(gallery) == 5
    suspicion = result.cells.suspicion
    ranks = [cell.suspicion_rank for cell in gallery]
    assert ranks == sorted(ranks, reverse=True)
    assert ranks == pytest.approx([float(suspicion[cell.index]) for cell in gallery], abs=1e-6)
    labels = result.cells.labels
    for cell in gallery:
        assert cell.label == labels[cell.index]
        assert cell.probability == pytest.approx(result.cells.probabilities[cell.index].max())
        assert cell.crop.shape == (models.stage2.crop_size, models.stage2.crop_size, 3)
        assert (cell.x, cell.y) == tuple(result.cells.xy[cell.index])
    # The slide's most suspicious cell heads the gallery, and no two shown cells overlap (one nucleus, one crop).
    assert gallery[0].index == int(np.argmax(suspicion))
    centres = np.array([(cell.x, cell.y) for cell in gallery])
    gaps = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))[np.triu_indices(len(gallery), 1)]
    assert gaps.min() >= models.stage2.crop_size / 2
    height, width = result.overlay.shape[:2]
    assert width == round(6144 * result.overlay_scale)
    assert height > round(4096 * result.overlay_scale)  # the legend band below the thumbnail
    phases = {phase for phase, _, _ in reports}
    assert phases == {"stage1", "stage2"}
    assert reports[-1] == ("stage2", len(result.cells), len(result.cells))


def test_a_damaged_region_inside_a_slide_raises_a_clear_error(
    tmp_path: Path, models: ModelPair, settings: Settings
) -> None:
    path = tmp_path / "damaged.tif"
    plan = SlidePlan(2048, 2048, tissue_blocks=((0, 0),), composition={"NILM": 20}, seed=5, block_px=1024)
    write_synthetic_slide(path, plan, tile_px=256, downsamples=(1, 4), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[9], page.databytecounts[9]  # level 0, tile (1, 1): x, y 256..511
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))
    with open_slide(path) as slide, pytest.raises(UnreadableRegionError, match=r"damaged\.tif"):
        analyze(slide, models, settings)


@pytest.mark.parametrize(("threshold", "category"), [(1.0, "NILM"), (0.0, "SCC")], ids=["never", "always"])
def test_a_field_scorer_on_the_card_decides_category_and_score(
    models: ModelPair, settings: Settings, threshold: float, category: str
) -> None:
    field = render_field(np.random.default_rng(4), {"NILM": 20, "LSIL": 3, "SCC": 2})
    scored = models.stage2.with_card(field_scorer={"top_k": 3, "threshold": threshold, "sensitivity": 0.95})
    result = analyze(ArraySlideReader(field.rgb), ModelPair.of(models.stage1, scored), settings)
    abnormal = 1.0 - result.cells.probabilities[:, 0]
    assert result.summary.category == category
    assert result.summary.abnormal_score == pytest.approx(np.sort(abnormal)[::-1][:3].sum() / 3, abs=1e-5)
