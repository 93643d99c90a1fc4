"""The validation gate: whether a freshly trained challenger may replace its stage's champion.

Both models are scored on the same validation split (``ClassificationMetrics.to_dict()`` of each), so the
numbers are comparable. A challenger is promoted only when its macro-F1 is not lower than the champion's and the
sensitivity of the classes a missed cell costs most for (stage 2: HSIL and SCC; stage 1: *cell*, a nucleus not
found is never graded) has not dropped by more than ``max_sensitivity_drop``. A small loss there is tolerated
because a few hundred validation crops make sensitivities move in steps of a few percent; a larger one is not,
whatever the gain in macro-F1: a model that trades missed cancers for fewer false alarms must not ship at night
with nobody watching.

A challenger validated only on synthetic cells never replaces a champion trained on real ones, whatever its
figures: synthetic validation says nothing about real slides, and the champion's figures on synthetic crops
say nothing about it either (a model trained on real cells may grade synthetic ones badly and still be the
better screening model). Where the data came from is :func:`papscreen.datasets.provenance.dataset_provenance`.

The reason is a sentence for the people who read the training history, with the numbers in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GUARDED_CLASSES", "GateDecision", "decide_promotion"]

GUARDED_CLASSES: Mapping[str, tuple[str, ...]] = {"stage1": ("cell",), "stage2": ("HSIL", "SCC")}
"""Per stage, the classes whose sensitivity a challenger may lose at most ``max_sensitivity_drop`` of."""

_TOLERANCE = 1e-9
"""Float noise allowed in "not lower" (the same crops scored twice can differ in the last bits)."""


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, why (a sentence with the numbers), and the numbers themselves.

    Attributes:
        promote: the challenger becomes champion.
        reason: for a person: what was compared and which check failed or passed.
        comparison: ``macro_f1`` and each guarded class' ``sensitivity`` of both models, the margin, and
            ``failed`` (the names of the checks that failed); JSON-ready.
    """

    promote: bool
    reason: str
    comparison: dict[str, Any] = field(default_factory=dict)


def _macro_f1(metrics: Mapping[str, Any]) -> float | None:
    value = metrics.get("macro_f1")
    return float(value) if isinstance(value, int | float) else None


def _sensitivity(metrics: Mapping[str, Any], name: str) -> float | None:
    per_class = metrics.get("per_class") or {}
    value = (per_class.get(name) or {}).get("sensitivity") if isinstance(per_class, Mapping) else None
    return float(value) if isinstance(value, int | float) else None


def decide_promotion(
    stage: str,
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    *,
    max_sensitivity_drop: float,
    challenger_data: str | None = None,
    champion_data: str | None = None,
) -> GateDecision:
    """Decide whether ``challenger`` replaces ``champion`` (metrics dicts of the same validation split).

    Args:
        stage: ``stage1`` or ``stage2`` (which classes' sensitivity is guarded).
        challenger: the new model's metrics (``macro_f1``, ``per_class.<name>.sensitivity``).
        champion: the champion's metrics on the same split, or ``None`` when the stage has no champion.
        max_sensitivity_drop: most sensitivity a guarded class may lose (e.g. 0.02 = two points).
        challenger_data: ``real`` or ``synthetic``: the data the challenger was trained and validated on.
        champion_data: the same for the champion (``None``: not recorded, e.g. an imported model).

    Raises:
        ValueError: an unknown stage, or a challenger without a macro-F1 (nothing to judge it by).

    Examples:
        >>> def m(f1, hsil, scc):
        ...     return {"macro_f1": f1, "per_class": {"HSIL": {"sensitivity": hsil}, "SCC": {"sensitivity": scc}}}
        >>> decide_promotion("stage2", m(0.8, 0.9, 0.9), None, max_sensitivity_drop=0.02).reason
        'first model of its stage (macro-F1 0.800); nothing to compare with'
        >>> d = decide_promotion("stage2", m(0.91, 0.89, 0.95), m(0.90, 0.90, 0.95), max_sensitivity_drop=0.02)
        >>> d.promote
        True
        >>> d = decide_promotion("stage2", m(0.95, 0.80, 0.95), m(0.90, 0.90, 0.95), max_sensitivity_drop=0.02)
        >>> d.promote, d.comparison["failed"]
        (False, ['HSIL sensitivity'])
        >>> print(d.reason.split("; ")[0])
        rejected: HSIL sensitivity fell from 0.900 to 0.800 (-0.100, more than the 0.020 allowed)
        >>> d = decide_promotion("stage2", m(0.99, 0.99, 0.99), m(0.20, 0.10, 0.00), max_sensitivity_drop=0.02,
        ...                      challenger_data="synthetic", champion_data="real")
        >>> d.promote, d.comparison["failed"]
        (False, ['validation data'])
    """
    if stage not in GUARDED_CLASSES:
        raise ValueError(f"stage must be one of {', '.join(GUARDED_CLASSES)}, not {stage!r}")
    new_f1 = _macro_f1(challenger)
    if new_f1 is None:
        raise ValueError("the challenger's metrics have no macro_f1; evaluate it on the validation split first")
    guarded = GUARDED_CLASSES[stage]
    comparison: dict[str, Any] = {
        "stage": stage,
        "max_sensitivity_drop": max_sensitivity_drop,
        "challenger": {"macro_f1": new_f1} | {f"{c}_sensitivity": _sensitivity(challenger, c) for c in guarded},
        "champion": None,
        "failed": [],
    }
    if champion is None:
        return GateDecision(
            True, f"first model of its stage (macro-F1 {new_f1:.3f}); nothing to compare with", comparison
        )
    comparison["challenger_data"], comparison["champion_data"] = challenger_data, champion_data
    if champion_data == "real" and challenger_data == "synthetic":
        comparison["champion"] = {"macro_f1": _macro_f1(champion)}
        comparison["failed"] = ["validation data"]
        return GateDecision(
            False,
            "rejected: the challenger was trained and validated on synthetic data only and the champion on real "
            "cells; synthetic figures cannot show it grades real slides better (macro-F1 "
            f"{new_f1:.3f} on synthetic crops). Train it on real data (papscreen train real) to compete",
            comparison,
        )
    old_f1 = _macro_f1(champion)
    comparison["champion"] = {"macro_f1": old_f1} | {f"{c}_sensitivity": _sensitivity(champion, c) for c in guarded}
    failures: list[str] = []
    passes: list[str] = []
    failed: list[str] = []
    if old_f1 is not None and new_f1 < old_f1 - _TOLERANCE:
        failed.append("macro-F1")
        failures.append(f"macro-F1 {new_f1:.3f} is lower than the champion's {old_f1:.3f}")
    else:
        champion_f1 = "unknown" if old_f1 is None else f"{old_f1:.3f}"
        passes.append(f"macro-F1 {new_f1:.3f} against the champion's {champion_f1}")
    for name in guarded:
        new, old = _sensitivity(challenger, name), _sensitivity(champion, name)
        if new is None or old is None:
            passes.append(f"{name} sensitivity not comparable (no {name} cases in the validation split)")
            continue
        drop = old - new
        if drop > max_sensitivity_drop + _TOLERANCE:
            failed.append(f"{name} sensitivity")
            failures.append(
                f"{name} sensitivity fell from {old:.3f} to {new:.3f} "
                f"(-{drop:.3f}, more than the {max_sensitivity_drop:.3f} allowed)"
            )
        else:
            passes.append(f"{name} sensitivity {new:.3f} against {old:.3f}")
    comparison["failed"] = failed
    if failures:
        return GateDecision(False, "rejected: " + "; ".join(failures + passes), comparison)
    return GateDecision(True, "promoted: " + "; ".join(passes), comparison)
