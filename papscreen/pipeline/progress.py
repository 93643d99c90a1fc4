"""How far an analysis has come, in words a lab reads: "stage 1: 120 of 480 tiles (13%), about 50 s left".

The engine calls ``progress(phase, done, total)`` at every tile and every stage-2 batch
(:data:`~papscreen.pipeline.engine.ProgressCallback`). :class:`ProgressReporter` turns those calls into a fraction of
the whole analysis and a sentence with an estimate of the time left, and passes them on at most every
``every_seconds`` (and at each phase's end), so that a caller writing them to a database or a log is not called
thousands of times. It knows nothing of where they go.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PHASE_SHARE", "ProgressReporter", "format_seconds"]

PHASE_SHARE = {"stage1": (0.0, 0.5), "stage2": (0.5, 1.0)}
"""The part of the whole analysis each phase stands for (start, end). Stage 2's cell count is known only once
stage 1 ends, so the split is fixed; on CRIC-sized fields the two take about the same time."""

_UNITS = {"stage1": "tiles", "stage2": "cells"}


def format_seconds(seconds: float) -> str:
    """A duration as a person says it.

    Examples:
        >>> format_seconds(8.2), format_seconds(95), format_seconds(4000)
        ('8 s', '1 min 35 s', '1 h 6 min')
    """
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


@dataclass
class ProgressReporter:
    """A progress callback for :func:`~papscreen.pipeline.analyze` that reports ``(fraction, note)``, throttled.

    Examples:
        >>> seen = []
        >>> now = iter([0.0, 10.0, 10.5, 20.0]).__next__
        >>> reporter = ProgressReporter(lambda f, note: seen.append((f, note)), clock=now, every_seconds=2)
        >>> reporter("stage1", 120, 480)  # 10 s in: reported
        >>> reporter("stage1", 130, 480)  # half a second later: skipped
        >>> reporter("stage1", 480, 480)  # a phase's end is always reported
        >>> seen[0]
        (0.125, 'stage 1: 120 of 480 tiles (12%), about 1 min 10 s left')
        >>> seen[1]
        (0.5, 'stage 1: 480 of 480 tiles (50%), about 20 s left')
    """

    report: Callable[[float, str], None]
    clock: Callable[[], float] = time.monotonic
    every_seconds: float = 2.0
    started: float = field(init=False)
    _last: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        """Start the clock the estimate counts from."""
        self.started = self.clock()

    def __call__(self, phase: str, done: int, total: int) -> None:
        """Take one engine report; pass it on if enough time has passed or the phase just ended."""
        now = self.clock()
        finished_phase = total > 0 and done >= total
        if not finished_phase and self._last is not None and now - self._last < self.every_seconds:
            return
        self._last = now
        start, end = PHASE_SHARE.get(phase, (0.0, 1.0))
        fraction = start + (end - start) * (done / total if total > 0 else 1.0)
        self.report(fraction, self.note(phase, done, total, fraction, now - self.started))

    @staticmethod
    def note(phase: str, done: int, total: int, fraction: float, elapsed: float) -> str:
        """The sentence for one report, with the time left extrapolated from the time spent so far."""
        name = phase.replace("stage", "stage ") if phase in _UNITS else phase
        text = f"{name}: {done} of {total} {_UNITS.get(phase, 'steps')} ({fraction:.0%})"
        if 0 < fraction < 1 and elapsed > 0:
            text += f", about {format_seconds(elapsed * (1 - fraction) / fraction)} left"
        return text
