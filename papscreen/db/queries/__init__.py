"""papscreen's one query layer: every read and write of the database goes through these functions.

Each function takes a :class:`sqlalchemy.orm.Session` opened by the caller (``Database.session()``), so a
caller composes several calls into one transaction. Flows, the command line and the dashboard import from
here and never write SQL or manage sessions of their own.
"""

from papscreen.db.queries.analyses import CellRecord, SummaryRecord, cells_of_slide, current_analysis, store_analysis
from papscreen.db.queries.audit import list_events, record_event
from papscreen.db.queries.locks import acquire_lock, lock_holder, release_lock, renew_lock
from papscreen.db.queries.models import (
    get_champion,
    get_model_version,
    list_model_versions,
    promote,
    register_model_version,
    reject,
)
from papscreen.db.queries.reviews import ReviewedCell, mark_slide_reviewed, review_cell, reviewed_cells
from papscreen.db.queries.slides import (
    Claim,
    InvalidTransitionError,
    begin_analysis,
    claim_scan,
    dispatchable_slides,
    fail_slide,
    find_first_arrival,
    find_unfinished_claim,
    get_slide,
    list_slides,
    mark_dispatched,
    mark_stored,
    quarantine_slide,
    renew_lease,
    requeue_slide,
    requeue_stale,
    set_compute_lease,
    settle_gone_duplicate,
    slide_names,
    slides_to_rescore,
    start_processing,
    status_counts,
    unstored_claims,
)
from papscreen.db.queries.training import (
    finish_training_run,
    last_training_run,
    list_training_runs,
    start_training_run,
)

__all__ = [
    "CellRecord",
    "Claim",
    "InvalidTransitionError",
    "ReviewedCell",
    "SummaryRecord",
    "acquire_lock",
    "begin_analysis",
    "cells_of_slide",
    "claim_scan",
    "current_analysis",
    "dispatchable_slides",
    "fail_slide",
    "find_first_arrival",
    "find_unfinished_claim",
    "finish_training_run",
    "get_champion",
    "get_model_version",
    "get_slide",
    "last_training_run",
    "list_events",
    "list_model_versions",
    "list_slides",
    "list_training_runs",
    "lock_holder",
    "mark_dispatched",
    "mark_slide_reviewed",
    "mark_stored",
    "promote",
    "quarantine_slide",
    "record_event",
    "register_model_version",
    "reject",
    "release_lock",
    "renew_lease",
    "renew_lock",
    "requeue_slide",
    "requeue_stale",
    "review_cell",
    "reviewed_cells",
    "set_compute_lease",
    "settle_gone_duplicate",
    "slide_names",
    "slides_to_rescore",
    "start_processing",
    "start_training_run",
    "status_counts",
    "store_analysis",
    "unstored_claims",
]
