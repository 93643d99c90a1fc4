"""A dataset's fingerprint follows its content and labels, not its location, copy or file times."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from papscreen.datasets.annotations import read_annotations
from papscreen.datasets.fingerprint import (
    fingerprint_annotations,
    fingerprint_entries,
    fingerprint_index,
    short_fingerprint,
)
from papscreen.datasets.layout import read_dataset
from papscreen.imaging.image_io import write_rgb


def _db3(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for folder in ("cell", "background"):
            for i in range(2):
                write_rgb(root / split / folder / f"{i}.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    return root


def _fp(root: Path) -> str:
    return fingerprint_index(read_dataset(root))


def test_stable_under_copy_move_and_mtime(tmp_path: Path) -> None:
    original = _db3(tmp_path / "a")
    expected = _fp(original)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy, copy_function=shutil.copy)  # new mtimes
    assert _fp(copy) == expected
    moved = tmp_path / "moved"
    original.rename(moved)
    assert _fp(moved) == expected
    for path in moved.rglob("*.png"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    assert _fp(moved) == expected


def test_stable_under_aliases_of_bookkeeping(tmp_path: Path) -> None:
    root = _db3(tmp_path / "a")
    expected = _fp(root)
    (root / "manifest.json").write_text('{"source": "/somewhere"}')
    (root / "train" / "cell" / ".DS_Store").write_bytes(b"x")
    assert _fp(root) == expected


def test_changes_with_one_pixel(tmp_path: Path) -> None:
    root = _db3(tmp_path / "a")
    before = _fp(root)
    write_rgb(root / "train" / "cell" / "0.png", np.zeros((20, 20, 3), np.uint8))
    assert _fp(root) != before


def test_changes_when_a_file_changes_class(tmp_path: Path) -> None:
    root = _db3(tmp_path / "a")
    before = _fp(root)
    (root / "train" / "cell" / "0.png").rename(root / "train" / "background" / "moved.png")
    assert _fp(root) != before


@pytest.mark.parametrize(
    ("labels", "same"),
    [(("cell", "cell"), True), (("cell", "background"), False)],
    ids=["same-label", "other-label"],
)
def test_label_is_part_of_the_fingerprint(tmp_path: Path, labels: tuple[str, str], same: bool) -> None:
    (tmp_path / "a.png").write_bytes(b"pixels")
    first = fingerprint_entries(tmp_path, [("a.png", labels[0])])
    assert (first == fingerprint_entries(tmp_path, [("a.png", labels[1])])) is same


def test_order_of_entries_does_not_matter(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode())
    entries = [("a", "x"), ("b", "y"), ("c", "x")]
    assert fingerprint_entries(tmp_path, entries) == fingerprint_entries(tmp_path, list(reversed(entries)))


def test_short_form_is_the_first_16_hex() -> None:
    assert short_fingerprint("ab" * 32) == "ab" * 8


def test_annotation_fingerprint_follows_csv_and_images(tmp_path: Path) -> None:
    folder = tmp_path / "annotated"
    write_rgb(folder / "images" / "a.png", np.full((30, 30, 3), 200, np.uint8))
    (folder / "labels.csv").write_text("image,x,y,label\na.png,10,10,NILM\n")
    before = fingerprint_annotations(read_annotations(folder))
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert fingerprint_annotations(read_annotations(copy)) == before
    (copy / "labels.csv").write_text("image,x,y,label\na.png,10,10,HSIL\n")
    assert fingerprint_annotations(read_annotations(copy)) != before
