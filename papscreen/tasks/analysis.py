"""Analysis tasks: take a queued slide, run the two stages on it, store the result in one transaction.

Thin wrappers over :func:`papscreen.pipeline.analyze` and the query layer. The champion models are loaded
once per process and reused while they stay the champions; a new champion is picked up by the next analysis
without a restart. While a slide is analysed a background thread renews its lease, so a slide whose worker
died (SIGKILL, power cut) is recognised and queued again (:func:`papscreen.tasks.intake.recover_task`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import SQLAlchemyError

from papscreen.config import Settings
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries import CellRecord, SummaryRecord
from papscreen.db.schema import ModelStage
from papscreen.errors import AnalysisTimeoutError
from papscreen.imaging.image_io import write_rgb
from papscreen.imaging.slides import open_slide
from papscreen.pipeline import ModelPair, SlideResult, analyze, load_model_pair
from papscreen.pipeline.engine import ProgressCallback
from papscreen.pipeline.export import write_exports
from papscreen.pipeline.progress import ProgressReporter
from papscreen.tasks.compute import compute_slot
from papscreen.tasks.intake import quarantine_stored_scan
from papscreen.tasks.retry import TransientError

__all__ = [
    "Champions",
    "ModelCache",
    "analyze_task",
    "analyze_with_oom_fallback",
    "begin_task",
    "both",
    "cell_records",
    "champions_task",
    "keep_lease",
    "quarantine_stored_task",
    "results_folder",
    "store_task",
    "time_limit",
    "with_progress",
]

MIN_OOM_BATCH = 8
"""Below this many crops per batch a CUDA out-of-memory error is not worked around by halving."""


@dataclass(frozen=True)
class Champions:
    """The model versions an analysis uses (ids and folders), read from the registry at its start."""

    stage1_id: int
    stage1_path: str
    stage1_sha256: str
    stage2_id: int
    stage2_path: str
    stage2_sha256: str


class ModelCache:
    """The loaded champion pair of this process; replaced when the registry names other champions.

    One pair is kept (two would double a GPU worker's memory for no gain: analyses use the champions).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._pair: ModelPair | None = None

    def get(self, champions: Champions, settings: Settings) -> ModelPair:
        """The pair for these champions on the configured device and precision, loading it when new."""
        key = (
            champions.stage1_id,
            champions.stage1_sha256,
            champions.stage2_id,
            champions.stage2_sha256,
            settings.device,
            settings.analysis.precision,
        )
        with self._lock:
            if self._key != key or self._pair is None:
                self._pair = None  # let the old pair go before the new one loads
                self._pair = load_model_pair(
                    champions.stage1_path,
                    champions.stage2_path,
                    device=settings.device,
                    precision=settings.analysis.precision,
                )
                self._key = key
            return self._pair

    def clear(self) -> None:
        """Forget the loaded pair (tests; freeing a GPU)."""
        with self._lock:
            self._key, self._pair = None, None


MODEL_CACHE = ModelCache()
"""The process's model cache: the one piece of process state papscreen keeps, on purpose (loading a ResNet50
for every slide would cost more than analysing a field)."""


def results_folder(settings: Settings, slide_id: int, champions: Champions) -> Path:
    """Where one analysis' overlay, gallery and exports go: one folder per (slide, model pair)."""
    return settings.results_dir / f"slide-{slide_id:08d}" / f"s1-{champions.stage1_id}-s2-{champions.stage2_id}"  # type: ignore[operator]


@task(name="begin", cache_policy=NO_CACHE)
def begin_task(
    slide_id: int, settings: Settings, database: Database, owner: str, flow_run_id: str | None
) -> dict[str, Any] | None:
    """Take the slide (queued -> processing, with a lease); ``None`` when another worker has it or it is done."""
    with database.session() as session:
        slide = queries.begin_analysis(
            session,
            slide_id,
            owner=owner,
            lease_seconds=settings.orchestration.lease_seconds,
            flow_run_id=flow_run_id,
        )
        if slide is None:
            return None
        return {"stored_path": slide.stored_path, "name": slide.original_name, "attempts": slide.attempts}


@task(name="champions", cache_policy=NO_CACHE)
def champions_task(database: Database) -> Champions | None:
    """The current champions of both stages, or ``None`` while a stage has none."""
    with database.session() as session:
        stage1 = queries.get_champion(session, ModelStage.STAGE1)
        stage2 = queries.get_champion(session, ModelStage.STAGE2)
        if stage1 is None or stage2 is None:
            return None
        return Champions(stage1.id, stage1.file_path, stage1.sha256, stage2.id, stage2.file_path, stage2.sha256)


@contextmanager
def keep_lease(database: Database, slide_id: int, owner: str, lease_seconds: float) -> Iterator[None]:
    """Renew the slide's lease every third of its length while the block runs (a daemon thread)."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease_seconds / 3):
            try:
                with database.session() as session:
                    queries.renew_lease(session, slide_id, owner=owner, lease_seconds=lease_seconds)
            except Exception:  # noqa: BLE001 - a missed renewal is retried at the next beat
                continue

    thread = threading.Thread(target=renew, name=f"lease-slide-{slide_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def time_limit(path: str, limit_seconds: float, clock: Callable[[], float] = time.monotonic) -> ProgressCallback:
    """A progress callback that stops the analysis once it has run ``limit_seconds``.

    Checked at every tile and every stage-2 batch, so that one scan cannot hold the compute slot for ever.
    """
    deadline = clock() + limit_seconds

    def check(phase: str, _done: int, _total: int) -> None:
        if clock() > deadline:
            raise AnalysisTimeoutError(path, limit_seconds, phase)

    return check


def with_progress(database: Database, slide_id: int, owner: str, log: Callable[[str], None]) -> ProgressReporter:
    """A progress callback that writes the analysis' progress on the slide's row and logs each tenth of it.

    A database that cannot take the write (a connection cut) costs the progress bar, never the analysis.
    """
    logged = {"tenth": -1}

    def report(fraction: float, note: str) -> None:
        try:
            with database.session() as session:
                queries.record_progress(session, slide_id, owner=owner, fraction=fraction, note=note)
        except SQLAlchemyError as e:
            log(f"slide {slide_id}: progress not recorded ({e.__class__.__name__}); the analysis goes on")
        tenth = int(fraction * 10)
        if tenth > logged["tenth"]:
            logged["tenth"] = tenth
            log(f"slide {slide_id}: {note}")

    return ProgressReporter(report)


def both(*callbacks: ProgressCallback) -> ProgressCallback:
    """One progress callback that calls each of ``callbacks`` in turn (a time limit and a reporter)."""

    def call(phase: str, done: int, total: int) -> None:
        for callback in callbacks:
            callback(phase, done, total)

    return call


def analyze_with_oom_fallback(
    path: str,
    pair: ModelPair,
    settings: Settings,
    warn: Callable[[str], None] = lambda _message: None,
    progress: ProgressCallback | None = None,
) -> SlideResult:
    """Analyse; on CUDA out-of-memory, halve the stage-2 batch and try again (down to 8 crops)."""
    current = settings
    while True:
        try:
            with open_slide(
                path, max_file_bytes=current.limits.max_file_bytes, max_image_pixels=current.limits.max_image_pixels
            ) as slide:
                return analyze(slide, pair, current, progress=progress)
        except torch.cuda.OutOfMemoryError as e:
            torch.cuda.empty_cache()
            batch = current.batch.stage2_for(pair.device.type) // 2
            if batch < MIN_OOM_BATCH:
                raise TransientError(f"CUDA out of memory even at {batch * 2} crops per batch: {e}") from e
            warn(f"CUDA out of memory: stage-2 batch halved to {batch}")
            current = current.model_copy(
                update={"batch": current.batch.model_copy(update={"stage2_inference_gpu": batch})}, deep=True
            )


@task(name="analyze", cache_policy=NO_CACHE)
def analyze_task(
    slide_id: int, stored_path: str, champions: Champions, settings: Settings, database: Database, owner: str
) -> SlideResult:
    """Both stages on the stored scan, holding a slot of the compute limit (one GPU is never oversubscribed).

    The slide's lease is renewed while the models load and the scan is analysed; the analysis stops at
    ``analysis.time_limit_seconds`` (:class:`~papscreen.errors.AnalysisTimeoutError`).
    """

    def record_lease(lease_id: str | None) -> None:
        with database.session() as session:
            queries.set_compute_lease(session, slide_id, lease_id)

    with keep_lease(database, slide_id, owner, settings.orchestration.lease_seconds):
        pair = MODEL_CACHE.get(champions, settings)
        with compute_slot(settings.orchestration.compute_limit, record_lease):
            result = analyze_with_oom_fallback(
                stored_path,
                pair,
                settings,
                get_run_logger().warning,
                progress=both(
                    time_limit(stored_path, settings.analysis.time_limit_seconds),
                    with_progress(database, slide_id, owner, get_run_logger().info),
                ),
            )
    summary = result.summary
    get_run_logger().info(
        "slide %d: %d cells, %s, abnormal score %.3f (%s, %s, %.1f s)",
        slide_id,
        summary.cell_count,
        summary.category,
        summary.abnormal_score,
        summary.device,
        summary.precision,
        summary.timings.get("total", float("nan")),
    )
    return result


def cell_records(result: SlideResult, crop_size: int) -> list[CellRecord]:
    """The result's cells as database rows; the box is the full-resolution crop stage 2 classified."""
    cells = result.cells
    labels = cells.labels
    suspicion = cells.suspicion
    half = crop_size // 2
    records = []
    for i in range(len(cells)):
        x, y = float(cells.xy[i, 0]), float(cells.xy[i, 1])
        cx, cy = round(x), round(y)
        records.append(
            CellRecord(
                x=x,
                y=y,
                box_x0=cx - half,
                box_y0=cy - half,
                box_x1=cx - half + crop_size,
                box_y1=cy - half + crop_size,
                stage1_score=float(cells.detection_scores[i]),
                predicted_class=labels[i],
                probabilities={c: float(p) for c, p in zip(cells.classes, cells.probabilities[i], strict=True)},
                suspicion=float(suspicion[i]),
            )
        )
    return records


def _write_gallery_crops(result: SlideResult, folder: Path) -> list[dict[str, Any]]:
    """One PNG per gallery cell (the dashboard shows them), listed most suspicious first with where each cell is."""
    listed = []
    for rank, cell in enumerate(result.gallery, start=1):
        path = folder / "gallery" / f"{rank:03d}.png"
        write_rgb(path, np.ascontiguousarray(cell.crop))
        listed.append(
            {
                "class": cell.label,
                "rank": rank,
                "cell_index": int(cell.index),
                "x": float(cell.x),
                "y": float(cell.y),
                "probability": float(cell.probability),
                "suspicion": float(cell.suspicion_rank),
                "file": str(path.relative_to(folder)),
            }
        )
    return listed


@task(name="store", cache_policy=NO_CACHE)
def store_task(
    slide_id: int,
    result: SlideResult,
    champions: Champions,
    settings: Settings,
    database: Database,
    crop_size: int,
    flow_run_id: str | None,
    started: float,
    owner: str | None = None,
) -> dict[str, Any]:
    """Write the exports, then cells and summary in one transaction (a re-run replaces, never duplicates).

    Stored only while ``owner`` still holds the slide's lease (renewed meanwhile); a reviewer's labels survive.
    """
    renewing = keep_lease(database, slide_id, owner, settings.orchestration.lease_seconds) if owner else nullcontext()
    with renewing:
        folder = results_folder(settings, slide_id, champions)
        write_exports(result, folder, overwrite=True)
        gallery = _write_gallery_crops(result, folder)
        summary = result.summary
        record = SummaryRecord(
            category=summary.category,
            adequacy=summary.adequacy,
            abnormal_score=float(summary.abnormal_score),
            cell_count=int(summary.cell_count),
            class_counts={k: int(v) for k, v in summary.class_counts.items()},
            details={
                **summary.to_json(),
                "results_dir": str(folder),
                "overlay": "overlay.png",
                "overlay_scale": float(result.overlay_scale),
                "gallery": gallery,
            },
        )
        with database.session() as session:
            analysis = queries.store_analysis(
                session,
                slide_id=slide_id,
                stage1_model_id=champions.stage1_id,
                stage2_model_id=champions.stage2_id,
                cells=cell_records(result, crop_size),
                summary=record,
                duration_s=time.perf_counter() - started,
                flow_run_id=flow_run_id,
                owner=owner,
            )
            return {"analysis_id": analysis.id, "cells": summary.cell_count, "category": summary.category}


@task(name="quarantine", cache_policy=NO_CACHE)
def quarantine_stored_task(slide_id: int, reason: str, settings: Settings, database: Database) -> str | None:
    """A stored scan that turned out unreadable moves to quarantine, with its reason beside it."""
    moved = quarantine_stored_scan(settings, database, slide_id, reason)
    get_run_logger().warning("slide %d quarantined: %s", slide_id, reason)
    return moved
