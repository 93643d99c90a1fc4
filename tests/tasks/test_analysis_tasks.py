"""Analysis helpers that need no trained model: CUDA out-of-memory handling and the cells' database rows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from papscreen.config import Settings
from papscreen.errors import AnalysisTimeoutError
from papscreen.pipeline import CellTable
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


def test_the_time_limit_stops_an_analysis_at_its_next_tile() -> None:
    now = [0.0]
    check = analysis.time_limit("big.tif", 60.0, clock=lambda: now[0])
    check("stage1", 1, 10)
    now[0] = 61.0
    with pytest.raises(AnalysisTimeoutError, match="time limit of 60 s \\(during stage1\\)"):
        check("stage1", 2, 10)
