"""The soak as CI runs it: workers killed at random and, on PostgreSQL, connections cut and the server restarted.

``benchmarks/soak.py`` is run as it is for the 1,000-scan figures; it exits non-zero and lists the problems when
a scan was lost, copied twice, left behind, registered twice, analysed twice, taken more often than the attempt
cap, or left with an unfinished claim. 100 scans go through intake passes alone on SQLite and on PostgreSQL (a
server of the soak's own, which it restarts); 40 go through the whole intake flow with the analyses inline on
PostgreSQL, against a Prefect server of the soak's own, the shipped models grading every good scan (the analyses
are what takes the time: about 3 s a scan on two cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def _soak(tmp_path: Path, *options: str) -> dict:
    report_file = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(SOAK), "--kill-every", "1.5", "--json", str(report_file), *options],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert report["problems"] == []
    assert report["kills"] >= 3
    return report


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_hundred_scans_through_killed_intake_workers_are_each_kept_once(backend: str, tmp_path: Path) -> None:
    options = ["--pg"] if backend == "postgresql" else []
    report = _soak(tmp_path, "--scans", "100", "--intake-only", *options)
    assert report["entries_written"] == 100
    assert report["good_scans_queued_once"] == report["distinct_good_scans"] > 50
    if backend == "postgresql":
        assert report["cut_rounds"] >= 3  # the connections that happened to be open then were ended
        assert len(report["postgres_restarts_seconds_down"]) == 1


def test_scans_analysed_by_killed_workers_through_a_database_restart_are_each_analysed_once(tmp_path: Path) -> None:
    report = _soak(tmp_path, "--scans", "40", "--pg", "--kill-seconds", "20")
    assert report["entries_written"] == 40
    assert (
        report["good_scans_done_once"] + report["good_scans_quarantined_at_the_attempt_cap"]
        == (report["distinct_good_scans"])
    )
    assert len(report["postgres_restarts_seconds_down"]) == 1
