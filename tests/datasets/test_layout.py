"""DB_3 and DB_4 folders are read into plain data, whatever their aliases; bad layouts say what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.conventions import DB3_CLASSES
from papscreen.datasets.layout import read_dataset
from papscreen.errors import DatasetError
from papscreen.imaging.image_io import write_rgb


def _image(path: Path, value: int = 128) -> Path:
    write_rgb(path, np.full((8, 8, 3), value, np.uint8))
    return path


def _dataset(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    """``layout``: split folder -> class folder -> number of images (0 makes an empty folder)."""
    for split, classes in layout.items():
        for folder, count in classes.items():
            (root / split / folder).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _image(root / split / folder / f"{folder}_{i}.png", value=i)
    return root


@pytest.mark.parametrize(
    ("splits", "folders"),
    [
        (("train", "validation"), ("cell", "background")),
        (("training", "val"), ("Cells", "BG")),
        (("TRAIN", "valid"), ("CELL", "Backgrounds")),
    ],
    ids=["canonical", "aliases", "upper-case"],
)
def test_db3_with_aliases(tmp_path: Path, splits: tuple[str, str], folders: tuple[str, str]) -> None:
    cell, background = folders
    root = _dataset(tmp_path, {s: {cell: 3, background: 2} for s in splits})
    index = read_dataset(root)
    assert index.kind == "DB_3"
    assert index.scheme == "db3"
    assert index.class_names == DB3_CLASSES
    assert index.counts() == {"train": {"background": 2, "cell": 3}, "validation": {"background": 2, "cell": 3}}
    assert index.problems == ()
    cells = [s for s in index.splits["train"] if s.label == "cell"]
    assert {s.label_index for s in cells} == {DB3_CLASSES.index("cell")}
    assert all(s.path.is_file() for s in index.samples())


@pytest.mark.parametrize(
    ("folders", "scheme"),
    [
        ({"1": 1, "2": 2, "3": 3, "4": 4}, "numbered"),
        ({"HSIL": 1, "LSIL": 2, "NILM": 3, "SCC": 4}, "named"),
        ({"hsil": 1, "lsil": 2, "nilm": 3, "scc": 4}, "named"),
    ],
    ids=["legacy-numbers", "class-names", "lower-case-names"],
)
def test_db4_both_naming_schemes_mean_the_same(tmp_path: Path, folders: dict[str, int], scheme: str) -> None:
    index = read_dataset(_dataset(tmp_path, {"train": folders, "validation": folders}))
    assert index.kind == "DB_4"
    assert index.scheme == scheme
    assert index.class_names == BETHESDA_CLASSES
    # legacy 1=HSIL 2=LSIL 3=NILM 4=SCC, so both schemes give the same counts
    assert index.counts()["train"] == {"NILM": 3, "LSIL": 2, "HSIL": 1, "SCC": 4}
    for sample in index.samples():
        assert BETHESDA_CLASSES[sample.label_index] == sample.label


def test_db4_extra_labels_go_through_the_label_map(tmp_path: Path) -> None:
    folders = {"NILM": 1, "LSIL": 1, "ASC-US": 2, "ASC_H": 1, "HSIL": 1, "SCC": 1}
    root = _dataset(tmp_path, {"train": folders, "validation": folders})
    assert read_dataset(root).counts()["train"] == {"NILM": 1, "LSIL": 3, "HSIL": 2, "SCC": 1}
    remapped = read_dataset(root, extra_label_map={"ASC-US": "NILM", "ASC-H": "HSIL"})
    assert remapped.counts()["train"] == {"NILM": 3, "LSIL": 1, "HSIL": 2, "SCC": 1}


@pytest.mark.parametrize(
    ("folders", "named"),
    [
        ({"NILM": 1, "LSIL": 1, "HSIL": 1, "SCC": 1, "neutrophils": 1}, "neutrophils"),
        ({"cell": 1, "background": 1, "debris": 1}, "debris"),
        ({"1": 1, "2": 1, "3": 1, "4": 1, "5": 1}, "5"),
        ({"1": 1, "2": 1, "NILM": 1}, "NILM"),
    ],
    ids=["db4-unknown", "db3-unknown", "number-5", "names-and-numbers-mixed"],
)
def test_unknown_class_folder_is_an_error_naming_it(tmp_path: Path, folders: dict[str, int], named: str) -> None:
    root = _dataset(tmp_path, {"train": folders, "validation": folders})
    with pytest.raises(DatasetError, match=f"unknown class folder [a-z]+/{named}"):
        read_dataset(root)


def test_extra_label_folder_without_mapping_is_unknown(tmp_path: Path) -> None:
    folders = {"NILM": 1, "ASC-US": 1}
    root = _dataset(tmp_path, {"train": folders, "validation": folders})
    with pytest.raises(DatasetError, match="ASC-US"):
        read_dataset(root, extra_label_map={})


def test_empty_class_folder_and_missing_class_are_problems(tmp_path: Path) -> None:
    root = _dataset(tmp_path, {"train": {"cell": 2, "background": 0}, "validation": {"cell": 1}})
    index = read_dataset(root)
    assert "train/background: empty class folder (no images)" in index.problems
    assert "validation: no background samples (no class folder)" in index.problems
    assert index.counts()["validation"] == {"background": 0, "cell": 1}


def test_non_image_files_are_reported_and_skipped_bookkeeping_ignored(tmp_path: Path) -> None:
    root = _dataset(tmp_path, {"train": {"cell": 1, "background": 1}, "validation": {"cell": 1, "background": 1}})
    (root / "train" / "cell" / "notes.txt").write_text("hello")
    (root / "train" / "cell" / ".DS_Store").write_bytes(b"\0")
    (root / "train" / "cell" / "manifest.json").write_text("{}")
    (root / "manifest.json").write_text("{}")
    (root / "validation" / "stray.png").write_bytes(b"")
    index = read_dataset(root)
    assert index.counts()["train"]["cell"] == 1
    assert index.problems == (
        "validation/stray.png: not inside a class folder; skipped",
        "train/cell/notes.txt: not an image file (.txt); skipped",
    )


def test_nested_images_are_found(tmp_path: Path) -> None:
    root = _dataset(tmp_path, {"train": {"cell": 1, "background": 1}, "validation": {"cell": 1, "background": 1}})
    _image(root / "train" / "cell" / "slide7" / "a.png")
    assert read_dataset(root).counts()["train"]["cell"] == 2


@pytest.mark.parametrize(
    "damage",
    [b"", b"not an image at all", "truncated"],
    ids=["empty-file", "garbage", "truncated-png"],
)
def test_corrupt_image_found_only_with_verify(tmp_path: Path, damage: bytes | str) -> None:
    root = _dataset(tmp_path, {"train": {"cell": 2, "background": 1}, "validation": {"cell": 1, "background": 1}})
    bad = root / "train" / "cell" / "bad.png"
    if damage == "truncated":
        _image(bad)
        bad.write_bytes(bad.read_bytes()[:40])
    else:
        bad.write_bytes(damage)  # type: ignore[arg-type]
    assert read_dataset(root).counts()["train"]["cell"] == 3
    verified = read_dataset(root, verify=True)
    assert verified.counts()["train"]["cell"] == 2
    assert len(verified.problems) == 1
    assert verified.problems[0].startswith("train/cell/bad.png: ")
    assert verified.problems[0].endswith("; skipped")


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"train": {"cell": 1}}, "no validation split .*val"),
        ({"validation": {"cell": 1}}, "no train split"),
        ({"train": {"cell": 1}, "val": {"cell": 1}, "validation": {"cell": 1}}, "both val and validation"),
    ],
    ids=["no-validation", "no-train", "two-validation-folders"],
)
def test_split_problems_are_errors(tmp_path: Path, layout: dict[str, dict[str, int]], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        read_dataset(_dataset(tmp_path, layout))


def test_split_without_class_folders_is_an_error(tmp_path: Path) -> None:
    root = _dataset(tmp_path, {"train": {"cell": 1}})
    (root / "validation").mkdir()
    _image(root / "validation" / "loose.png")
    with pytest.raises(DatasetError, match="validation split has no class folders"):
        read_dataset(root)


@pytest.mark.parametrize("kind", ["missing", "file"], ids=["missing", "a-file"])
def test_root_must_be_a_folder(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "data"
    if kind == "file":
        root.write_text("x")
    with pytest.raises(DatasetError, match=r"no such folder|not a folder"):
        read_dataset(root)


def test_build_output_folder_hints_at_db3_db4(tmp_path: Path) -> None:
    _dataset(tmp_path / "DB_3", {"train": {"cell": 1}, "validation": {"cell": 1}})
    with pytest.raises(DatasetError, match="holds DB_3: give one of those"):
        read_dataset(tmp_path)
