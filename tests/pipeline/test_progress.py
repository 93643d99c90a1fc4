"""Analysis progress: a fraction of the whole and a sentence with the time left, throttled."""

from __future__ import annotations

import pytest

from papscreen.pipeline.progress import ProgressReporter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _reporter(every: float = 2.0) -> tuple[ProgressReporter, _Clock, list[tuple[float, str]]]:
    clock, seen = _Clock(), []
    reporter = ProgressReporter(lambda f, note: seen.append((f, note)), clock=clock, every_seconds=every)
    return reporter, clock, seen


def test_stage_one_fills_the_first_half_and_stage_two_the_second() -> None:
    reporter, clock, seen = _reporter(every=0)
    for phase, done, total in (("stage1", 2, 4), ("stage1", 4, 4), ("stage2", 50, 200), ("stage2", 200, 200)):
        clock.now += 1
        reporter(phase, done, total)
    assert [f for f, _ in seen] == pytest.approx([0.25, 0.5, 0.625, 1.0])
    assert seen[2][1] == "stage 2: 50 of 200 cells (62%), about 2 s left"  # 3 s for 0.625 of the work
    assert seen[-1][1] == "stage 2: 200 of 200 cells (100%)"  # no estimate once done


def test_reports_are_throttled_but_a_phase_end_always_gets_through() -> None:
    reporter, clock, seen = _reporter(every=2.0)
    for tile in range(1, 101):
        clock.now = tile * 0.1  # a tile every 0.1 s: 10 s in all
        reporter("stage1", tile, 100)
    assert 5 <= len(seen) <= 7  # about one report every 2 s, not a hundred
    assert seen[-1][0] == 0.5


def test_an_empty_phase_counts_as_done() -> None:
    reporter, _clock, seen = _reporter()
    reporter("stage2", 0, 0)  # no cells found
    assert seen == [(1.0, "stage 2: 0 of 0 cells (100%)")]
