"""The rescore flow: analyse again, with the current champions, slides an older model pair scored.

Each earlier result stays in the database beside the new one (one analysis per slide and model pair), so
which models produced which result is never lost; the slide's summary follows the newest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger

from papscreen.db import queries
from papscreen.db.schema import ModelStage
from papscreen.flows.intake import dispatch_analyses, queued_slides_task
from papscreen.tasks.runtime import open_run

__all__ = ["rescore_flow"]


@flow(name="rescore", log_prints=True)
def rescore_flow(since: datetime, config: str | None = None, dispatch: str | None = None) -> dict[str, Any]:
    """Queue every slide received since ``since`` whose result came from other models, and analyse them.

    Returns:
        The slides queued again and the analyses started (as the intake pass reports them).
    """
    logger = get_run_logger()
    with open_run(config) as (settings, database):
        if dispatch is not None:
            settings.orchestration.dispatch = dispatch  # type: ignore[assignment]
        with database.session() as session:
            stage1 = queries.get_champion(session, ModelStage.STAGE1)
            stage2 = queries.get_champion(session, ModelStage.STAGE2)
            if stage1 is None or stage2 is None:
                logger.warning("nothing to rescore with: a stage has no champion")
                return {"requeued": [], "analyses": []}
            ids = queries.slides_to_rescore(session, since=since, stage1_model_id=stage1.id, stage2_model_id=stage2.id)
            for slide_id in ids:
                queries.requeue_slide(
                    session, slide_id, reason=f"rescore with models {stage1.id} (stage 1) and {stage2.id} (stage 2)"
                )
        logger.info("rescoring %d slides received since %s", len(ids), since.isoformat())
        wanted = set(ids)
        slides = [s for s in queued_slides_task(settings, database) if s[0] in wanted] if ids else []
        return {"requeued": ids, "analyses": dispatch_analyses(slides, settings, database, config)}
