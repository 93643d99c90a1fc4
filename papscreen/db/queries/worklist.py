"""What the dashboard's overview and worklist show: the day's figures, and slides ranked by suspicion.

Everything here returns plain frozen dataclasses (never ORM objects), so the dashboard can cache the answers
with ``st.cache_data`` and a page never touches a session after its ``with database.session()`` block.

The worklist ranks analysed slides the way screening imagers do: by abnormal score, most suspicious first,
with a rank ``n/N`` and a quintile (1 = the most suspicious fifth). The ranking population is every analysed
(``done``) slide with a score received in the chosen date window (all of them when no dates are given); the
other filters (status, category, reviewed, name) only narrow what is listed, so a slide keeps its rank while a
reviewer filters. Ties go to the slide received first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from papscreen.db.queries._rows import slide_fields
from papscreen.db.queries.models import get_champion
from papscreen.db.schema import ModelStage, Slide, SlideStatus, TrainingRun, TrainingStatus, utcnow

__all__ = [
    "PENDING_STATUSES",
    "ChampionFigures",
    "OverviewFigures",
    "RetrainingOutcome",
    "WindowFigures",
    "WorklistFilter",
    "WorklistRow",
    "key_metrics",
    "overview_figures",
    "quintile",
    "unanalysed_slides",
    "worklist",
]

NORMAL_CATEGORY = "NILM"
UNSATISFACTORY = "unsatisfactory"
PENDING_STATUSES: tuple[SlideStatus, ...] = (SlideStatus.QUEUED, SlideStatus.PROCESSING, SlideStatus.FAILED)
"""Slides without a current result: waiting, being analysed, or failed (listed apart, without a rank)."""
GUARDED_CLASSES = ("HSIL", "SCC")
"""Classes whose sensitivity the overview shows next to a champion (the grades a screen must not miss)."""
DEFAULT_LIMIT = 500


@dataclass(frozen=True)
class WindowFigures:
    """Slides received since ``start``: how many, how many analysed, how many abnormal, how many quarantined.

    Attributes:
        start: the window's start (UTC).
        received: slides received (duplicates excluded: a copy is not a new specimen).
        done: of those, analysed.
        abnormal: analysed, adequate, and of a category other than NILM.
        unsatisfactory: analysed but unsatisfactory (too few squamous cells).
        quarantined: quarantined (a file the intake refused).
    """

    start: datetime
    received: int
    done: int
    abnormal: int
    unsatisfactory: int
    quarantined: int

    @property
    def abnormal_rate(self) -> float | None:
        """Share of analysed slides that are abnormal; ``None`` before any slide was analysed."""
        return self.abnormal / self.done if self.done else None


@dataclass(frozen=True)
class ChampionFigures:
    """A stage's champion and the few metrics people compare at a glance."""

    stage: str
    model_id: int
    name: str
    architecture: str
    since: datetime
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrainingOutcome:
    """The newest finished (re)training of a stage: what the validation gate decided and why."""

    stage: str
    run_id: int
    status: str
    decision: str | None
    reason: str | None
    finished_at: datetime | None
    model_version_id: int | None


@dataclass(frozen=True)
class OverviewFigures:
    """Everything the overview page shows, read in one transaction."""

    now: datetime
    today: WindowFigures
    week: WindowFigures
    queued: int
    processing: int
    failed: int
    champions: dict[str, ChampionFigures | None]
    retraining: dict[str, RetrainingOutcome | None]

    @property
    def queue_length(self) -> int:
        """Slides waiting for or in analysis."""
        return self.queued + self.processing


@dataclass(frozen=True)
class WorklistFilter:
    """What the worklist lists; the defaults list every analysed slide.

    Attributes:
        statuses: slide statuses to list (``done`` by default; others are listed without a rank).
        categories: only these categories (empty: all).
        reviewed: ``True`` only reviewed slides, ``False`` only unreviewed ones, ``None`` both.
        received_since: received at or after (UTC); also bounds the ranking population.
        received_until: received before (UTC, exclusive); also bounds the ranking population.
        name_contains: case-insensitive part of the slide's original name.
        limit: most rows returned (the ranking still counts every slide).
    """

    statuses: tuple[SlideStatus, ...] = (SlideStatus.DONE,)
    categories: tuple[str, ...] = ()
    reviewed: bool | None = None
    received_since: datetime | None = None
    received_until: datetime | None = None
    name_contains: str = ""
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class WorklistRow:
    """One slide as the worklist lists it; ``rank``, ``total`` and ``quintile`` are None when unranked."""

    slide_id: int
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
    rank: int | None
    total: int | None
    quintile: int | None
    flow_run_id: str | None
    error: str | None
    progress_fraction: float | None = None
    progress_note: str | None = None
    interpretation: str | None = None
    signout_status: str | None = None
    signed_out_by: str | None = None
    signed_out_at: datetime | None = None
    older_models: bool = False
    """Analysed by models that are no longer the champions (a re-score would use the current ones)."""

    @property
    def rank_text(self) -> str:
        """``"3/40"`` as screening imagers show it; empty when unranked."""
        return f"{self.rank}/{self.total}" if self.rank is not None and self.total else ""


def quintile(rank: int, total: int) -> int:
    """Which fifth of the ranking a rank falls in: 1 = the most suspicious fifth, 5 = the least.

    Examples:
        >>> [quintile(r, 10) for r in range(1, 11)]
        [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
        >>> [quintile(r, 3) for r in (1, 2, 3)]  # the fifth where each slide's share of the ranking starts
        [1, 2, 4]
    """
    if total < 1 or not 1 <= rank <= total:
        raise ValueError(f"rank {rank} is not within 1..{total}")
    return 5 * (rank - 1) // total + 1


def key_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics the overview shows for a model: macro F1, accuracy, F1/recall, HSIL and SCC sensitivity.

    Only those present (and numeric) are returned, so a stage-1 model (binary, no per-class table) shows its
    own.

    Examples:
        >>> key_metrics({"macro_f1": 0.8, "accuracy": 0.9, "per_class": {"HSIL": {"sensitivity": 0.7}}})
        {'macro_f1': 0.8, 'accuracy': 0.9, 'HSIL_sensitivity': 0.7}
    """
    found: dict[str, float] = {}
    for name in ("macro_f1", "accuracy", "f1", "recall"):
        value = metrics.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = float(value)
    per_class = metrics.get("per_class")
    if isinstance(per_class, dict):
        for name in GUARDED_CLASSES:
            value = (per_class.get(name) or {}).get("sensitivity") if isinstance(per_class.get(name), dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[f"{name}_sensitivity"] = float(value)
    return found


def _is_abnormal() -> ColumnElement[bool]:
    """A done slide that is adequate and of a category other than NILM (SQL, for counting)."""
    return and_(
        Slide.status == SlideStatus.DONE,
        Slide.category.is_not(None),
        Slide.category != NORMAL_CATEGORY,
        func.lower(Slide.category) != UNSATISFACTORY,
        or_(Slide.adequacy.is_(None), Slide.adequacy != UNSATISFACTORY),
    )


def _window(session: Session, start: datetime) -> WindowFigures:
    def count_of(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    row = session.execute(
        select(
            func.count(),
            count_of(Slide.status == SlideStatus.DONE),
            count_of(_is_abnormal()),
            count_of(and_(Slide.status == SlideStatus.DONE, Slide.adequacy == UNSATISFACTORY)),
            count_of(Slide.status == SlideStatus.QUARANTINED),
        ).where(Slide.received_at >= start, Slide.status != SlideStatus.DUPLICATE)
    ).one()
    received, done, abnormal, unsatisfactory, quarantined = (int(v) for v in row)
    return WindowFigures(start, received, done, abnormal, unsatisfactory, quarantined)


def _champion(session: Session, stage: ModelStage) -> ChampionFigures | None:
    model = get_champion(session, stage)
    if model is None:
        return None
    return ChampionFigures(
        stage=stage.value,
        model_id=model.id,
        name=model.name,
        architecture=model.architecture,
        since=model.promoted_at or model.created_at,
        metrics=key_metrics(model.metrics or {}),
    )


def _last_retraining(session: Session, stage: ModelStage) -> RetrainingOutcome | None:
    run = session.scalars(
        select(TrainingRun)
        .where(TrainingRun.stage == stage, TrainingRun.status != TrainingStatus.RUNNING)
        .order_by(TrainingRun.finished_at.desc(), TrainingRun.id.desc())
        .limit(1)
    ).first()
    if run is None:
        return None
    return RetrainingOutcome(
        stage=stage.value,
        run_id=run.id,
        status=run.status.value,
        decision=run.decision.value if run.decision else None,
        reason=run.reason or run.error,
        finished_at=run.finished_at,
        model_version_id=run.model_version_id,
    )


def overview_figures(session: Session, *, now: datetime | None = None) -> OverviewFigures:
    """The overview's figures: today (since UTC midnight) and the last 7 days, the queue, failures, models.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     figures = overview_figures(s)
        ...     figures.today.received, figures.queue_length, figures.champions["stage1"]
        (0, 0, None)
    """
    now = now or utcnow()
    midnight = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    counts = dict(
        session.execute(
            select(Slide.status, func.count())
            .where(Slide.status.in_([SlideStatus.QUEUED, SlideStatus.PROCESSING, SlideStatus.FAILED]))
            .group_by(Slide.status)
        ).all()
    )
    return OverviewFigures(
        now=now,
        today=_window(session, midnight),
        week=_window(session, now - timedelta(days=7)),
        queued=counts.get(SlideStatus.QUEUED, 0),
        processing=counts.get(SlideStatus.PROCESSING, 0),
        failed=counts.get(SlideStatus.FAILED, 0),
        champions={stage.value: _champion(session, stage) for stage in ModelStage},
        retraining={stage.value: _last_retraining(session, stage) for stage in ModelStage},
    )


def _received_between(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(Slide.received_at >= since)
    if until is not None:
        conditions.append(Slide.received_at < until)
    return conditions


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _row(slide: Slide, rank: int | None, total: int | None, champions: tuple[int | None, int | None]) -> WorklistRow:
    analysed_by = (slide.stage1_model_id, slide.stage2_model_id)
    return WorklistRow(
        slide_id=slide.id,
        **slide_fields(slide),
        rank=rank,
        total=total,
        quintile=quintile(rank, total) if rank is not None and total else None,
        older_models=slide.status == SlideStatus.DONE and None not in champions and analysed_by != champions,
    )


def champion_ids(session: Session) -> tuple[int | None, int | None]:
    """The current champions' ids (stage 1, stage 2); None for a stage without one."""
    ids = [get_champion(session, stage) for stage in (ModelStage.STAGE1, ModelStage.STAGE2)]
    return (ids[0].id if ids[0] else None, ids[1].id if ids[1] else None)


def worklist(session: Session, filters: WorklistFilter | None = None) -> list[WorklistRow]:
    """Slides to screen, most suspicious first, each with its rank n/N and quintile (see the module docstring).

    Slides of other statuses than ``done`` (when the filter asks for them) come after the ranked ones, newest
    first, without a rank.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     worklist(s, WorklistFilter(name_contains="HSIL"))
        []
    """
    filters = filters or WorklistFilter()
    window = _received_between(filters.received_since, filters.received_until)
    ranked = (
        select(
            Slide.id.label("slide_id"),
            func.row_number().over(order_by=(Slide.abnormal_score.desc(), Slide.received_at, Slide.id)).label("rank"),
            func.count().over().label("total"),
        )
        .where(Slide.status == SlideStatus.DONE, Slide.abnormal_score.is_not(None), *window)
        .subquery("ranked")
    )
    conditions: list[ColumnElement[bool]] = list(window)
    if filters.statuses:
        conditions.append(Slide.status.in_(list(filters.statuses)))
    if filters.categories:
        conditions.append(Slide.category.in_(list(filters.categories)))
    if filters.reviewed is True:
        conditions.append(Slide.reviewed_at.is_not(None))
    elif filters.reviewed is False:
        conditions.append(Slide.reviewed_at.is_(None))
    if filters.name_contains.strip():
        pattern = f"%{_escape_like(filters.name_contains.strip())}%"
        conditions.append(Slide.original_name.ilike(pattern, escape="\\"))
    query = (
        select(Slide, ranked.c.rank, ranked.c.total)
        .outerjoin(ranked, ranked.c.slide_id == Slide.id)
        .where(*conditions)
        .order_by(ranked.c.rank.is_(None), ranked.c.rank, Slide.received_at.desc(), Slide.id.desc())
        .limit(filters.limit)
    )
    champions = champion_ids(session)
    return [_row(slide, rank, total, champions) for slide, rank, total in session.execute(query).all()]


def unanalysed_slides(
    session: Session, statuses: Sequence[SlideStatus] = PENDING_STATUSES, *, limit: int = DEFAULT_LIMIT
) -> list[WorklistRow]:
    """Slides without a current result (queued, processing, failed), oldest first: the queue as it stands.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     unanalysed_slides(s)
        []
    """
    query = select(Slide).where(Slide.status.in_(list(statuses))).order_by(Slide.received_at, Slide.id).limit(limit)
    champions = champion_ids(session)
    return [_row(slide, None, None, champions) for slide in session.scalars(query).all()]
