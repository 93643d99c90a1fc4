"""``analyze(slide, models, settings)``: the two stages over a whole scan, tile by tile, in bounded memory.

1. Stage 1 reads the scan at the pyramid level nearest its working scale (level 0 for a plain field), in
   overlapping tiles whose cores partition the level; each tile keeps the cells in its core, and cells that still
   lie within ``min_distance`` of each other across a seam are merged (the stronger stays), so none is counted
   twice. Whole slides skip tiles that hold no stained material (empty glass), found on a thumbnail.
2. Stage 2 cuts a full-resolution crop round each cell, reading level 0 block by block (each block once, with
   the margin its crops need) and classifies the crops in batches.

Both stages read through :func:`~papscreen.pipeline.prefetch.read_ahead`: reader threads fill a bounded queue
while the network computes, so reading overlaps compute and memory stays flat whatever the scan's size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.config import Settings
from papscreen.datasets.conventions import STAGE1_INPUT_PX
from papscreen.imaging.crops import cut_crops
from papscreen.imaging.mosaic import gallery_mosaic
from papscreen.imaging.overlays import add_legend, draw_cell_boxes
from papscreen.imaging.slides import SlideReader
from papscreen.imaging.tiling import Tile, tile_grid
from papscreen.imaging.tissue import tile_has_tissue, tissue_mask
from papscreen.models.field_score import FieldScorer
from papscreen.models.stage1 import Stage1Detector, non_maximum_suppression
from papscreen.pipeline.gallery import SuspiciousCells, overlap_distance
from papscreen.pipeline.grading import grade_slide
from papscreen.pipeline.models import ModelPair
from papscreen.pipeline.prefetch import BusyClock, read_ahead
from papscreen.pipeline.result import CellTable, ScanKind, SlideResult, SlideSummary

__all__ = ["ProgressCallback", "analyze", "gallery_image", "scan_kind"]

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``progress(phase, done, total)`` with phase ``stage1`` (tiles) or ``stage2`` (cells)."""

FIELD_MAX_PIXELS = 64_000_000
"""A single-level image up to this many pixels is a field of view; anything larger, or pyramidal, is a slide."""


def scan_kind(slide: SlideReader) -> ScanKind:
    """``slide`` for a pyramid or a very large image, ``field`` for a single field of view.

    Examples:
        >>> from papscreen.imaging.slides import ArraySlideReader
        >>> scan_kind(ArraySlideReader(np.zeros((1536, 2048, 3), np.uint8)))
        'field'
    """
    width, height = slide.dimensions
    return "slide" if slide.level_count > 1 or width * height > FIELD_MAX_PIXELS else "field"


@dataclass
class _Stage1Plan:
    level: int
    detector: Stage1Detector
    scale_xy: tuple[float, float]  # level-0 pixels per level pixel
    tiles: list[Tile]
    min_distance_px: float  # level-0 pixels


def _plan_stage1(slide: SlideReader, stage1: Stage1Detector, tile_px: int) -> _Stage1Plan:
    """Pick the level stage 1 reads, adapt the detector to it, and lay out the tiles."""
    config = stage1.config
    level = 0 if config.use_proposals else slide.best_level_for_downsample(1.0 / config.working_scale)
    downsample = slide.level_downsamples[level]
    detector = stage1
    if level:
        # The detector's distances are in the pixels it is given: express them in this level's pixels.
        detector = stage1.with_config(
            working_scale=min(1.0, config.working_scale * downsample),
            min_distance_px=config.min_distance_px / downsample,
            smoothing_sigma_px=config.smoothing_sigma_px / downsample,
            snap_radius_px=config.snap_radius_px / downsample,
            snap_sigma_px=config.snap_sigma_px / downsample,
        )
    scale = detector.config.working_scale
    window = STAGE1_INPUT_PX / scale
    margin = math.ceil(
        2 * window
        + detector.config.min_distance_px
        + 4 * detector.config.smoothing_sigma_px
        + (detector.config.snap_radius_px + 2 * detector.config.snap_sigma_px if detector.config.snap_radius_px else 0)
    )
    step = config.map_stride / scale
    align = round(step) if abs(step - round(step)) < 1e-6 else 1
    width, height = slide.level_dimensions[level]
    width0, height0 = slide.dimensions
    return _Stage1Plan(
        level=level,
        detector=detector,
        scale_xy=(width0 / width, height0 / height),
        tiles=tile_grid(width, height, tile_px, margin, align=max(1, align)),
        min_distance_px=config.min_distance_px,
    )


def _merge_seams(xy: np.ndarray, scores: np.ndarray, min_distance: float) -> np.ndarray:
    """Indices kept after merging cells closer than ``min_distance`` (found in neighbouring tiles)."""
    if len(xy) < 2 or min_distance <= 0:
        return np.arange(len(xy))
    pairs = cKDTree(xy).query_pairs(min_distance, output_type="ndarray")
    if len(pairs) == 0:
        return np.arange(len(xy))
    involved = np.unique(pairs)
    kept_involved = involved[non_maximum_suppression(xy[involved], scores[involved], min_distance)]
    keep = np.ones(len(xy), bool)
    keep[involved] = False
    keep[kept_involved] = True
    return np.flatnonzero(keep)


@dataclass
class _CropBatch:
    """One reusable batch of crops, filled block by block and emptied by each forward pass.

    Page-locked on a GPU, so the copy to the device is asynchronous, and allocated once, so no batch allocates anew.
    """

    def __init__(self, size: int, crop: int, *, pinned: bool) -> None:
        self.crops = torch.empty((size, crop, crop, 3), dtype=torch.uint8, pin_memory=pinned).numpy()
        self.indices = np.empty(size, np.int64)
        self.count = 0

    @property
    def full(self) -> bool:
        return self.count == len(self.indices)

    def fill(self, indices: np.ndarray, crops: np.ndarray) -> int:
        """Add as many of the crops as fit; returns how many were taken."""
        taken = min(len(indices), len(self.indices) - self.count)
        self.crops[self.count : self.count + taken] = crops[:taken]
        self.indices[self.count : self.count + taken] = indices[:taken]
        self.count += taken
        return taken


def _crop_blocks(xy: np.ndarray, block_px: int) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """Cells grouped by the level-0 block holding them, blocks row by row: ((col, row), cell indices)."""
    if len(xy) == 0:
        return
    cols = np.floor(np.maximum(xy[:, 0], 0) / block_px).astype(np.int64)
    rows = np.floor(np.maximum(xy[:, 1], 0) / block_px).astype(np.int64)
    order = np.lexsort((cols, rows))
    keys = np.stack([rows[order], cols[order]], axis=1)
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    for begin, end in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        yield (int(keys[begin, 1]), int(keys[begin, 0])), order[begin:end]


def analyze(
    slide: SlideReader,
    models: ModelPair,
    settings: Settings,
    *,
    progress: ProgressCallback | None = None,
) -> SlideResult:
    """Find, grade and summarise every cell of a scan.

    Args:
        slide: an open scan (:func:`~papscreen.imaging.slides.open_slide`, or an in-memory
            :class:`~papscreen.imaging.slides.ArraySlideReader`).
        models: stage 1 and stage 2 (:func:`~papscreen.pipeline.models.load_model_pair`).
        settings: papscreen's settings; ``analysis``, ``grading`` and ``batch`` are used.
        progress: optional ``progress(phase, done, total)`` callback.

    Returns:
        Per-cell results in level-0 pixels, the slide summary, the gallery and the overlay.

    Raises:
        UnreadableRegionError: the scan is damaged inside a region that had to be read.
    """
    started = time.perf_counter()
    analysis, grading = settings.analysis, settings.grading
    kind = scan_kind(slide)
    width0, height0 = slide.dimensions
    read_clock = BusyClock()
    readers = analysis.reader_threads_here()
    compute = {"stage1": 0.0, "stage2": 0.0}

    # Thumbnail first: it shows where the stained material is and becomes the overlay.
    thumbnail = read_clock.timed(slide.thumbnail)(analysis.overlay_max_side)
    thumb_scale = thumbnail.shape[1] / width0
    mask = tissue_mask(thumbnail) if kind == "slide" and analysis.skip_blank_tiles else None

    plan = _plan_stage1(slide, models.stage1, analysis.tile_px)
    sx, sy = plan.scale_xy

    def level0_box(tile: Tile) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = tile.read
        return (math.floor(x0 * sx), math.floor(y0 * sy), math.ceil(x1 * sx), math.ceil(y1 * sy))

    tiles = [t for t in plan.tiles if mask is None or tile_has_tissue(mask, thumb_scale, level0_box(t))]

    def read_tile(tile: Tile) -> np.ndarray:
        x0, y0, _, _ = tile.read
        return slide.read_region((round(x0 * sx), round(y0 * sy)), plan.level, tile.read_size)

    found_xy: list[np.ndarray] = []
    found_scores: list[np.ndarray] = []
    for done, (tile, rgb) in enumerate(
        read_ahead(read_clock.timed(read_tile), tiles, workers=readers, depth=analysis.queue_depth),
        start=1,
    ):
        tick = time.perf_counter()
        cells = plan.detector.detect(rgb, region_offset=(float(tile.read[0]), float(tile.read[1])))
        compute["stage1"] += time.perf_counter() - tick
        inside = tile.in_core(cells.xy[:, 0], cells.xy[:, 1])
        # Level pixel centres sit at integers: level position u covers level-0 pixels u*s .. (u+1)*s.
        found_xy.append((cells.xy[inside] + 0.5) * np.array([sx, sy]) - 0.5)
        found_scores.append(cells.scores[inside])
        if progress:
            progress("stage1", done, len(tiles))
    xy = np.concatenate(found_xy) if found_xy else np.zeros((0, 2))
    scores = np.concatenate(found_scores) if found_scores else np.zeros(0, np.float32)
    kept = _merge_seams(xy, scores.astype(np.float64), plan.min_distance_px)
    xy, scores = xy[kept], scores[kept]

    # Stage 2: full-resolution crops, block by block, classified in batches.
    stage2 = models.stage2
    crop = stage2.crop_size
    half = crop // 2 + 1
    classes = stage2.classes
    probabilities = np.zeros((len(xy), len(classes)), np.float32)
    gallery = SuspiciousCells(classes, analysis.gallery_size, overlap_distance(crop))
    batch_size = settings.batch.stage2_for(models.device.type)

    def read_crops(job: tuple[tuple[int, int], np.ndarray]) -> np.ndarray:
        (col, row), indices = job
        block = analysis.crop_block_px
        x0, y0 = max(0, col * block - half), max(0, row * block - half)
        x1, y1 = min(width0, (col + 1) * block + half + 1), min(height0, (row + 1) * block + half + 1)
        region = slide.read_region((x0, y0), 0, (x1 - x0, y1 - y0))
        return cut_crops(region, xy[indices] - np.array([x0, y0]), crop)

    batch = _CropBatch(batch_size, crop, pinned=models.device.type == "cuda")
    done_cells = 0

    def classify() -> None:
        nonlocal done_cells
        indices, crops = batch.indices[: batch.count], batch.crops[: batch.count]
        tick = time.perf_counter()
        probs = stage2.predict_proba(crops, batch_size=batch_size)
        compute["stage2"] += time.perf_counter() - tick
        probabilities[indices] = probs
        gallery.offer(probs, indices, xy[indices], crops)
        done_cells += len(probs)
        batch.count = 0
        if progress:
            progress("stage2", done_cells, len(xy))

    jobs = list(_crop_blocks(xy, analysis.crop_block_px))
    for (_, indices), crops in read_ahead(
        read_clock.timed(read_crops), jobs, workers=readers, depth=analysis.queue_depth
    ):
        start = 0
        while start < len(indices):
            start += batch.fill(indices[start:], crops[start:])
            if batch.full:
                classify()
    if batch.count:
        classify()

    table = CellTable(xy, scores.astype(np.float32), probabilities, classes)
    scorer = FieldScorer.from_dict(stage2.card.field_scorer) if stage2.card.field_scorer else None
    grade = grade_slide(probabilities, classes, grading, kind, scorer)
    counts = np.bincount(table.predicted, minlength=len(classes))
    class_counts = {name: int(counts[i]) for i, name in enumerate(classes)}
    labels = table.labels
    overlay = draw_cell_boxes(thumbnail, xy, labels, box_px=crop, scale=thumb_scale)
    overlay = add_legend(overlay, class_counts)
    summary = SlideSummary(
        cell_count=len(table),
        class_counts=class_counts,
        abnormal_score=grade.abnormal_score,
        category=grade.category,
        grade_support=grade.grade_support,
        adequacy=grade.adequacy,
        adequacy_reason=grade.adequacy_reason,
        category_reason=grade.category_reason,
        scan_kind=kind,
        dimensions=(width0, height0),
        mpp=slide.mpp,
        stage1_level=plan.level,
        tiles={"total": len(plan.tiles), "analysed": len(tiles)},
        device=str(models.device),
        precision=stage2.precision,
        models=dict(models.names),
        timings={
            "read": read_clock.seconds,
            "stage1": compute["stage1"],
            "stage2": compute["stage2"],
            "total": time.perf_counter() - started,
        },
        settings={"grading": grading.model_dump(mode="json"), "analysis": analysis.model_dump(mode="json")},
    )
    return SlideResult(
        source=str(slide.path),
        cells=table,
        summary=summary,
        gallery=gallery.cells(),
        overlay=overlay,
        overlay_scale=thumb_scale,
    )


def gallery_image(result: SlideResult, *, tile_px: int = 96, per_row: int = 10) -> np.ndarray:
    """The gallery as one picture, a row per class (most severe on top), each row most suspicious first."""
    order = [c for c in reversed(BETHESDA_CLASSES) if any(cell.label == c for cell in result.gallery)]
    order += sorted({cell.label for cell in result.gallery} - set(order))
    rows = {c: [cell.crop for cell in result.gallery if cell.label == c] for c in order}
    captions = {c: [f"{cell.probability:.2f}" for cell in result.gallery if cell.label == c] for c in order}
    return gallery_mosaic(rows, tile_px=tile_px, per_row=per_row, captions=captions, title=result.source)
