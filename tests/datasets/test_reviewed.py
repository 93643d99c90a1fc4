"""Reviewer-corrected cells cut from their scans, and the combined DB_4 they train in."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from papscreen.datasets.layout import read_dataset
from papscreen.datasets.reviewed import combined_db4, write_reviewed_crops
from papscreen.errors import DatasetError
from papscreen.imaging.crops import cut_crops
from papscreen.imaging.image_io import read_rgb, write_rgb


@pytest.fixture
def scan(tmp_path: Path) -> tuple[Path, np.ndarray]:
    pixels = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    path = tmp_path / "scan.png"
    write_rgb(path, pixels)
    return path, pixels


def _cell(cell_id: int, path: Path | None, x: float, y: float, label: str) -> SimpleNamespace:
    return SimpleNamespace(cell_id=cell_id, stored_path=str(path) if path else None, x=x, y=y, label=label)


@pytest.mark.parametrize(("x", "y"), [(80.0, 60.0), (3.0, 118.0), (159.4, 0.6)], ids=["inside", "corner", "edge"])
def test_crops_match_the_crops_module_mirroring(
    scan: tuple[Path, np.ndarray], tmp_path: Path, x: float, y: float
) -> None:
    path, pixels = scan
    result = write_reviewed_crops([_cell(5, path, x, y, "SCC")], tmp_path / "out", crop_size=40)
    crop = read_rgb(tmp_path / "out" / "train" / "SCC" / "reviewed-5.png")
    assert result.counts == {"SCC": 1}
    np.testing.assert_array_equal(crop, cut_crops(pixels, np.array([[x, y]]), 40)[0])


def test_cells_with_missing_scans_are_skipped_and_reported(scan: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = scan
    cells = [
        _cell(1, path, 50, 50, "HSIL"),
        _cell(2, tmp_path / "gone.png", 50, 50, "HSIL"),
        _cell(3, None, 50, 50, "LSIL"),
        _cell(4, path, 5000, 5000, "SCC"),
    ]
    result = write_reviewed_crops(cells, tmp_path / "out", crop_size=32)
    assert result.counts == {"HSIL": 1}
    assert result.written == 1
    assert len(result.skipped) == 3
    assert any("cell 2: scan" in s and "gone.png is missing" in s for s in result.skipped)
    assert any(s.startswith("cell 4: cell at (5000, 5000) lies outside") for s in result.skipped)


def _db4(root: Path, folders: tuple[str, ...]) -> Path:
    for split in ("train", "validation"):
        for folder in folders:
            write_rgb(root / split / folder / "a.png", np.full((16, 16, 3), 100, np.uint8))
    return root


@pytest.mark.parametrize(
    ("folders", "hsil_folder"), [(("1", "3"), "1"), (("HSIL", "NILM"), "HSIL")], ids=["numbered", "named"]
)
def test_combined_db4_adds_reviewed_crops_to_train_only(
    tmp_path: Path, folders: tuple[str, ...], hsil_folder: str
) -> None:
    db4 = _db4(tmp_path / "DB_4", folders)
    write_rgb(tmp_path / "reviewed" / "train" / "HSIL" / "reviewed-9.png", np.zeros((16, 16, 3), np.uint8))
    out = combined_db4(db4, tmp_path / "reviewed", tmp_path / "combined")

    combined, original = read_dataset(out), read_dataset(db4)
    assert combined.counts()["train"]["HSIL"] == original.counts()["train"]["HSIL"] + 1
    assert combined.counts()["validation"] == original.counts()["validation"]
    assert (out / "train" / hsil_folder / "reviewed-9.png").is_file()
    linked = out / "validation" / hsil_folder / "a.png"
    assert os.path.samefile(linked, db4 / "validation" / hsil_folder / "a.png")
    assert (out / "manifest.json").is_file()


def test_combined_db4_without_reviewed_crops_is_db4(tmp_path: Path) -> None:
    db4 = _db4(tmp_path / "DB_4", ("1", "3"))
    out = combined_db4(db4, None, tmp_path / "combined")
    assert read_dataset(out).counts() == read_dataset(db4).counts()


def test_combined_db4_refuses_a_used_folder_and_a_db3(tmp_path: Path) -> None:
    db4 = _db4(tmp_path / "DB_4", ("1", "3"))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        combined_db4(db4, None, tmp_path / "used")
    db3 = _db4(tmp_path / "DB_3", ("cell", "background"))
    with pytest.raises(DatasetError, match="DB_4"):
        combined_db4(db3, None, tmp_path / "combined")
