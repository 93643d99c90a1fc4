"""The overview's figures and the worklist's ranking, quintiles and filters, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

import pytest

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries.worklist import (
    WorklistFilter,
    key_metrics,
    overview_figures,
    quintile,
    unanalysed_slides,
    worklist,
)
from papscreen.db.schema import Decision, ModelStage, Slide, SlideStatus, TrainingStatus, utcnow
from tests.db.seeding import add_model

STAGE2_METRICS = {
    "macro_f1": 0.81,
    "accuracy": 0.86,
    "per_class": {"HSIL": {"sensitivity": 0.78}, "SCC": {"sensitivity": 0.9}, "NILM": {"sensitivity": 0.95}},
}

# name, abnormal score, category, adequacy, received (days before the reference time; 0 = today)
DONE_SLIDES: tuple[tuple[str, float, str, str, int], ...] = (
    ("alpha.svs", 0.91, "HSIL", "satisfactory", 0),
    ("bravo.svs", 0.12, "NILM", "satisfactory", 0),
    ("charlie.svs", 0.55, "LSIL", "satisfactory", 3),
    ("delta.svs", 0.97, "SCC", "satisfactory", 3),
    ("echo.svs", 0.08, "NILM", "satisfactory", 3),
    ("foxtrot.svs", 0.33, "NILM", "unsatisfactory", 3),
    ("golf.svs", 0.71, "HSIL", "satisfactory", 10),
    ("hotel.svs", 0.21, "NILM", "satisfactory", 10),
    ("india_50%.svs", 0.45, "LSIL", "satisfactory", 10),
    ("juliet.svs", 0.02, "NILM", "satisfactory", 10),
)
BY_SCORE = [name for name, *_ in sorted(DONE_SLIDES, key=lambda s: -s[1])]


@dataclass(frozen=True)
class Seeded:
    """What the seed made: the reference time, slide ids by name, the champions."""

    now: datetime
    ids: dict[str, int]
    stage1_id: int
    stage2_id: int


def received(now: datetime, days_ago: int) -> datetime:
    """A time on the day ``days_ago`` before ``now``: today's slides fall after UTC midnight."""
    midnight = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    return midnight + timedelta(minutes=1) if days_ago == 0 else now - timedelta(days=days_ago)


def seed_worklist(database: Database, now: datetime | None = None) -> Seeded:
    """Ten analysed slides, one each queued/processing/failed/quarantined, a duplicate, two champions, retraining.

    Seeded through the query layer; only ``received_at`` is set directly, to place slides in time.
    """
    now = now or utcnow()
    ids: dict[str, int] = {}
    with database.session() as s:
        stage1_metrics = {"accuracy": 0.93, "f1": 0.88, "recall": 0.9}
        stage1 = add_model(s, ModelStage.STAGE1, "s1-night-3", "cnn20", "/m/s1", "1", stage1_metrics)
        stage2 = add_model(s, ModelStage.STAGE2, "s2-night-3", "resnet18", "/m/s2", "2", STAGE2_METRICS)
        for i, (name, score, category, adequacy, days) in enumerate(DONE_SLIDES):
            slide = queries.claim_scan(s, sha256=f"{i + 1:064x}", original_name=name, size_bytes=1000 + i).slide
            queries.mark_stored(s, slide.id, stored_path=f"/store/{name}", format="svs")
            queries.store_analysis(
                s,
                slide_id=slide.id,
                stage1_model_id=stage1.id,
                stage2_model_id=stage2.id,
                cells=[],
                summary=queries.SummaryRecord(
                    category=category,
                    adequacy=adequacy,
                    abnormal_score=score,
                    cell_count=100 + i,
                    class_counts={category: 1},
                ),
            )
            slide.received_at = received(now, days)
            ids[name] = slide.id
        for i, name in enumerate(["queued.svs", "processing.svs", "failed.svs", "quarantined.jpg"], start=100):
            slide = queries.claim_scan(s, sha256=f"{i:064x}", original_name=name, size_bytes=10).slide
            slide.received_at = received(now, 3)
            ids[name] = slide.id
        queries.start_processing(s, ids["processing.svs"], flow_run_id="run-p")
        s.get(Slide, ids["processing.svs"]).lease_owner = "host:1"  # type: ignore[union-attr]  # seeded just above
        queries.record_progress(
            s, ids["processing.svs"], owner="host:1", fraction=0.25, note="stage 1: 120 of 480 tiles (25%)"
        )
        queries.start_processing(s, ids["failed.svs"])
        queries.fail_slide(s, ids["failed.svs"], "unreadable tile at level 0")
        queries.quarantine_slide(s, ids["quarantined.jpg"], reason="not an image", quarantined_path="/q/x.jpg")
        duplicate = queries.claim_scan(s, sha256=f"{1:064x}", original_name="alpha copy.svs", size_bytes=1000)
        ids["alpha copy.svs"] = duplicate.slide.id
        queries.mark_slide_reviewed(s, ids["delta.svs"], reviewer="ann")

        promoted = queries.start_training_run(s, stage=ModelStage.STAGE2, parameters={})
        queries.finish_training_run(
            s,
            promoted.id,
            status=TrainingStatus.SUCCEEDED,
            decision=Decision.PROMOTED,
            reason="first model of its stage",
            model_version_id=stage2.id,
        )
        rejected = queries.start_training_run(s, stage=ModelStage.STAGE2, parameters={})
        queries.finish_training_run(
            s,
            rejected.id,
            status=TrainingStatus.SUCCEEDED,
            decision=Decision.REJECTED,
            reason="HSIL sensitivity fell by 0.08 (more than 0.05)",
        )
        queries.start_training_run(s, stage=ModelStage.STAGE2, parameters={})  # still running: not a decision
    return Seeded(now, ids, stage1.id, stage2.id)


@pytest.mark.parametrize(
    ("total", "expected"),
    [(1, [1]), (5, [1, 2, 3, 4, 5]), (10, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]), (40, [1] * 8 + [2] * 8 + [3] * 8)],
    ids=["one", "five", "ten", "forty"],
)
def test_quintiles(total: int, expected: list[int]) -> None:
    assert [quintile(rank, total) for rank in range(1, len(expected) + 1)] == expected


def test_quintile_refuses_a_rank_outside_the_ranking() -> None:
    with pytest.raises(ValueError, match=r"rank 0 is not within 1\.\.3"):
        quintile(0, 3)


def test_key_metrics_keep_what_is_there() -> None:
    assert key_metrics(STAGE2_METRICS) == {
        "macro_f1": 0.81,
        "accuracy": 0.86,
        "HSIL_sensitivity": 0.78,
        "SCC_sensitivity": 0.9,
    }
    assert key_metrics({"accuracy": 0.9, "f1": 0.8, "recall": True, "per_class": []}) == {"accuracy": 0.9, "f1": 0.8}
    assert key_metrics({}) == {}


def test_worklist_ranks_done_slides_by_abnormal_score(database: Database) -> None:
    seeded = seed_worklist(database)
    with database.session() as s:
        rows = worklist(s)

    assert [r.name for r in rows] == BY_SCORE
    assert [r.rank_text for r in rows] == [f"{n}/10" for n in range(1, 11)]
    assert [r.quintile for r in rows] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert all(r.status == "done" for r in rows)
    top = rows[0]
    assert (top.slide_id, top.category, top.adequacy, top.abnormal_score) == (
        seeded.ids["delta.svs"],
        "SCC",
        "satisfactory",
        0.97,
    )
    assert (top.reviewed_by, top.reviewed_at is not None) == ("ann", True)
    assert rows[1].reviewed_by is None
    assert rows[0].cell_count == 103


def test_filters_narrow_the_list_but_keep_each_rank(database: Database) -> None:
    seed_worklist(database)
    with database.session() as s:
        hsil = worklist(s, WorklistFilter(categories=("HSIL", "SCC")))
        unreviewed = worklist(s, WorklistFilter(reviewed=False))
        reviewed = worklist(s, WorklistFilter(reviewed=True))
        named = worklist(s, WorklistFilter(name_contains="ALPHA"))
        literal_percent = worklist(s, WorklistFilter(name_contains="50%"))
        underscore = worklist(s, WorklistFilter(name_contains="a_"))
        limited = worklist(s, WorklistFilter(limit=3))

    assert [(r.name, r.rank_text, r.quintile) for r in hsil] == [
        ("delta.svs", "1/10", 1),
        ("alpha.svs", "2/10", 1),
        ("golf.svs", "3/10", 2),
    ]
    assert len(unreviewed) == 9
    assert "delta.svs" not in {r.name for r in unreviewed}
    assert [r.name for r in reviewed] == ["delta.svs"]
    assert [r.name for r in named] == ["alpha.svs"]  # the duplicate copy is not a done slide
    assert [r.name for r in literal_percent] == ["india_50%.svs"]
    assert [r.name for r in underscore] == ["india_50%.svs"]  # "_" is literal, not any character
    assert [r.rank for r in limited] == [1, 2, 3]
    assert limited[0].total == 10


def test_date_window_bounds_the_ranking(database: Database) -> None:
    seeded = seed_worklist(database)
    since = seeded.now - timedelta(days=5)
    with database.session() as s:
        recent = worklist(s, WorklistFilter(received_since=since))
        older = worklist(s, WorklistFilter(received_until=since))

    assert [r.name for r in recent] == ["delta.svs", "alpha.svs", "charlie.svs", "foxtrot.svs", "bravo.svs", "echo.svs"]
    assert [r.rank_text for r in recent] == [f"{n}/6" for n in range(1, 7)]
    assert [r.quintile for r in recent] == [1, 1, 2, 3, 4, 5]
    assert [r.name for r in older] == ["golf.svs", "india_50%.svs", "hotel.svs", "juliet.svs"]
    assert older[0].rank_text == "1/4"


def test_other_statuses_come_after_the_ranked_slides_without_a_rank(database: Database) -> None:
    seeded = seed_worklist(database)
    with database.session() as s:
        rows = worklist(s, WorklistFilter(statuses=(SlideStatus.DONE, SlideStatus.FAILED, SlideStatus.QUEUED)))
        failed = worklist(s, WorklistFilter(statuses=(SlideStatus.FAILED,)))

    assert [r.name for r in rows[:10]] == BY_SCORE
    assert {r.name for r in rows[10:]} == {"failed.svs", "queued.svs"}
    assert all(r.rank is None and r.quintile is None and r.rank_text == "" for r in rows[10:])
    assert [(r.slide_id, r.error) for r in failed] == [(seeded.ids["failed.svs"], "unreadable tile at level 0")]


def test_unanalysed_slides_are_the_queue_and_the_failures(database: Database) -> None:
    seeded = seed_worklist(database)
    with database.session() as s:
        rows = unanalysed_slides(s)

    assert [r.name for r in rows] == ["queued.svs", "processing.svs", "failed.svs"]
    assert [r.status for r in rows] == ["queued", "processing", "failed"]
    assert rows[1].flow_run_id == "run-p"
    assert all(r.rank is None for r in rows)
    assert rows[0].slide_id == seeded.ids["queued.svs"]


def test_overview_figures(database: Database) -> None:
    seeded = seed_worklist(database)
    with database.session() as s:
        figures = overview_figures(s, now=seeded.now)

    assert (figures.today.received, figures.today.done, figures.today.abnormal) == (2, 2, 1)
    assert figures.today.abnormal_rate == pytest.approx(0.5)
    week = figures.week
    # 6 analysed + queued, processing, failed, quarantined; the duplicate is no new specimen
    assert (week.received, week.done, week.abnormal, week.unsatisfactory, week.quarantined) == (10, 6, 3, 1, 1)
    assert week.abnormal_rate == pytest.approx(3 / 6)  # foxtrot is unsatisfactory, not abnormal
    assert (figures.queued, figures.processing, figures.failed, figures.queue_length) == (1, 1, 1, 2)

    stage1, stage2 = figures.champions["stage1"], figures.champions["stage2"]
    assert stage1 is not None
    assert stage2 is not None
    assert (stage1.model_id, stage1.name, stage1.metrics) == (
        seeded.stage1_id,
        "s1-night-3",
        {"accuracy": 0.93, "f1": 0.88, "recall": 0.9},
    )
    assert stage2.metrics["HSIL_sensitivity"] == pytest.approx(0.78)
    assert stage2.since is not None

    assert figures.retraining["stage1"] is None
    last = figures.retraining["stage2"]
    assert last is not None
    assert (last.decision, last.status) == ("rejected", "succeeded")
    assert last.reason == "HSIL sensitivity fell by 0.08 (more than 0.05)"
    assert last.finished_at is not None


def test_overview_of_an_empty_database(database: Database) -> None:
    with database.session() as s:
        figures = overview_figures(s)

    assert figures.today.received == 0
    assert figures.week.abnormal_rate is None
    assert figures.queue_length == 0
    assert figures.champions == {"stage1": None, "stage2": None}
    assert figures.retraining == {"stage1": None, "stage2": None}


def test_a_failed_retraining_shows_its_error(database: Database) -> None:
    with database.session() as s:
        run = queries.start_training_run(s, stage=ModelStage.STAGE1, parameters={})
        queries.finish_training_run(s, run.id, status=TrainingStatus.FAILED, error="no reviewed cells yet")
        figures = overview_figures(s)

    last = figures.retraining["stage1"]
    assert last is not None
    assert (last.status, last.decision, last.reason) == ("failed", None, "no reviewed cells yet")
