"""Hypothesis profiles for the fuzz tests: 300 inputs a target in CI, 10,000 in the benchmark.

``HYPOTHESIS_PROFILE=benchmark`` (what ``benchmarks/fuzz.py`` sets) draws fresh random inputs; the CI profile is
derandomised, so a red CI is always the same input and never a flake, and keeps no example database in the tree.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,  # the first call of a reader imports and warms up; a slow input is not a failure here
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    "database": None,
}
settings.register_profile("ci", max_examples=300, derandomize=True, **_COMMON)
settings.register_profile("benchmark", max_examples=int(os.environ.get("PAPSCREEN_FUZZ_EXAMPLES", "10000")), **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
