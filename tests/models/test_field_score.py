"""The field verdict: top-k mean of abnormal probabilities, and an operating point that is honoured."""

from __future__ import annotations

import numpy as np
import pytest

from papscreen.models.field_score import FieldScorer, choose_threshold, field_scores


def test_score_is_the_mean_of_the_top_k_with_missing_cells_as_zero() -> None:
    assert field_scores([np.array([0.1, 0.9, 0.5, 0.7])], top_k=2).tolist() == [pytest.approx(0.8)]
    assert field_scores([np.array([0.9])], top_k=3).tolist() == [pytest.approx(0.3)]
    assert field_scores([np.array([])], top_k=3).tolist() == [0.0]


def test_one_suspicious_cell_weighs_less_than_several() -> None:
    scorer = FieldScorer(top_k=5)
    one = [0.95] + [0.02] * 200
    several = [0.7] * 5 + [0.02] * 200
    assert scorer.score(several) > scorer.score(one)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0], ids=lambda t: f"sens{t}")
def test_chosen_threshold_reaches_the_sensitivity_and_is_the_highest_that_does(target: float) -> None:
    rng = np.random.default_rng(0)
    positive = rng.random(300) < 0.3
    scores = np.clip(rng.normal(np.where(positive, 0.6, 0.3), 0.15), 0, 1)
    point = choose_threshold(scores, positive, target)
    flagged = scores >= point.threshold
    assert flagged[positive].mean() >= target
    assert point.sensitivity == flagged[positive].mean()
    assert point.specificity == (~flagged[~positive]).mean()
    higher = scores[scores > point.threshold].min()
    assert (scores[positive] >= higher).mean() < target  # any higher cut misses the target


def test_scorer_honours_its_operating_point() -> None:
    scorer = FieldScorer(top_k=2, threshold=0.6)
    assert scorer.is_positive([0.6, 0.6, 0.1])
    assert not scorer.is_positive([0.6, 0.59, 0.1])
    assert FieldScorer.from_dict({**scorer.to_dict(), "sensitivity": 0.97}) == scorer


def test_bad_scorers_and_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="top_k"):
        FieldScorer(top_k=0)
    with pytest.raises(ValueError, match="threshold"):
        FieldScorer(threshold=1.5)
    with pytest.raises(ValueError, match="no positive"):
        choose_threshold(np.array([0.1, 0.2]), np.array([False, False]))
