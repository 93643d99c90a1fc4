"""Classification metrics, temperature scaling and evaluation plots, on small hand-checked examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from papscreen.models.calibration import TEMPERATURE_BOUNDS, apply_temperature, fit_temperature
from papscreen.models.metrics import (
    METRICS_NAME,
    ClassificationMetrics,
    classification_report,
    load_metrics,
    save_metrics,
)
from papscreen.models.plots import (
    CALIBRATION_PNG,
    CONFUSION_PNG,
    ROC_PNG,
    TRAINING_CURVES_PNG,
    plot_training_curves,
    write_evaluation_plots,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
THREE = ("NILM", "LSIL", "HSIL")


def _probs_for(predicted: list[int], k: int, top: float) -> np.ndarray:
    """Rows giving ``top`` to the predicted class and sharing the rest evenly."""
    probs = np.full((len(predicted), k), (1 - top) / (k - 1))
    probs[np.arange(len(predicted)), predicted] = top
    return probs


# Hand-checked 3-class example. Confusion (rows true, columns predicted):
#   NILM [3 1 0]   LSIL [0 2 1]   HSIL [1 0 2]
Y_THREE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
P_THREE = _probs_for([0, 0, 0, 1, 1, 1, 2, 2, 2, 0], 3, top=0.5)


def test_three_class_example_matches_hand_computation() -> None:
    m = classification_report(Y_THREE, P_THREE, THREE)
    assert m.confusion == ((3, 1, 0), (0, 2, 1), (1, 0, 2))
    assert m.n_samples == 10
    assert m.accuracy == pytest.approx(0.7)
    # Each class: recall = precision = F1 (NILM 3/4; LSIL, HSIL 2/3).
    expected = {"NILM": (4, 3 / 4, 5 / 6), "LSIL": (3, 2 / 3, 6 / 7), "HSIL": (3, 2 / 3, 6 / 7)}
    for name, (support, recall, specificity) in expected.items():
        c = m.for_class(name)
        assert c.support == support
        assert c.sensitivity == pytest.approx(recall)
        assert c.precision == pytest.approx(recall)
        assert c.f1 == pytest.approx(recall)
        assert c.specificity == pytest.approx(specificity)
    assert m.macro_f1 == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    assert m.balanced_accuracy == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    # NILM scores: positives 0.5, 0.5, 0.5, 0.25; negatives five 0.25 and one 0.5 -> (15 + 3/2 + 5/2) / 24.
    assert m.for_class("NILM").auc == pytest.approx(19 / 24)
    # Every prediction is made at confidence 0.5 and 70 % are right: ECE = |0.7 - 0.5|.
    assert m.ece == pytest.approx(0.2)


def test_ece_by_hand_across_two_bins() -> None:
    # Confidence 0.9 (bin 13 of 15), right 1 of 2; confidence 0.62 (bin 9), right 2 of 2.
    y = np.array([1, 0, 1, 1])
    p = np.array([[0.1, 0.9], [0.1, 0.9], [0.38, 0.62], [0.38, 0.62]])
    m = classification_report(y, p, ("background", "cell"))
    assert m.ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.38)


def test_missing_class_gives_none_not_a_crash() -> None:
    y = np.array([0, 0, 1, 1])
    p = _probs_for([0, 2, 1, 1], 3, top=0.6)  # HSIL predicted once, never true
    m = classification_report(y, p, THREE)
    hsil = m.for_class("HSIL")
    assert (hsil.support, hsil.sensitivity, hsil.auc) == (0, None, None)
    assert hsil.precision == 0.0
    assert hsil.specificity == pytest.approx(3 / 4)
    assert m.for_class("NILM").auc is not None
    assert m.macro_auc == pytest.approx(np.mean([m.for_class("NILM").auc, m.for_class("LSIL").auc]))
    assert m.balanced_accuracy == pytest.approx((1 / 2 + 1) / 2)  # mean recall of the classes present
    json.dumps(m.to_dict(), allow_nan=False)  # no NaN sneaks into the JSON


@pytest.mark.parametrize("k", [2, 4], ids=["binary", "four-class"])
def test_perfect_classifier(k: int) -> None:
    y = np.arange(3 * k) % k
    m = classification_report(y, _probs_for(list(y), k, top=1.0), [f"c{i}" for i in range(k)])
    assert m.accuracy == m.balanced_accuracy == m.macro_f1 == m.macro_auc == 1.0
    assert all(c.sensitivity == c.specificity == c.auc == 1.0 for c in m.per_class)
    assert m.ece == pytest.approx(0.0)
    assert np.array_equal(np.array(m.confusion), 3 * np.eye(k, dtype=int))


def test_binary_stage1_classes() -> None:
    y = np.array([0, 0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.2, 0.7, 0.4])  # predictions: bg, cell, bg, cell, bg
    m = classification_report(y, np.stack([1 - p1, p1], axis=1), ("background", "cell"))
    assert m.confusion == ((2, 1), (1, 1))
    cell = m.for_class("cell")
    assert (cell.sensitivity, cell.specificity, cell.precision) == pytest.approx((1 / 2, 2 / 3, 1 / 2))
    assert cell.auc == pytest.approx(5 / 6)  # of 6 (cell, background) pairs only 0.4 < 0.6 is misordered
    assert m.for_class("background").auc == pytest.approx(cell.auc)
    assert m.macro_auc == pytest.approx(5 / 6)


@pytest.mark.parametrize(
    ("y", "p", "names", "match"),
    [
        (np.array([0, 1]), np.array([[2.0, -1.0], [0.0, 1.0]]), ("a", "b"), "probabilities"),
        (np.array([0, 1]), np.array([[0.5, 0.4], [0.5, 0.5]]), ("a", "b"), "sum to 1"),
        (np.array([0, 2]), np.array([[0.5, 0.5], [0.5, 0.5]]), ("a", "b"), "class indices"),
        (np.array([0, 1]), np.array([[0.5, 0.5], [0.5, 0.5]]), ("a", "b", "c"), "shape"),
        (np.array([0]), np.array([[0.5, 0.5], [0.5, 0.5]]), ("a", "b"), "y_true"),
    ],
    ids=["logits", "rows-not-summing", "label-out-of-range", "wrong-class-count", "length-mismatch"],
)
def test_bad_inputs_are_refused(y: np.ndarray, p: np.ndarray, names: tuple[str, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classification_report(y, p, names)


def test_json_round_trip(tmp_path: Path) -> None:
    m = classification_report(Y_THREE, P_THREE, THREE)
    path = save_metrics(m, tmp_path / "model")
    assert path == tmp_path / "model" / METRICS_NAME
    data = json.loads(path.read_text())
    assert data["per_class"]["LSIL"]["support"] == 3
    assert data["confusion"][0] == [3, 1, 0]
    assert load_metrics(path) == m == load_metrics(tmp_path / "model")
    assert ClassificationMetrics.from_dict(m.to_dict()) == m


def _overconfident(seed: int, n: int = 3000, k: int = 3, sharpen: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(z), so z is calibrated; return (sharpen * z, labels): over-confident logits."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=generator) * 1.5
    labels = torch.multinomial(torch.softmax(z, dim=1), 1, generator=generator).squeeze(1)
    return z * sharpen, labels


def test_temperature_scaling_fixes_overconfidence_without_changing_decisions() -> None:
    logits, labels = _overconfident(seed=0)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(4.0, rel=0.15)
    names = ("a", "b", "c")
    before = classification_report(labels.numpy(), torch.softmax(logits, 1).numpy(), names)
    after = classification_report(labels.numpy(), apply_temperature(logits, temperature).numpy(), names)
    assert after.ece < before.ece / 3
    assert after.ece < 0.05
    assert after.accuracy == before.accuracy
    assert after.confusion == before.confusion


def test_temperature_fit_is_deterministic_and_accepts_numpy() -> None:
    logits, labels = _overconfident(seed=1, n=500)
    assert fit_temperature(logits, labels) == fit_temperature(logits.numpy(), labels.numpy())


def test_calibrated_logits_keep_temperature_near_one() -> None:
    logits, labels = _overconfident(seed=2, sharpen=1.0)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize(
    ("logits", "labels", "expected"),
    [
        ([[0.01, 0.0], [0.0, 0.01]], [0, 1], TEMPERATURE_BOUNDS[0]),  # separable: the NLL falls as T -> 0
        ([[4.0, 0.0], [0.0, 4.0]], [1, 0], TEMPERATURE_BOUNDS[1]),  # always wrong: the NLL falls as T -> inf
    ],
    ids=["separable", "always-wrong"],
)
def test_degenerate_data_stop_at_the_bounds(logits: list[list[float]], labels: list[int], expected: float) -> None:
    assert fit_temperature(torch.tensor(logits), torch.tensor(labels)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.long), "shape"),
        (torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), "labels"),
        (torch.zeros(2, 2), torch.tensor([0, 2]), "class indices"),
        (torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]), "finite"),
    ],
    ids=["1d-logits", "length-mismatch", "label-out-of-range", "nan"],
)
def test_fit_temperature_refuses_bad_inputs(logits: torch.Tensor, labels: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_temperature(logits, labels)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf")], ids=["zero", "negative", "infinite"])
def test_apply_temperature_refuses_bad_temperature(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(torch.zeros(1, 2), temperature)


@pytest.mark.parametrize(
    ("y", "p", "names"),
    [
        (Y_THREE, P_THREE, THREE),
        (np.array([0, 1, 1, 0]), np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1]]), ("background", "cell")),
        (np.array([0, 0]), np.array([[0.9, 0.1], [0.8, 0.2]]), ("background", "cell")),  # one class, all right
    ],
    ids=["three-class", "binary", "degenerate"],
)
def test_plots_are_written_as_png(tmp_path: Path, y: np.ndarray, p: np.ndarray, names: tuple[str, ...]) -> None:
    m = classification_report(y, p, names)
    history = [
        {"epoch": 1, "train_loss": 0.9, "val_loss": 0.8, "val_accuracy": 0.6, "note": "warm-up"},
        {"epoch": 2, "train_loss": 0.5, "val_loss": 0.6, "val_accuracy": 0.7},
    ]
    written = write_evaluation_plots(tmp_path, y, p, m, history=history)
    assert sorted(written) == sorted([CONFUSION_PNG, ROC_PNG, CALIBRATION_PNG, TRAINING_CURVES_PNG])
    for name, path in written.items():
        assert path == tmp_path / name
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 1000, name


def test_training_curves_without_epoch_key_and_empty_history(tmp_path: Path) -> None:
    path = plot_training_curves([{"loss": 1.0}, {"loss": 0.5}], tmp_path / TRAINING_CURVES_PNG)
    assert path.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="empty"):
        plot_training_curves([], tmp_path / "never.png")
