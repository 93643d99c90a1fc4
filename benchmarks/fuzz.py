"""Fuzz every target of ``tests/fuzz`` with the benchmark profile: 10,000 generated inputs each, fresh random.

    .venv/bin/python benchmarks/fuzz.py                    # every target, 10,000 inputs each
    .venv/bin/python benchmarks/fuzz.py --examples 1000 -k scan

Targets: the header probe and the decoders (damaged and random scans), the settings file, the users file, the
annotation CSV reader, and the GeoJSON and CSV exports. The property of each is that only papscreen's own errors
escape (an intake pass or a command turns them into one clear line) and that the exports stay strict. CI runs the
same tests with a few hundred derandomised inputs; this script draws new ones every run. It prints, per target,
the inputs that ran and the time, the machine, and ends non-zero when a target failed (Hypothesis prints the
smallest failing input, to be turned into a regression test).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    found = re.search(r"model name\s*:\s*(.+)", text)
    return found.group(1).strip() if found else platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=10_000, help="generated inputs per target")
    parser.add_argument("-k", default=None, help="only targets whose test name matches (pytest -k)")
    args = parser.parse_args()
    env = {
        **os.environ,
        "HYPOTHESIS_PROFILE": "benchmark",
        "PAPSCREEN_FUZZ_EXAMPLES": str(args.examples),
        "PYTHONWARNINGS": "ignore",
    }
    command = [
        sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-p", "no:cacheprovider", "-W", "ignore",
        "--hypothesis-show-statistics", "--timeout=0", *(["-k", args.k] if args.k else []),
    ]  # fmt: skip
    print(f"machine: {_cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    started = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    report = run.stdout + run.stderr
    print(f"{'target':<72} {'inputs':>8}  {'time':>8}")
    for name, block in re.findall(r"tests/fuzz/\S+::(\S+):\n(.*?)(?=\n\S|\Z)", report, flags=re.S):
        inputs = sum(int(n) for n in re.findall(r"- (\d+) passing", block))
        seconds = sum(float(s) for s in re.findall(r"phase \(([\d.]+) seconds\)", block))
        print(f"{name:<72} {inputs:>8}  {seconds:>7.0f}s")
    print(report.strip().splitlines()[-1] if report.strip() else "(no output)")
    print(f"total {elapsed:.0f} s")
    if run.returncode != 0:
        print(report[-20000:])
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
