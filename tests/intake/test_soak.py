"""The soak at 100 scans, as CI runs it: workers killed at random and, on PostgreSQL, connections cut.

``benchmarks/soak.py`` is run as it is for the 1,000-scan figures; it exits non-zero and lists the problems when
a scan was lost, copied twice, left behind, registered twice, analysed twice, taken more often than the attempt
cap, or left with an unfinished claim. On SQLite the workers ingest only (intake passes, no Prefect server); on
PostgreSQL they run the intake flow with its analyses inline against a Prefect server of the soak's own, the
shipped models grading every good scan, against a PostgreSQL server of the soak's own that it restarts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_hundred_scans_through_killed_workers_are_each_kept_once(backend: str, tmp_path: Path) -> None:
    options = ["--intake-only"]
    if backend == "postgresql":  # a private server (the soak restarts it), with the analyses
        options = ["--pg", "--kill-seconds", "30"]
    report_file = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(SOAK), "--scans", "100", "--kill-every", "1.5", "--json", str(report_file), *options],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert report["problems"] == []
    assert report["entries_written"] == 100
    assert report["kills"] >= 3
    if backend == "postgresql":
        assert report["cut_rounds"] >= 3  # the connections that happened to be open then were ended
        assert len(report["postgres_restarts_seconds_down"]) == 1
        assert report["good_scans_done_once"] + report["good_scans_quarantined_at_the_attempt_cap"] > 50
    else:
        assert report["good_scans_queued_once"] == report["distinct_good_scans"] > 50
