"""From graded cells to a slide's verdict: category, abnormal score and adequacy.

The category is the highest grade with *confident support*: enough cells whose probability of that grade or a
worse one reaches ``min_probability``. Summing "this grade or worse" makes support monotone (a confident SCC cell
also supports HSIL and LSIL), so a slide whose worst cells are split between HSIL and SCC is still at least HSIL.
The defaults (10 cells at 0.9 for LSIL and HSIL, 8 for SCC) suit a whole slide and a classifier that mistakes a
few percent of normal cells; a lab sets them from its own validation slides (see the README). The abnormal score
ranks the worklist: the mean suspicion (1 - p(NILM)) of the few most suspicious cells, so one
confident abnormal cell raises a slide above many doubtful ones, as a screener's eye would.

When the stage-2 model carries a field scorer (:class:`~papscreen.models.field_score.FieldScorer`, chosen on
validation fields and stored on its card), the scorer decides instead: the abnormal score is its score of "LSIL
or worse", and the category is the most severe grade whose top-k mean probability of "that grade or worse"
reaches the scorer's threshold (NILM when none does). The cell counts are still reported as support.

Either way :attr:`SlideGrade.category_reason` says in one sentence which rule decided and the figures it saw
("HSIL: 12 cells graded HSIL or worse with probability >= 0.9 (rule: >= 10); 3 SCC or worse (SCC needs >= 8)"),
so the slide page can show why, and a test can check that no category contradicts its own evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.config import GradingSettings
from papscreen.models.field_score import FieldScorer
from papscreen.pipeline.result import Adequacy, ScanKind

__all__ = ["SlideGrade", "grade_slide"]


@dataclass(frozen=True)
class SlideGrade:
    """The slide-level verdict computed from its cells (see :class:`~papscreen.pipeline.result.SlideSummary`)."""

    category: str
    grade_support: dict[str, int]
    abnormal_score: float
    adequacy: Adequacy
    adequacy_reason: str
    category_reason: str = ""


_GRADES = ("LSIL", "HSIL", "SCC")


def _worse_than(category: str) -> str | None:
    """The next grade above an abnormal ``category``; ``None`` for SCC, and for NILM (its reason names LSIL)."""
    index = _GRADES.index(category) + 1 if category in _GRADES else len(_GRADES)
    return _GRADES[index] if index < len(_GRADES) else None


def _count_reason(category: str, support: dict[str, int], grading: GradingSettings) -> str:
    """Why the cell-count rule gave ``category``: the cells it counted against the cells it needed."""
    p = f"{grading.min_probability:g}"
    shown = category if category != "NILM" else "LSIL"
    needed = grading.min_cells.get(shown)
    rule = f"rule: >= {needed}" if category != "NILM" else f"LSIL needs >= {needed}"
    reason = f"{category}: {support.get(shown, 0)} cells graded {shown} or worse with probability >= {p} ({rule})"
    nxt = _worse_than(category)
    if nxt is not None and grading.min_cells.get(nxt) is not None:
        reason += f"; {support.get(nxt, 0)} {nxt} or worse ({nxt} needs >= {grading.min_cells[nxt]})"
    return reason


def _scorer_reason(category: str, scores: dict[str, float], scorer: FieldScorer) -> str:
    """Why the field scorer gave ``category``: the top-k mean it computed against its threshold."""
    shown = category if category != "NILM" else "LSIL"
    rule = f"rule: >= {scorer.threshold:.3f}" if category != "NILM" else f"LSIL needs >= {scorer.threshold:.3f}"
    reason = (
        f"{category}: the {scorer.top_k} most suspicious cells have a mean probability of {shown} or worse of "
        f"{scores[shown]:.3f} ({rule}, the operating point chosen on validation fields)"
    )
    nxt = _worse_than(category)
    if nxt is not None:
        reason += f"; of {nxt} or worse {scores[nxt]:.3f}"
    return reason


def _at_least(probabilities: np.ndarray, classes: tuple[str, ...], grade: str) -> np.ndarray:
    """Per cell, the probability of ``grade`` or a more severe class."""
    severity = BETHESDA_CLASSES.index(grade)
    worse = [
        i for i, name in enumerate(classes) if name in BETHESDA_CLASSES and BETHESDA_CLASSES.index(name) >= severity
    ]
    return probabilities[:, worse].sum(axis=1) if worse else np.zeros(len(probabilities), np.float32)


def grade_slide(
    probabilities: np.ndarray,
    classes: tuple[str, ...],
    grading: GradingSettings,
    scan_kind: ScanKind,
    scorer: FieldScorer | None = None,
) -> SlideGrade:
    """The category, support per grade, abnormal score and adequacy of a scan from its cells' probabilities.

    Args:
        probabilities: (N, C) calibrated probabilities of every cell, columns in ``classes`` order.
        classes: class names of the columns (Bethesda names; others are ignored for grading).
        grading: thresholds.
        scan_kind: ``field`` or ``slide``; each has its own adequacy threshold.
        scorer: the stage-2 model's field scorer; when given, it decides the category and the abnormal score.

    Examples:
        >>> p = np.array([[0.02, 0.02, 0.92, 0.04]] * 12 + [[0.97, 0.01, 0.01, 0.01]] * 50, np.float32)
        >>> g = grade_slide(p, ("NILM", "LSIL", "HSIL", "SCC"), GradingSettings(), "field")
        >>> g.category, g.grade_support, g.adequacy
        ('HSIL', {'LSIL': 12, 'HSIL': 12, 'SCC': 0}, 'satisfactory')
        >>> grade_slide(p[:0], ("NILM", "LSIL", "HSIL", "SCC"), GradingSettings(), "field").adequacy
        'unsatisfactory'
        >>> few = np.array([[0.3, 0.6, 0.05, 0.05]] * 3 + [[0.97, 0.01, 0.01, 0.01]] * 50, np.float32)
        >>> grade_slide(few, ("NILM", "LSIL", "HSIL", "SCC"), GradingSettings(), "field").category
        'NILM'
        >>> scored = grade_slide(few, ("NILM", "LSIL", "HSIL", "SCC"), GradingSettings(), "field", FieldScorer(5, 0.4))
        >>> scored.category, round(scored.abnormal_score, 3)
        ('LSIL', 0.432)
        >>> grade_slide(p, ("NILM", "LSIL", "HSIL", "SCC"), GradingSettings(), "field").category_reason
        'HSIL: 12 cells graded HSIL or worse with probability >= 0.9 (rule: >= 10); 0 SCC or worse (SCC needs >= 8)'
    """
    probabilities = np.asarray(probabilities, np.float32).reshape(-1, len(classes))
    count = len(probabilities)
    support: dict[str, int] = {}
    category = "NILM"
    for grade in ("LSIL", "HSIL", "SCC"):
        support[grade] = int(np.sum(_at_least(probabilities, classes, grade) >= grading.min_probability))
        needed = grading.min_cells.get(grade)
        if needed is not None and support[grade] >= needed:
            category = grade
    if scorer is not None:
        scores = {grade: scorer.score(_at_least(probabilities, classes, grade)) for grade in _GRADES}
        abnormal_score = scores["LSIL"]
        category = "NILM"
        for grade in _GRADES:
            if scores[grade] >= scorer.threshold:
                category = grade
        reason = _scorer_reason(category, scores, scorer)
    else:
        reason = _count_reason(category, support, grading)
        suspicion = _at_least(probabilities, classes, "LSIL")
        abnormal_score = float(np.sort(suspicion)[::-1][: grading.abnormal_top_k].mean()) if count else 0.0
    needed_cells = grading.min_cells_field if scan_kind == "field" else grading.min_cells_slide
    adequacy: Adequacy = "satisfactory" if count >= needed_cells else "unsatisfactory"
    relation = "at least" if adequacy == "satisfactory" else "fewer than"
    adequacy_reason = f"{count} squamous cells found, {relation} the {needed_cells} a {scan_kind} needs"
    return SlideGrade(category, support, abnormal_score, adequacy, adequacy_reason, reason)
