"""The analyze-slide flow: one run per slide, named after it, from queued to done (or failed, or quarantined).

Bad input is final and recorded (the scan moves to quarantine; the run completes); so is a scan whose analysis
outruns ``analysis.time_limit_seconds``. Transient trouble (the database unreachable, CUDA out of memory) is
retried by the tasks with back-off. Anything else, storing the result included, marks the slide failed with the
error and fails the run, so it shows red in the Prefect UI. A worker stores a result only while it holds the
slide's lease; one that lost it (the slide was requeued meanwhile) leaves the slide to whoever has it now.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

from papscreen.db import queries
from papscreen.errors import ImageError
from papscreen.tasks.analysis import (
    MODEL_CACHE,
    analyze_task,
    begin_task,
    champions_task,
    quarantine_stored_task,
    store_task,
)
from papscreen.tasks.retry import retry_options
from papscreen.tasks.runtime import current_flow_run_id, open_run, worker_identity

__all__ = ["analyze_slide_flow"]


@flow(name="analyze-slide", flow_run_name="slide {slide_id}: {slide_name}", log_prints=True)
def analyze_slide_flow(slide_id: int, slide_name: str = "", config: str | None = None) -> dict[str, Any]:
    """Analyse one stored slide with the current champions and store its cells and summary.

    Args:
        slide_id: the slide (its row in the database).
        slide_name: the scan's original name, for the run's name in the UI.
        config: optional settings file (else ``PAPSCREEN_*`` variables and defaults).

    Returns:
        ``{"slide_id", "status", ...}``: ``done`` with the analysis, ``skipped`` when another worker had it,
        ``waiting`` when no champion models exist yet, ``quarantined`` with the reason.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    owner, run_id = worker_identity(), current_flow_run_id()
    with open_run(config) as (settings, database):
        retrying = retry_options(settings)
        champions = champions_task.with_options(**retrying)(database)
        if champions is None:
            logger.warning("slide %d waits: no champion models yet (train or import both stages)", slide_id)
            return {"slide_id": slide_id, "status": "waiting", "reason": "no champion models"}
        taken = begin_task.with_options(**retrying)(slide_id, settings, database, owner, run_id)
        if taken is None:
            logger.info("slide %d is not queued (another worker has it, or it is finished): nothing to do", slide_id)
            return {"slide_id": slide_id, "status": "skipped"}
        try:
            result = analyze_task.with_options(**retrying)(
                slide_id, taken["stored_path"], champions, settings, database, owner
            )
            crop_size = MODEL_CACHE.get(champions, settings).stage2.crop_size
            stored = store_task.with_options(**retrying)(
                slide_id, result, champions, settings, database, crop_size, run_id, started, owner
            )
        except queries.LeaseLostError as e:
            logger.warning("%s", e)
            return {"slide_id": slide_id, "status": "lost", "reason": str(e)}
        except ImageError as e:
            reason = f"cannot be analysed: {e.reason}"
            quarantine_stored_task.with_options(**retrying)(slide_id, reason, settings, database)
            return {"slide_id": slide_id, "status": "quarantined", "reason": reason}
        except Exception as e:
            with database.session() as session:
                queries.fail_slide(session, slide_id, f"{type(e).__name__}: {e}", owner=owner)
            raise
        return {"slide_id": slide_id, "status": "done", **stored}
