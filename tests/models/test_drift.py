"""Drift: population stability index of predicted classes and abnormal scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from papscreen.models.drift import DriftReport, check_drift, psi_of_counts, psi_of_samples


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    base = rng.beta(1, 5, 5000)
    small = psi_of_samples(base, rng.beta(1.2, 5, 5000))
    large = psi_of_samples(base, rng.beta(3, 3, 5000))
    assert psi_of_samples(base, base) == pytest.approx(0.0)
    assert 0 < small < 0.1 < large


def test_empty_bins_stay_finite() -> None:
    assert np.isfinite(psi_of_counts({"NILM": 100}, {"SCC": 100}))
    assert np.isfinite(psi_of_samples(np.zeros(100), np.ones(100)))
    assert psi_of_samples(np.zeros(100), np.ones(100)) > 1


def test_psi_of_samples_refuses_empty_samples() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        psi_of_samples([], [0.5])


def _report(recent_classes: dict[str, int], recent: np.ndarray, threshold: float = 0.2) -> DriftReport:
    rng = np.random.default_rng(1)
    return check_drift(
        {"NILM": 800, "LSIL": 100, "HSIL": 70, "SCC": 30}, recent_classes, rng.beta(1, 6, 1000), recent, threshold
    )


def test_stable_recent_slides_are_not_flagged() -> None:
    rng = np.random.default_rng(2)
    report = _report({"NILM": 790, "LSIL": 110, "HSIL": 70, "SCC": 30}, rng.beta(1, 6, 1000))
    assert not report.flagged
    assert [c.flagged for c in report.checks] == [False, False]
    assert report.reason.startswith("no drift: predicted classes PSI ")


def test_a_shift_is_flagged_with_the_check_that_moved() -> None:
    rng = np.random.default_rng(3)
    report = _report({"NILM": 800, "LSIL": 100, "HSIL": 70, "SCC": 30}, rng.beta(4, 2, 1000))
    assert report.flagged
    assert {c.name: c.flagged for c in report.checks} == {"predicted classes": False, "abnormal score": True}
    assert report.reason.startswith("drift in abnormal score: ")
    assert json.loads(json.dumps(report.to_dict()))["checks"][1]["threshold"] == 0.2


def test_too_few_recent_cells_flag_nothing() -> None:
    report = _report({"SCC": 40}, np.full(40, 0.99))
    assert not report.flagged
    assert report.checks == ()
    assert report.reason == "not enough recent data: 40 cells of recent slides, at least 100 needed; nothing flagged"
