"""Re-running and re-scoring: the same models replace a result, new champions add one; no restart needed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import Analysis, Cell, ModelStage, SlideStatus, utcnow
from papscreen.flows.analyze import analyze_slide_flow
from papscreen.flows.intake import intake_flow
from papscreen.flows.rescore import rescore_flow
from papscreen.models.card import read_card
from papscreen.models.checkpoints import resolve_card_path
from papscreen.models.stage2 import Stage2Classifier
from papscreen.tasks.registry import register_saved_model
from tests.flows.service import start_service, write_field_scan

pytestmark = pytest.mark.slow


def _counts(database: Database, slide_id: int) -> tuple[int, int]:
    with database.session() as session:
        analyses = session.scalar(select(func.count()).select_from(Analysis).where(Analysis.slide_id == slide_id))
        cells = session.scalar(select(func.count()).select_from(Cell).where(Cell.slide_id == slide_id))
        return analyses, cells


@pytest.mark.usefixtures("prefect_api")
def test_rerun_replaces_and_rescore_with_a_new_champion_keeps_both_results(
    database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, trained_model_folders: tuple[Path, Path]
) -> None:
    settings = start_service(monkeypatch, database, trained_model_folders)
    write_field_scan(settings.intake_dir / "field.png", seed=7, hsil=2)
    first = intake_flow(dispatch="inline")
    (analysis,) = first["analyses"]
    slide_id = analysis["slide_id"]
    analyses, cells = _counts(database, slide_id)
    assert (analyses, cells) == (1, analysis["cells"])

    with database.session() as session:  # the same models again (a retry after a fix): replaced, not added
        queries.requeue_slide(session, slide_id, reason="test: run again")
    assert analyze_slide_flow(slide_id=slide_id)["status"] == "done"
    assert _counts(database, slide_id) == (1, cells)

    # a new stage-2 champion (slightly different weights), promoted while this process keeps its model cache
    newer = Stage2Classifier.from_checkpoint(trained_model_folders[1])
    with torch.no_grad():
        next(p for p in reversed(list(newer.network.parameters()))).add_(1e-3)
    newer.to_checkpoint(tmp_path / "stage2-newer", {"macro_f1": 0.99})
    version = register_saved_model(
        database, tmp_path / "stage2-newer", read_card(resolve_card_path(tmp_path / "stage2-newer")), actor="test"
    )
    with database.session() as session:
        previous = queries.get_champion(session, ModelStage.STAGE2).id
        queries.promote(session, version.id, reason="test")

    report = rescore_flow(since=utcnow() - timedelta(hours=1), dispatch="inline")
    assert report["requeued"] == [slide_id]
    assert [a["status"] for a in report["analyses"]] == ["done"]
    with database.session() as session:
        slide = queries.get_slide(session, slide_id)
        assert slide.status == SlideStatus.DONE
        assert slide.stage2_model_id == version.id  # the new champion, picked up without a restart
        models = session.execute(select(Analysis.stage2_model_id).where(Analysis.slide_id == slide_id)).scalars()
        assert sorted(models) == sorted([previous, version.id])
        assert len(queries.cells_of_slide(session, slide_id)) == slide.cell_count
    assert _counts(database, slide_id)[0] == 2  # the old result is kept beside the new one
    assert rescore_flow(since=utcnow() - timedelta(hours=1), dispatch="inline")["requeued"] == []
