"""Point annotations: every bad row is reported with its file and line, and the good rows still come back."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from papscreen.datasets.annotations import find_annotation_csv, read_annotations
from papscreen.errors import DatasetError
from papscreen.imaging.image_io import write_rgb

GOOD = "a.png,10,20,NILM"


def _folder(tmp_path: Path, rows: list[str], header: str = "image,x,y,label", csv_name: str = "labels.csv") -> Path:
    folder = tmp_path / "annotated"
    write_rgb(folder / "images" / "a.png", np.full((50, 60, 3), 230, np.uint8))  # 60 wide, 50 high
    (folder / csv_name).write_text("\n".join([header, *rows]) + "\n")
    return folder


def test_good_rows_come_back_with_their_lines(tmp_path: Path) -> None:
    found = read_annotations(_folder(tmp_path, [GOOD, "a.png,59.9,49.5,hsil", "", "a.png,0,0,ASC-US"]))
    assert found.problems == ()
    assert [(p.line, p.label, p.source_label) for p in found.points] == [
        (2, "NILM", "NILM"),
        (3, "HSIL", "hsil"),
        (5, "LSIL", "ASC-US"),
    ]
    assert found.image_sizes == {"a.png": (60, 50)}
    assert found.points[0].path == found.images_dir / "a.png"


def test_cric_columns_bethesda_and_extra_columns(tmp_path: Path) -> None:
    found = read_annotations(_folder(tmp_path, ["a.png,10,20,ASC-H,5421"], header="image,x,y,bethesda,cric_cell_id"))
    assert [(p.label, p.x, p.y) for p in found.points] == [("HSIL", 10.0, 20.0)]


def test_the_csv_path_may_be_given_directly(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [GOOD])
    assert len(read_annotations(folder / "labels.csv").points) == 1


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("a.png,ten,20,NILM", "x and y must be numbers, got x='ten'"),
        ("a.png,10,,NILM", "x and y must be numbers"),
        ("a.png,nan,20,NILM", "x and y must be numbers"),
        ("b.png,10,20,NILM", "image b.png not found"),
        ("a.png,60,20,NILM", r"point \(60, 20\) is outside a.png \(60x50 pixels\)"),
        ("a.png,10,-1,NILM", r"point \(10, -1\) is outside a.png"),
        ("a.png,10,20,neutrophil", "label 'neutrophil' is not one of NILM, LSIL, HSIL, SCC"),
        ("a.png,10,20,", "label '' is not one of"),
        ("../secret.png,10,20,NILM", "points outside images/"),
        (",10,20,NILM", "image name '' is empty"),
        ("labels.csv,1,1,NILM", "image labels.csv not found"),
    ],
    ids=[
        "non-numeric-x",
        "empty-y",
        "nan",
        "image-not-found",
        "x-at-width",
        "negative-y",
        "unknown-label",
        "empty-label",
        "escapes-images-folder",
        "empty-image-name",
        "not-in-images",
    ],
)
def test_each_bad_row_names_file_and_line(tmp_path: Path, row: str, reason: str) -> None:
    folder = _folder(tmp_path, [GOOD, row, GOOD])
    found = read_annotations(folder)
    assert [p.line for p in found.points] == [2, 4]
    assert len(found.problems) == 1
    problem = found.problems[0]
    assert problem.startswith(f"{folder / 'labels.csv'}, line 3: ")
    assert "row skipped" in problem
    assert re.search(reason, problem), problem


def test_unknown_label_still_marks_a_cell(tmp_path: Path) -> None:
    found = read_annotations(_folder(tmp_path, ["a.png,10,20,neutrophil"]))
    assert found.points == ()
    assert [(p.x, p.y, p.label) for p in found.unlabelled_points] == [(10.0, 20.0, None)]


def test_label_map_comes_from_the_caller(tmp_path: Path) -> None:
    folder = _folder(tmp_path, ["a.png,10,20,ASC-US", "a.png,10,20,ASC-H"])
    assert [p.label for p in read_annotations(folder, extra_label_map={"ASC-US": "NILM"}).points] == ["NILM"]
    strict = read_annotations(folder, extra_label_map={})
    assert strict.points == ()
    assert len(strict.problems) == 2
    assert "extra-label map (empty)" in strict.problems[0]


@pytest.mark.parametrize(
    ("header", "missing"),
    [("image,x,label", "y"), ("image,x,y,grade", "label"), ("file,x,y,label", "image")],
    ids=["no-y", "no-label", "no-image"],
)
def test_missing_column_is_one_problem_on_line_1(tmp_path: Path, header: str, missing: str) -> None:
    found = read_annotations(_folder(tmp_path, [GOOD], header=header))
    assert found.points == ()
    assert len(found.problems) == 1
    assert found.problems[0].startswith(f"{tmp_path / 'annotated' / 'labels.csv'}, line 1: missing column {missing}")


def test_empty_csv_is_a_problem(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [])
    (folder / "labels.csv").write_text("")
    assert "line 1: the file is empty" in read_annotations(folder).problems[0]


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage, not a png", b"\x89PNG\r\n\x1a\n"],
    ids=["empty", "garbage", "png-signature-only"],
)
def test_unreadable_image_header_names_image_and_line(tmp_path: Path, content: bytes) -> None:
    folder = _folder(tmp_path, [GOOD, "b.png,1,1,NILM", "b.png,2,2,NILM"])
    (folder / "images" / "b.png").write_bytes(content)
    found = read_annotations(folder)
    assert [p.line for p in found.points] == [2]
    assert [p.split(": ", 1)[0][-6:] for p in found.problems] == ["line 3", "line 4"]
    assert all("image b.png cannot be read" in p for p in found.problems)


def test_non_image_files_in_images_folder_are_reported(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [GOOD, "notes.txt,1,1,NILM"])
    (folder / "images" / "notes.txt").write_text("x")
    (folder / "images" / ".hidden").write_text("x")
    found = read_annotations(folder)
    assert found.image_files == ("a.png",)
    assert found.problems[0] == f"{folder / 'images' / 'notes.txt'}: not an image file (.txt); skipped"
    assert "line 3: notes.txt is not an image file (.txt)" in found.problems[1]


@pytest.mark.parametrize(
    ("names", "chosen"),
    [
        (["cells.csv"], "cells.csv"),
        (["a.csv", "labels.csv"], "labels.csv"),
        (["b.csv", "annotations.csv"], "annotations.csv"),
    ],
    ids=["only-one", "labels-preferred", "annotations-next"],
)
def test_which_csv(tmp_path: Path, names: list[str], chosen: str) -> None:
    for name in names:
        (tmp_path / name).write_text("image,x,y,label\n")
    assert find_annotation_csv(tmp_path).name == chosen


@pytest.mark.parametrize(
    ("setup", "message"),
    [("no-csv", "no annotation CSV"), ("two-csv", "several CSV files"), ("no-images", "no images/ folder")],
    ids=["no-csv", "ambiguous-csv", "no-images-folder"],
)
def test_unreadable_folder_is_an_error(tmp_path: Path, setup: str, message: str) -> None:
    (tmp_path / "images").mkdir()
    if setup == "two-csv":
        (tmp_path / "a.csv").write_text("")
        (tmp_path / "b.csv").write_text("")
    if setup == "no-images":
        (tmp_path / "images").rmdir()
        (tmp_path / "labels.csv").write_text("image,x,y,label\n")
    with pytest.raises(DatasetError, match=message):
        read_annotations(tmp_path)


def test_non_utf8_csv_is_an_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [GOOD])
    (folder / "labels.csv").write_bytes(b"image,x,y,label\n\xff\xfe,1,1,NILM\n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_annotations(folder)
