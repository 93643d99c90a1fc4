"""Reading a CRIC-style data folder: fields' points and loose crops become one table of cells grouped by field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from papscreen.datasets.real import SIX_LABELS, cell_crop, four_class, read_real_cells, write_cell_crops
from papscreen.errors import DatasetError
from papscreen.imaging.image_io import read_rgb, write_rgb


def _data_folder(root: Path) -> Path:
    """Two fields with points, three crops: one of a field's cell (a duplicate), two from a third field."""
    rng = np.random.default_rng(0)
    for name in ("fa.jpg", "fb.jpg"):
        write_rgb(root / "cric-dev" / "images" / name, rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    (root / "cric-dev" / "labels.csv").write_text(
        "image,x,y,bethesda,cric_cell_id\n"
        "fa.jpg,40,50,NILM,1\nfa.jpg,100,60,ASC-H,2\nfb.jpg,5,5,SCC,3\nfb.jpg,70,70,neutrophil,4\n"
    )
    crop = np.zeros((100, 100, 3), np.uint8)
    crop[45:55, 45:55] = 200  # a bright square at the centre, to find it again after rescaling
    for label, cell_id in (("ASC-H", "2"), ("HSIL", "10"), ("LSIL", "11")):
        write_rgb(root / "cric-crops" / label / f"{cell_id}.png", crop)
    (root / "cric-crops" / "index.csv").write_text(
        "file,cric_cell_id,bethesda,source_image,in_cric_dev\n"
        "ASC-H/2.png,2,ASC-H,fa.png,yes\nHSIL/10.png,10,HSIL,fc.png,no\nLSIL/11.png,11,LSIL,fc.png,no\n"
    )
    return root


def test_cells_of_fields_and_crops_grouped_by_field(tmp_path: Path) -> None:
    cells = read_real_cells(_data_folder(tmp_path))
    assert [(c.group, c.label, c.from_field) for c in cells.cells] == [
        ("fa", "NILM", True),
        ("fa", "ASC-H", True),
        ("fb", "SCC", True),
        ("fc", "HSIL", False),
        ("fc", "LSIL", False),
    ]
    assert list(cells.labels()) == ["NILM", "HSIL", "SCC", "HSIL", "LSIL"]
    assert sorted(cells.fields) == ["fa", "fb"]
    assert cells.counts() == {"NILM": 1, "LSIL": 1, "ASC-H": 1, "HSIL": 1, "SCC": 1}
    assert sorted(cells.points_by_field()) == ["fa", "fb"]


def test_a_crop_of_an_annotated_cell_is_kept_only_on_request(tmp_path: Path) -> None:
    cells = read_real_cells(_data_folder(tmp_path), include_field_duplicates=True)
    assert [c.group for c in cells.cells if not c.from_field] == ["fa", "fc", "fc"]


def test_crops_come_out_at_field_scale_and_fields_are_padded_by_reflection(tmp_path: Path) -> None:
    cells = read_real_cells(_data_folder(tmp_path))
    crop = cell_crop(cells.cells[3], 64, crop_scale=2.0)  # the 100 px crop shrinks to 50 px, padded to 64
    assert crop.shape == (64, 64, 3)
    bright = np.argwhere(crop.max(axis=2) > 100)
    assert bright.min() >= 26
    assert bright.max() <= 37
    corner = cell_crop(cells.cells[2], 32)  # (5, 5): past the border
    assert corner.shape == (32, 32, 3)


def test_written_crops_are_traceable_to_their_field(tmp_path: Path) -> None:
    cells = read_real_cells(_data_folder(tmp_path))
    paths = write_cell_crops(cells, tmp_path / "out", 48)
    assert [p.relative_to(tmp_path / "out").as_posix() for p in paths] == [
        "NILM/fa__1.png", "ASC-H/fa__2.png", "SCC/fb__3.png", "HSIL/fc__10.png", "LSIL/fc__11.png",
    ]  # fmt: skip
    assert all(read_rgb(p).shape == (48, 48, 3) for p in paths)


def test_labels_map_to_four_classes() -> None:
    assert [four_class(label) for label in SIX_LABELS] == ["NILM", "LSIL", "LSIL", "HSIL", "HSIL", "SCC"]
    assert four_class("ASC-H", {"ASC-H": "LSIL"}) == "LSIL"
    with pytest.raises(DatasetError, match="no class"):
        four_class("neutrophil")


def test_a_folder_without_either_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="neither"):
        read_real_cells(tmp_path)
