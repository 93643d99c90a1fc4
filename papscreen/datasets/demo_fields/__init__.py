"""Four real CRIC Pap smear fields that papscreen ships as demo scans, with their experts' nucleus points.

See this folder's README for the citation and what each field holds. ``papscreen demo`` drops them into the
intake folder; the tests use them to check that the shipped models grade a real field sensibly.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEMO_FIELDS_DIR", "DemoPoint", "demo_field_paths", "demo_field_points"]

DEMO_FIELDS_DIR = Path(__file__).parent


@dataclass(frozen=True)
class DemoPoint:
    """One annotated nucleus: its field's file name, centre in the field's pixels, Bethesda term."""

    image: str
    x: float
    y: float
    bethesda: str


def demo_field_paths() -> list[Path]:
    """The demo field images, sorted by name."""
    return sorted(DEMO_FIELDS_DIR.glob("*.jpg"))


def demo_field_points() -> list[DemoPoint]:
    """Every annotated nucleus of the demo fields (``labels.csv``)."""
    with (DEMO_FIELDS_DIR / "labels.csv").open(newline="", encoding="utf-8") as f:
        return [DemoPoint(r["image"], float(r["x"]), float(r["y"]), r["bethesda"]) for r in csv.DictReader(f)]
