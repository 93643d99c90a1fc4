"""The validation gate: promote only when macro-F1 holds and guarded sensitivities drop at most the margin."""

from __future__ import annotations

import pytest

from papscreen.models.promotion import GateDecision, decide_promotion


def stage2(f1: float, hsil: float | None, scc: float | None) -> dict:
    return {"macro_f1": f1, "per_class": {"HSIL": {"sensitivity": hsil}, "SCC": {"sensitivity": scc}}}


def stage1(f1: float, cell: float) -> dict:
    return {"macro_f1": f1, "per_class": {"cell": {"sensitivity": cell}, "background": {"sensitivity": 0.9}}}


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "failed"),
    [
        (stage2(0.90, 0.90, 0.90), stage2(0.90, 0.90, 0.90), True, []),
        (stage2(0.91, 0.885, 0.90), stage2(0.90, 0.90, 0.90), True, []),
        (stage2(0.89, 0.95, 0.95), stage2(0.90, 0.90, 0.90), False, ["macro-F1"]),
        (stage2(0.95, 0.87, 0.90), stage2(0.90, 0.90, 0.90), False, ["HSIL sensitivity"]),
        (stage2(0.95, 0.90, 0.85), stage2(0.90, 0.90, 0.90), False, ["SCC sensitivity"]),
        (
            stage2(0.80, 0.70, 0.70),
            stage2(0.90, 0.90, 0.90),
            False,
            ["macro-F1", "HSIL sensitivity", "SCC sensitivity"],
        ),
        (stage2(0.91, None, 0.90), stage2(0.90, 0.90, 0.90), True, []),
    ],
    ids=["equal", "hsil-within-margin", "lower-f1", "hsil-drop", "scc-drop", "all-worse", "no-hsil-cases"],
)
def test_stage2_gate(challenger: dict, champion: dict, promote: bool, failed: list[str]) -> None:
    decision = decide_promotion("stage2", challenger, champion, max_sensitivity_drop=0.02)
    assert decision.promote is promote
    assert decision.comparison["failed"] == failed
    assert decision.reason.startswith("promoted: " if promote else "rejected: ")


def test_rejection_reason_reads_with_the_numbers() -> None:
    decision = decide_promotion("stage2", stage2(0.85, 0.80, 0.90), stage2(0.90, 0.90, 0.90), max_sensitivity_drop=0.02)
    assert "macro-F1 0.850 is lower than the champion's 0.900" in decision.reason
    assert "HSIL sensitivity fell from 0.900 to 0.800 (-0.100, more than the 0.020 allowed)" in decision.reason
    assert "SCC sensitivity 0.900 against 0.900" in decision.reason


def test_first_model_of_a_stage_is_promoted() -> None:
    decision = decide_promotion("stage1", stage1(0.7, 0.5), None, max_sensitivity_drop=0.0)
    assert decision == GateDecision(True, decision.reason, decision.comparison)
    assert decision.reason.startswith("first model of its stage")
    assert decision.comparison["champion"] is None


@pytest.mark.parametrize(
    ("cell", "promote"), [(0.97, True), (0.95, False)], ids=["cell-recall-within-margin", "cell-recall-drop"]
)
def test_stage1_guards_cell_sensitivity(cell: float, promote: bool) -> None:
    decision = decide_promotion("stage1", stage1(0.95, cell), stage1(0.94, 0.98), max_sensitivity_drop=0.02)
    assert decision.promote is promote
    assert set(decision.comparison["challenger"]) == {"macro_f1", "cell_sensitivity"}


def test_margin_is_configurable() -> None:
    worse_hsil = stage2(0.95, 0.80, 0.90)
    assert not decide_promotion("stage2", worse_hsil, stage2(0.9, 0.9, 0.9), max_sensitivity_drop=0.05).promote
    assert decide_promotion("stage2", worse_hsil, stage2(0.9, 0.9, 0.9), max_sensitivity_drop=0.10).promote


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="stage must be one of"):
        decide_promotion("stage3", stage1(0.9, 0.9), None, max_sensitivity_drop=0.02)
    with pytest.raises(ValueError, match="no macro_f1"):
        decide_promotion("stage2", {}, None, max_sensitivity_drop=0.02)
