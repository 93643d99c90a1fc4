"""``papscreen analyze SLIDE --out DIR`` end to end: the exports agree with each other, nothing is overwritten,
and every kind of bad scan ends in a one-line error naming the file (exit code 2), never a traceback."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from papscreen.cli import app
from papscreen.datasets.demo_fields import demo_field_paths
from papscreen.datasets.synthetic import render_field
from papscreen.imaging.image_io import write_rgb
from papscreen.models.shipped import shipped_card
from papscreen.pipeline.export import EXPORT_FILES
from tests.bad_files import png_declaring

runner = CliRunner()


@pytest.fixture(scope="module")
def field_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scans") / "field.png"
    write_rgb(path, render_field(np.random.default_rng(3), {"NILM": 25, "HSIL": 4}).rgb)
    return path


def _analyze(models: tuple[Path, Path], scan: Path, out: Path, *extra: str) -> object:
    stage1, stage2 = models
    args = [
        "analyze",
        str(scan),
        "--out",
        str(out),
        "--stage1",
        str(stage1),
        "--stage2",
        str(stage2),
        "--device",
        "cpu",
    ]
    return runner.invoke(app, [*args, *extra])


def test_exports_agree_with_each_other(
    trained_model_folders: tuple[Path, Path], field_png: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _analyze(trained_model_folders, field_png, out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)
    summary = json.loads((out / "summary.json").read_text())
    with (out / "cells.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    geojson = json.loads((out / "cells.geojson").read_text())
    assert summary["cell_count"] == len(rows) == len(geojson["features"]) > 0
    assert summary["source"] == str(field_png)
    assert summary["scan_kind"] == "field"
    assert summary["dimensions"] == [2048, 1536]
    counts = {name: sum(r["class"] == name for r in rows) for name in summary["class_counts"]}
    assert counts == summary["class_counts"]
    feature = geojson["features"][0]
    assert feature["geometry"]["type"] == "Point"
    assert feature["properties"]["objectType"] == "detection"
    assert feature["properties"]["classification"]["name"] == rows[0]["class"]
    assert feature["geometry"]["coordinates"] == pytest.approx([float(rows[0]["x"]), float(rows[0]["y"])], abs=0.01)
    assert summary["category"] in result.output


def test_an_earlier_export_is_never_overwritten(
    trained_model_folders: tuple[Path, Path], field_png: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("the lab's earlier result")
    result = _analyze(trained_model_folders, field_png, out)
    assert result.exit_code == 2
    assert "--overwrite" in result.output
    assert (out / "summary.json").read_text() == "the lab's earlier result"
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
    assert _analyze(trained_model_folders, field_png, out, "--overwrite").exit_code == 0
    assert json.loads((out / "summary.json").read_text())["cell_count"] > 0


def _bad_scan(kind: str, folder: Path) -> Path:
    rgb = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    if kind == "zero-byte":
        (path := folder / "empty.jpg").write_bytes(b"")
    elif kind == "truncated-jpeg":
        write_rgb(path := folder / "cut.jpg", rgb)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "not-an-image":
        (path := folder / "report.png").write_text("Patient report, not an image\n" * 20)
    elif kind == "bomb":
        png_declaring(path := folder / "bomb.png", 100_000, 100_000)
    elif kind == "unsupported":
        Image.fromarray(rgb).save(path := folder / "scan.gif")
    else:
        path = folder / "missing.tif"
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("zero-byte", "empty"),
        ("truncated-jpeg", "truncated|corrupt|cannot"),
        ("not-an-image", "not|cannot|unrecognised|unknown"),
        ("bomb", "10,000,000,000 pixels"),
        ("unsupported", "GIF|not supported|unsupported"),
        ("missing", "does not exist|no such|missing"),
    ],
)
def test_bad_scans_fail_with_one_clear_line(
    trained_model_folders: tuple[Path, Path], tmp_path: Path, kind: str, message: str
) -> None:
    scan = _bad_scan(kind, tmp_path)
    result = _analyze(trained_model_folders, scan, tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert scan.name in result.output
    assert any(word.lower() in result.output.lower() for word in message.split("|")), result.output
    assert not (tmp_path / "out").exists()


def test_with_no_champion_and_no_database_the_shipped_models_grade_a_real_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh installation: `papscreen analyze SCAN --out DIR` works with papscreen's shipped CRIC models."""
    home = tmp_path / "home"
    monkeypatch.setenv("PAPSCREEN_HOME", str(home))
    monkeypatch.delenv("PAPSCREEN_DATABASE_URL", raising=False)
    scan = demo_field_paths()[0]
    out = tmp_path / "out"
    result = runner.invoke(app, ["analyze", str(scan), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "there is no database yet" in result.output
    assert f"shipped stage1 model {shipped_card('stage1').name}" in result.output
    assert f"shipped stage2 model {shipped_card('stage2').name}" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"] == {"stage1": shipped_card("stage1").name, "stage2": shipped_card("stage2").name}
    assert not (home / "papscreen.db").exists()  # looking for a champion created no database
