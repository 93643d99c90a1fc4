"""``papscreen dataset stats`` and ``build``: tables, exit codes 0/1/2, one clear line on error, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from papscreen.cli import app
from papscreen.cli.dataset_cmd import EXIT_OK, EXIT_PROBLEMS, EXIT_STOPPED
from papscreen.imaging.image_io import write_rgb

runner = CliRunner()


def _annotated(folder: Path, *, extra_rows: tuple[str, ...] = ()) -> Path:
    """Four fields, each with one NILM and one cell of another class, two nuclei per field unannotated."""
    rows = ["image,x,y,bethesda,cric_cell_id"]
    others = ["ASC-US", "HSIL", "ASC-US", "HSIL"]
    for i, other in enumerate(others):
        field = np.full((200, 260, 3), 238, np.uint8)
        for x, y in ((50, 50), (200, 60), (60, 160), (210, 150)):
            cv2.circle(field, (x, y), 6, (90, 60, 140), -1)
        write_rgb(folder / "images" / f"f{i}.png", field)
        rows += [f"f{i}.png,50,50,NILM,{2 * i}", f"f{i}.png,200,60,{other},{2 * i + 1}"]
    (folder / "labels.csv").write_text("\n".join([*rows, *extra_rows]) + "\n")
    return folder


def _db4(root: Path) -> Path:
    for split in ("train", "val"):
        for folder in ("1", "2", "3", "4"):
            write_rgb(root / split / folder / "a.png", np.zeros((16, 16, 3), np.uint8))
    return root


def _run(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def test_stats_prints_counts_kind_and_fingerprint(tmp_path: Path) -> None:
    code, output = _run("dataset", "stats", _db4(tmp_path / "db4"))
    assert code == EXIT_OK
    assert "DB_4 (legacy folders 1..4)" in output
    for name in ("NILM", "LSIL", "HSIL", "SCC", "train", "validation"):
        assert name in output
    assert "fingerprint: " in output
    assert "problem" not in output


@pytest.mark.parametrize(
    ("damage", "verify", "code", "message"),
    [
        ("notes.txt", "--verify", EXIT_PROBLEMS, "train/1/notes.txt: not an image file (.txt); skipped"),
        ("bad.png", "--verify", EXIT_PROBLEMS, "train/1/bad.png: "),
        ("bad.png", "--no-verify", EXIT_OK, "images not decoded (--no-verify)"),
    ],
    ids=["non-image", "corrupt-verified", "corrupt-not-verified"],
)
def test_stats_problems_exit_1(tmp_path: Path, damage: str, verify: str, code: int, message: str) -> None:
    root = _db4(tmp_path / "db4")
    (root / "train" / "1" / damage).write_text("garbage")
    got, output = _run("dataset", "stats", root, verify)
    assert got == code
    assert message in output


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such folder"),
        (
            lambda p: (p / "train" / "weird").mkdir(parents=True) or (p / "validation" / "1").mkdir(parents=True),
            "unknown class",
        ),
        (lambda p: (p / "train" / "1").mkdir(parents=True), "no validation split"),
    ],
    ids=["missing", "unknown-folder", "missing-split"],
)
def test_stats_unusable_folder_exits_2_with_one_line(tmp_path: Path, make: object, message: str) -> None:
    root = tmp_path / "data"
    make(root)  # type: ignore[operator]
    code, output = _run("dataset", "stats", root)
    assert code == EXIT_STOPPED
    assert output.startswith("error: ")
    assert message in output


def test_build_then_stats_on_both_outputs(tmp_path: Path) -> None:
    source = _annotated(tmp_path / "annotated")
    out = tmp_path / "out"
    code, output = _run("dataset", "build", source, "--out", out, "--crop-size", "48", "--val-fraction", "0.25")
    assert code == EXIT_OK, output
    assert "DB_3 (stage 1)" in output
    assert "DB_4 (stage 2)" in output
    assert "images: train 2, validation 2 (split by image)" in output  # LSIL and HSIL both need a field there
    assert "checking images" in output
    assert "cutting patches" in output
    manifest = json.loads((out / "DB_4" / "manifest.json").read_text())
    assert manifest["crop_px"] == 48
    assert manifest["counts"]["train"]["LSIL"] + manifest["counts"]["validation"]["LSIL"] == 2
    for dataset, expected in (("DB_3", EXIT_OK), ("DB_4", EXIT_PROBLEMS)):
        code, output = _run("dataset", "stats", out / dataset)
        assert code == expected, output
        fingerprint = json.loads((out / dataset / "manifest.json").read_text())["fingerprint"]
        assert f"fingerprint: {fingerprint[:16]}" in output
    assert "train/SCC: empty class folder" in output  # no SCC in the annotations: a warning, exit 1


@pytest.mark.parametrize("fraction", ["0", "1"], ids=["glass-only", "all-hard"])
def test_build_hard_background_fraction_reaches_the_manifest(tmp_path: Path, fraction: str) -> None:
    source = _annotated(tmp_path / "annotated")
    out = tmp_path / "out"
    code, output = _run("dataset", "build", source, "--out", out, "--hard-background-fraction", fraction)
    assert code == EXIT_OK, output
    manifest = json.loads((out / "DB_3" / "manifest.json").read_text())
    assert manifest["background"]["hard_fraction"] == float(fraction)
    kinds = {s["kind"] for s in manifest["samples"] if s["label"] == "background"}
    assert kinds == ({"clear"} if fraction == "0" else {"hard"})
    assert (manifest["background"]["hard"]["patches"] > 0) == (fraction == "1")


def test_build_numbered_and_label_map_from_settings(tmp_path: Path) -> None:
    source = _annotated(tmp_path / "annotated")
    config = tmp_path / "papscreen.toml"
    config.write_text('[labels]\nextra_label_map = { "ASC-US" = "SCC" }\n')
    out = tmp_path / "out"
    code, output = _run("--config", config, "dataset", "build", source, "--out", out, "--numbered", "--crop-size", "32")
    assert code == EXIT_OK, output
    scc = sum(1 for _ in out.glob("DB_4/*/4/*.png"))  # legacy 4 = SCC
    assert scc == 2
    assert not list(out.glob("DB_4/*/2/*.png"))  # nothing left for LSIL


def test_build_with_bad_rows_exits_1_and_names_file_and_line(tmp_path: Path) -> None:
    source = _annotated(tmp_path / "annotated", extra_rows=("f0.png,999,5,NILM,99", "missing.png,5,5,NILM,100"))
    code, output = _run("dataset", "build", source, "--out", tmp_path / "out", "--crop-size", "32")
    assert code == EXIT_PROBLEMS
    assert "2 problem(s):" in output
    assert "labels.csv, line 10: point (999, 5) is outside f0.png" in output
    assert "labels.csv, line 11: image missing.png not found" in output
    assert (tmp_path / "out" / "DB_4" / "manifest.json").is_file()


def test_build_strict_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    source = _annotated(tmp_path / "annotated", extra_rows=("f0.png,999,5,NILM,99",))
    out = tmp_path / "out"
    code, output = _run("dataset", "build", source, "--out", out, "--strict")
    assert code == EXIT_STOPPED
    assert "line 10: point (999, 5)" in output
    assert "error: stopped (--strict): 1 problem(s), nothing written" in output
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--out", "{out}"), "is not empty; choose an empty folder or pass --overwrite"),
        (("--out", "{tmp}/new", "--val-fraction", "1.5"), "Invalid value for '--val-fraction'"),
    ],
    ids=["non-empty-output", "bad-fraction"],
)
def test_build_refuses_cleanly(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    source = _annotated(tmp_path / "annotated")
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    filled = [a.format(out=out, tmp=tmp_path) for a in args]
    code, output = _run("dataset", "build", source, *filled)
    assert code == EXIT_STOPPED
    assert message in output


def test_build_overwrite_replaces(tmp_path: Path) -> None:
    source = _annotated(tmp_path / "annotated")
    out = tmp_path / "out"
    assert _run("dataset", "build", source, "--out", out, "--crop-size", "32")[0] == EXIT_OK
    code, output = _run("dataset", "build", source, "--out", out, "--crop-size", "32", "--overwrite", "--seed", "5")
    assert code == EXIT_OK, output
    assert json.loads((out / "DB_3" / "manifest.json").read_text())["seed"] == 5


def test_build_without_annotations_exits_2(tmp_path: Path) -> None:
    (tmp_path / "annotated" / "images").mkdir(parents=True)
    code, output = _run("dataset", "build", tmp_path / "annotated", "--out", tmp_path / "out")
    assert code == EXIT_STOPPED
    assert output.startswith("error: ")
    assert "no annotation CSV" in output


def test_help_documents_exit_codes() -> None:
    code, output = _run("dataset", "build", "--help")
    assert code == 0
    assert "Exit codes: 0" in " ".join(output.split())
