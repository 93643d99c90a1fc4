"""Slide grading: the highest grade with confident support, monotone support, abnormal score, adequacy."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from papscreen.config import GradingSettings
from papscreen.models.field_score import FieldScorer
from papscreen.pipeline.grading import grade_slide

CLASSES = ("NILM", "LSIL", "HSIL", "SCC")
NILM = [0.96, 0.02, 0.01, 0.01]
LSIL = [0.05, 0.9, 0.03, 0.02]
HSIL = [0.02, 0.04, 0.9, 0.04]
SCC = [0.01, 0.01, 0.08, 0.9]
DOUBTFUL_HSIL = [0.4, 0.1, 0.45, 0.05]


RULES = GradingSettings(min_probability=0.8, min_cells={"LSIL": 3, "HSIL": 2, "SCC": 2})
"""Small counts, so each case below needs only a few cells."""


def _cells(**counts: int) -> np.ndarray:
    rows = {"NILM": NILM, "LSIL": LSIL, "HSIL": HSIL, "SCC": SCC, "DOUBTFUL": DOUBTFUL_HSIL}
    return np.array([rows[name] for name, n in counts.items() for _ in range(n)], np.float32).reshape(-1, 4)


@pytest.mark.parametrize(
    ("counts", "category"),
    [
        ({"NILM": 50}, "NILM"),
        ({"NILM": 50, "LSIL": 3}, "LSIL"),
        ({"NILM": 50, "LSIL": 2}, "NILM"),
        ({"NILM": 50, "LSIL": 5, "HSIL": 2}, "HSIL"),
        ({"NILM": 50, "HSIL": 1, "SCC": 1}, "HSIL"),
        ({"NILM": 50, "SCC": 2}, "SCC"),
        ({"NILM": 50, "DOUBTFUL": 30}, "NILM"),
    ],
    ids=["negative", "lsil", "lsil-too-few", "hsil", "hsil-and-scc-support-hsil", "scc", "doubtful-cells"],
)
def test_category_is_the_highest_grade_with_confident_support(counts: dict[str, int], category: str) -> None:
    assert grade_slide(_cells(**counts), CLASSES, RULES, "field").category == category


def test_thresholds_are_settings() -> None:
    cells = _cells(NILM=50, HSIL=1)
    assert grade_slide(cells, CLASSES, RULES, "field").category == "NILM"
    lenient = GradingSettings(min_probability=0.8, min_cells={"LSIL": 3, "HSIL": 1, "SCC": 2})
    assert grade_slide(cells, CLASSES, lenient, "field").category == "HSIL"
    # At 0.95 these SCC cells (p(SCC) 0.9) no longer support SCC, but still support "HSIL or worse" (0.98).
    strict = RULES.model_copy(update={"min_probability": 0.95})
    assert grade_slide(_cells(NILM=5, SCC=5), CLASSES, strict, "field").category == "HSIL"


def test_support_counts_this_grade_or_worse() -> None:
    grade = grade_slide(_cells(NILM=10, LSIL=1, HSIL=2, SCC=3), CLASSES, RULES, "field")
    assert grade.grade_support == {"LSIL": 6, "HSIL": 5, "SCC": 3}


def test_abnormal_score_ranks_confident_abnormal_cells_first() -> None:
    settings = GradingSettings(abnormal_top_k=5)
    negative = grade_slide(_cells(NILM=100), CLASSES, settings, "field").abnormal_score
    doubtful = grade_slide(_cells(NILM=100, DOUBTFUL=2), CLASSES, settings, "field").abnormal_score
    scc = grade_slide(_cells(NILM=100, SCC=5), CLASSES, settings, "field").abnormal_score
    assert 0 <= negative < doubtful < scc <= 1
    assert scc == pytest.approx(0.99, abs=1e-5)


@pytest.mark.parametrize(
    ("n", "kind", "adequacy"),
    [
        (9, "field", "unsatisfactory"),
        (10, "field", "satisfactory"),
        (4999, "slide", "unsatisfactory"),
        (0, "slide", "unsatisfactory"),
    ],
)
def test_adequacy_needs_enough_squamous_cells_for_the_scan_kind(n: int, kind: str, adequacy: str) -> None:
    grade = grade_slide(_cells(NILM=n), CLASSES, GradingSettings(), kind)  # type: ignore[arg-type]
    assert grade.adequacy == adequacy
    assert str(n) in grade.adequacy_reason


def test_defaults_need_many_confident_cells_as_a_whole_slide_would() -> None:
    assert grade_slide(_cells(NILM=500, HSIL=9), CLASSES, GradingSettings(), "slide").category == "NILM"
    assert grade_slide(_cells(NILM=500, HSIL=10), CLASSES, GradingSettings(), "slide").category == "HSIL"
    assert grade_slide(_cells(NILM=500, HSIL=3, SCC=8), CLASSES, GradingSettings(), "slide").category == "SCC"


def test_grades_other_than_abnormal_classes_are_refused() -> None:
    with pytest.raises(ValueError, match="LSIL, HSIL or SCC"):
        GradingSettings(min_cells={"NILM": 3})


COUNT_REASON = re.compile(
    r"^(?P<category>\w+): (?P<count>\d+) cells graded (?P<grade>\w+) or worse with probability >= (?P<p>[\d.]+) "
    r"\((?:rule: |LSIL needs )>= (?P<needed>\d+)\)(?:; (?P<next_count>\d+) (?P<next>\w+) or worse "
    r"\((?P=next) needs >= (?P<next_needed>\d+)\))?$"
)
SCORER_REASON = re.compile(
    r"^(?P<category>\w+): the (?P<k>\d+) most suspicious cells have a mean probability of (?P<grade>\w+) or worse "
    r"of (?P<score>[\d.]+) \((?:rule: |LSIL needs )>= (?P<threshold>[\d.]+), the operating point chosen on "
    r"validation fields\)(?:; of (?P<next>\w+) or worse (?P<next_score>[\d.]+))?$"
)


def test_the_reason_names_the_rule_and_its_figures() -> None:
    hsil = grade_slide(_cells(NILM=50, LSIL=1, HSIL=2, SCC=1), CLASSES, RULES, "field")
    assert hsil.category_reason == (
        "HSIL: 3 cells graded HSIL or worse with probability >= 0.8 (rule: >= 2); 1 SCC or worse (SCC needs >= 2)"
    )
    negative = grade_slide(_cells(NILM=50, LSIL=2), CLASSES, RULES, "field")
    assert negative.category_reason == "NILM: 2 cells graded LSIL or worse with probability >= 0.8 (LSIL needs >= 3)"
    scored = grade_slide(_cells(NILM=50, LSIL=5), CLASSES, RULES, "field", FieldScorer(top_k=5, threshold=0.5))
    assert scored.category == "LSIL"
    assert scored.category_reason.startswith("LSIL: the 5 most suspicious cells have a mean probability of LSIL or")


probability_tables = st.integers(0, 60).flatmap(
    lambda n: st.lists(st.lists(st.floats(0.001, 1.0), min_size=4, max_size=4), min_size=n, max_size=n).map(
        lambda rows: np.array(rows, np.float64).reshape(-1, 4)
    )
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    table=probability_tables,
    min_probability=st.sampled_from([0.5, 0.8, 0.9]),
    needed=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    scorer=st.one_of(st.none(), st.builds(FieldScorer, st.integers(1, 8), st.floats(0.05, 0.95))),
)
def test_no_category_contradicts_the_evidence_it_shows(
    table: np.ndarray, min_probability: float, needed: tuple[int, int, int], scorer: FieldScorer | None
) -> None:
    """Whatever the cells and the rule, the reason's own figures give the category it names, and no worse one."""
    probs = (table / table.sum(axis=1, keepdims=True)).astype(np.float32) if len(table) else table
    rules = GradingSettings(
        min_probability=min_probability, min_cells=dict(zip(("LSIL", "HSIL", "SCC"), needed, strict=True))
    )
    grade = grade_slide(probs, CLASSES, rules, "field", scorer)

    grades = ("LSIL", "HSIL", "SCC")
    if scorer is None:
        match = COUNT_REASON.match(grade.category_reason)
        assert match, grade.category_reason
        assert match["category"] == grade.category
        assert int(match["count"]) == grade.grade_support[match["grade"]]
        if grade.category == "NILM":
            assert int(match["count"]) < int(match["needed"])
        else:
            assert int(match["count"]) >= int(match["needed"]) == rules.min_cells[grade.category]
        worse = grades[grades.index(grade.category) + 1 :] if grade.category != "NILM" else grades
        assert all(grade.grade_support[g] < rules.min_cells[g] for g in worse)
        if match["next"]:
            assert int(match["next_count"]) < int(match["next_needed"])
    else:
        match = SCORER_REASON.match(grade.category_reason)
        assert match, grade.category_reason
        assert match["category"] == grade.category
        shown, threshold = float(match["score"]), scorer.threshold
        assert (shown >= round(threshold, 3) - 1e-3) == (grade.category != "NILM")
        if match["next"]:
            assert float(match["next_score"]) < threshold + 1e-3
        assert grade.abnormal_score == pytest.approx(scorer.score(1 - probs[:, 0]) if len(probs) else 0.0, abs=1e-5)
