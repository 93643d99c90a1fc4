"""The slide columns that the worklist's rows and the slide page's view both copy out of a ``Slide``."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from papscreen.db.schema import Slide


class SlideFields(TypedDict):
    """A slide's own columns under the names the read views give them (``status`` as its string value)."""

    name: str
    status: str
    category: str | None
    adequacy: str | None
    abnormal_score: float | None
    cell_count: int | None
    received_at: datetime
    finished_at: datetime | None
    reviewed_at: datetime | None
    reviewed_by: str | None
    flow_run_id: str | None
    error: str | None
    progress_fraction: float | None
    progress_note: str | None
    interpretation: str | None
    signout_status: str | None
    signed_out_by: str | None
    signed_out_at: datetime | None


def slide_fields(slide: Slide) -> SlideFields:
    """The columns of ``slide`` that :class:`SlideFields` names, for ``View(**slide_fields(slide), ...)``."""
    return SlideFields(
        name=slide.original_name,
        status=slide.status.value,
        category=slide.category,
        adequacy=slide.adequacy,
        abnormal_score=slide.abnormal_score,
        cell_count=slide.cell_count,
        received_at=slide.received_at,
        finished_at=slide.finished_at,
        reviewed_at=slide.reviewed_at,
        reviewed_by=slide.reviewed_by,
        flow_run_id=slide.flow_run_id,
        error=slide.error,
        progress_fraction=slide.progress_fraction,
        progress_note=slide.progress_note,
        interpretation=slide.interpretation,
        signout_status=slide.signout_status,
        signed_out_by=slide.signed_out_by,
        signed_out_at=slide.signed_out_at,
    )
