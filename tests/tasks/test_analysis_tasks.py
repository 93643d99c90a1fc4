"""Analysis helpers that need no trained model: CUDA out-of-memory handling and the cells' database rows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy.exc import OperationalError

from papscreen.config import Settings
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.errors import AnalysisTimeoutError
from papscreen.imaging.image_io import read_rgb
from papscreen.pipeline import CellTable
from papscreen.pipeline.result import GalleryCell
from papscreen.tasks import analysis
from papscreen.tasks.retry import TransientError, is_transient


class _Slide:
    def __enter__(self) -> _Slide:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


def test_cuda_out_of_memory_halves_the_batch_until_it_fits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    batches: list[int] = []

    def fake_analyze(_slide: object, _pair: object, settings: Settings, **_kwargs: object) -> str:
        batches.append(settings.batch.stage2_inference_gpu)
        if settings.batch.stage2_inference_gpu > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "result"

    monkeypatch.setattr(analysis, "analyze", fake_analyze)
    monkeypatch.setattr(analysis, "open_slide", lambda *_a, **_k: _Slide())
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    pair = SimpleNamespace(device=torch.device("cuda"))
    warnings: list[str] = []
    result = analysis.analyze_with_oom_fallback("scan.tif", pair, Settings(home=tmp_path), warnings.append)
    assert result == "result"
    assert batches == [256, 128, 64]
    assert len(warnings) == 2


def test_out_of_memory_at_the_smallest_batch_is_a_transient_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def always_oom(*_args: object, **_kwargs: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(analysis, "analyze", always_oom)
    monkeypatch.setattr(analysis, "open_slide", lambda *_a, **_k: _Slide())
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    pair = SimpleNamespace(device=torch.device("cuda"))
    with pytest.raises(TransientError) as caught:
        analysis.analyze_with_oom_fallback("scan.tif", pair, Settings(home=tmp_path))
    assert is_transient(caught.value)


def test_cell_rows_carry_the_crop_box_and_probabilities() -> None:
    cells = CellTable(
        xy=np.array([[100.4, 50.0]]),
        detection_scores=np.array([0.9]),
        probabilities=np.array([[0.1, 0.2, 0.6, 0.1]]),
        classes=("NILM", "LSIL", "HSIL", "SCC"),
    )
    (row,) = analysis.cell_records(SimpleNamespace(cells=cells), crop_size=64)
    assert (row.box_x0, row.box_y0, row.box_x1, row.box_y1) == (68, 18, 132, 82)
    assert row.predicted_class == "HSIL"
    assert row.suspicion == pytest.approx(0.9)
    assert row.probabilities["HSIL"] == pytest.approx(0.6)


def test_gallery_crops_are_written_in_gallery_order_with_what_the_page_reads(tmp_path: Path) -> None:
    crops = [np.full((8, 8, 3), value, np.uint8) for value in (10, 20)]
    gallery = (
        GalleryCell(index=7, label="SCC", probability=0.8, x=10.0, y=20.0, crop=crops[0], suspicion_rank=0.9),
        GalleryCell(index=2, label="NILM", probability=0.55, x=300.0, y=20.0, crop=crops[1], suspicion_rank=0.45),
    )
    listed = analysis._write_gallery_crops(SimpleNamespace(gallery=gallery), tmp_path)
    assert [(e["rank"], e["class"], e["cell_index"], e["file"]) for e in listed] == [
        (1, "SCC", 7, "gallery/001.png"),
        (2, "NILM", 2, "gallery/002.png"),
    ]
    assert [e["suspicion"] for e in listed] == [0.9, 0.45]
    for entry, crop in zip(listed, crops, strict=True):
        np.testing.assert_array_equal(read_rgb(tmp_path / str(entry["file"])), crop)


def test_the_time_limit_stops_an_analysis_at_its_next_tile() -> None:
    now = [0.0]
    check = analysis.time_limit("big.tif", 60.0, clock=lambda: now[0])
    check("stage1", 1, 10)
    now[0] = 61.0
    with pytest.raises(AnalysisTimeoutError, match="time limit of 60 s \\(during stage1\\)"):
        check("stage1", 2, 10)


def test_progress_lands_on_the_slide_row_and_in_the_log_by_tenths(database: Database) -> None:
    with database.session() as s:
        slide_id = queries.claim_scan(s, sha256="c" * 64, original_name="big.svs", size_bytes=1).slide.id
        queries.mark_stored(s, slide_id, stored_path="/store/big.svs")
    with database.session() as s:
        queries.begin_analysis(s, slide_id, owner="host:1", lease_seconds=600)
    logged: list[str] = []
    reporter = analysis.with_progress(database, slide_id, "host:1", logged.append)
    reporter.every_seconds = 0

    for tile in range(1, 11):
        reporter("stage1", tile, 10)

    with database.session() as s:
        slide = queries.get_slide(s, slide_id)
        assert slide is not None
        assert slide.progress_fraction == pytest.approx(0.5)
        assert (slide.progress_note or "").startswith("stage 1: 10 of 10 tiles (50%)")
    assert len(logged) == 6  # 0%, 10%, ..., 50%: one line a tenth, not one a tile
    assert logged[-1].startswith(f"slide {slide_id}: stage 1: 10 of 10 tiles (50%)")


def test_a_database_that_refuses_progress_does_not_stop_the_analysis() -> None:
    class Refusing:
        def session(self) -> Any:
            raise OperationalError("UPDATE slides", {}, Exception("connection cut"))

    logged: list[str] = []
    reporter = analysis.with_progress(Refusing(), 7, "host:1", logged.append)  # type: ignore[arg-type]  # a stand-in database

    reporter("stage1", 1, 4)

    assert logged[0] == "slide 7: progress not recorded (OperationalError); the analysis goes on"
    assert logged[1].startswith("slide 7: stage 1: 1 of 4 tiles")
