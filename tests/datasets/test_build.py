"""Building DB_3 and DB_4 from point annotations: split by image, clean and hard background, honest manifests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from papscreen.bethesda import BETHESDA_CLASSES, LEGACY_DB4_FOLDERS
from papscreen.datasets.build import (
    BuildOptions,
    BuildReport,
    _image_rng,
    build_datasets,
    cut_centred,
    split_by_image,
    stage1_window_px,
)
from papscreen.datasets.conventions import MANIFEST_NAME
from papscreen.datasets.fingerprint import fingerprint_index
from papscreen.datasets.layout import read_dataset
from papscreen.datasets.stain import exclusion_mask, nucleus_mask, sample_free_windows
from papscreen.errors import DatasetError
from papscreen.imaging.image_io import read_rgb, write_rgb

WIDTH, HEIGHT, RADIUS = 320, 240, 7
GLASS, CYTOPLASM, NUCLEUS = (238, 236, 240), (232, 196, 204), (90, 60, 140)
CROP = 64


@dataclass(frozen=True)
class Nucleus:
    image: str
    x: int
    y: int
    label: str | None  # None: a nucleus nobody annotated


def _field(nuclei: list[Nucleus], seed: int) -> np.ndarray:
    """Glass with a little noise, pink cytoplasm around each cell, a dark purple disc for each nucleus."""
    rng = np.random.default_rng(seed)
    field = np.clip(np.array(GLASS) + rng.normal(0, 2, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    for n in nuclei:
        cv2.ellipse(field, (n.x, n.y), (22, 16), 30, 0, 360, CYTOPLASM, -1)
    for n in nuclei:
        cv2.circle(field, (n.x, n.y), RADIUS, NUCLEUS, -1)
    return field


def _layout(n_images: int = 8) -> list[Nucleus]:
    """Each image: two annotated NILM, one annotated cell of class i % 4, two unannotated nuclei."""
    nuclei = []
    spots = [(50, 50), (160, 60), (270, 50), (60, 190), (260, 190)]
    for i in range(n_images):
        name = f"field{i:02d}.png"
        labels = ["NILM", "NILM", ["ASC-US", "LSIL", "ASC-H", "SCC"][i % 4], None, None]
        for (x, y), label in zip(spots, labels, strict=True):
            nuclei.append(Nucleus(name, x + 3 * i, y - 2 * i, label))
    return nuclei


def _annotated(folder: Path, nuclei: list[Nucleus], extra_rows: tuple[str, ...] = ()) -> Path:
    images = sorted({n.image for n in nuclei})
    for k, image in enumerate(images):
        write_rgb(folder / "images" / image, _field([n for n in nuclei if n.image == image], seed=k))
    rows = [f"{n.image},{n.x},{n.y},{n.label}" for n in nuclei if n.label is not None]
    (folder / "labels.csv").write_text("\n".join(["image,x,y,label", *rows, *extra_rows]) + "\n")
    return folder


def _build(tmp_path: Path, name: str = "out", **kwargs: object) -> BuildReport:
    return build_datasets(tmp_path / "annotated", tmp_path / name, crop_px=CROP, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildReport]:
    root = tmp_path_factory.mktemp("build")
    _annotated(root / "annotated", _layout())
    return root, _build(root, hard_background_fraction=0.5)


def _manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST_NAME).read_text())


# -- the split ---------------------------------------------------------------------------------------------------


def test_split_is_by_image(built: tuple[Path, BuildReport]) -> None:
    _, report = built
    train, validation = set(report.split["train"]), set(report.split["validation"])
    assert not train & validation
    assert train | validation == {f"field{i:02d}.png" for i in range(8)}
    for dataset in (report.db3_dir, report.db4_dir):
        index = read_dataset(dataset)
        for split, images in report.split.items():
            stems = {s.path.name.rsplit("_", 1)[0] + ".png" for s in index.splits[split]}
            assert stems <= set(images)


def test_every_class_reaches_validation(built: tuple[Path, BuildReport]) -> None:
    _, report = built
    assert all(report.db4_counts["validation"][c] > 0 for c in BETHESDA_CLASSES)
    assert all(report.db4_counts["train"][c] > 0 for c in BETHESDA_CLASSES)


def test_same_seed_same_datasets(built: tuple[Path, BuildReport], tmp_path: Path) -> None:
    root, first = built
    again = build_datasets(root / "annotated", tmp_path / "again", crop_px=CROP, hard_background_fraction=0.5)
    assert again.split == first.split
    assert (again.db3_fingerprint, again.db4_fingerprint) == (first.db3_fingerprint, first.db4_fingerprint)


@pytest.mark.parametrize("seed", [0, 1, 7, 123], ids=lambda s: f"seed{s}")
def test_split_by_image_is_deterministic_and_order_free(seed: int) -> None:
    counts = {f"im{i}": {"NILM": 5 + i % 3, "LSIL": i % 2, "SCC": int(i % 4 == 0)} for i in range(12)}
    split = split_by_image(counts, 0.25, seed)
    assert split == split_by_image(dict(sorted(counts.items(), reverse=True)), 0.25, seed)
    assert sorted(split["train"] + split["validation"]) == sorted(counts)
    assert not set(split["train"]) & set(split["validation"])
    for name in ("LSIL", "SCC"):
        assert sum(counts[i].get(name, 0) for i in split["validation"]) > 0


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.3, 0.5], ids=lambda f: f"val{f}")
def test_split_fraction_is_close_for_each_class(fraction: float) -> None:
    rng = np.random.default_rng(0)
    counts = {f"im{i}": {"NILM": int(rng.integers(5, 30)), "HSIL": int(rng.integers(0, 4))} for i in range(40)}
    split = split_by_image(counts, fraction, seed=0)
    for name in ("NILM", "HSIL"):
        total = sum(c[name] for c in counts.values())
        share = sum(counts[i][name] for i in split["validation"]) / total
        assert abs(share - fraction) < 0.03


def test_split_of_one_image_keeps_it_for_training() -> None:
    assert split_by_image({"only": {"NILM": 3}}, 0.2, 0) == {"train": ("only",), "validation": ()}


# -- patches -----------------------------------------------------------------------------------------------------


def test_clear_background_is_far_from_points_and_every_nucleus(built: tuple[Path, BuildReport]) -> None:
    _, report = built
    manifest = _manifest(report.db3_dir)
    window = manifest["window_px"]
    clearance = manifest["background"]["point_clearance_px"]
    nuclei = _layout()
    backgrounds = [s for s in manifest["samples"] if s["label"] == "background"]
    assert len(backgrounds) == sum(report.db3_counts[s]["background"] for s in report.db3_counts) > 0
    clear = [s for s in backgrounds if s["kind"] == "clear"]
    assert clear
    for sample in clear:
        top, left = sample["top"], sample["left"]
        for n in (n for n in nuclei if n.image == sample["image"]):
            dx = max(left - n.x, 0, n.x - (left + window - 1))
            dy = max(top - n.y, 0, n.y - (top + window - 1))
            distance = float(np.hypot(dx, dy))
            assert distance > RADIUS, f"{sample['file']} overlaps a nucleus at ({n.x}, {n.y})"
            if n.label is not None:
                assert distance > clearance, f"{sample['file']} is too close to an annotated point"
        patch = read_rgb(report.db3_dir / sample["file"])
        assert patch.shape == (20, 20, 3)
        assert patch.min() > 150, f"{sample['file']} holds something dark"


def test_hard_background_has_a_clear_centre_and_may_hold_stain(built: tuple[Path, BuildReport]) -> None:
    _, report = built
    manifest = _manifest(report.db3_dir)
    window = manifest["window_px"]
    hard = [s for s in manifest["samples"] if s["label"] == "background" and s["kind"] == "hard"]
    assert len(hard) == report.hard_background == manifest["background"]["hard"]["patches"] > 0
    assert manifest["background"]["hard_fraction"] == 0.5
    holding_stain = 0
    for sample in hard:
        cy, cx = sample["top"] + window // 2, sample["left"] + window // 2
        for n in (n for n in _layout() if n.image == sample["image"]):
            distance = float(np.hypot(n.x - cx, n.y - cy))
            # Annotated or not, no nucleus pixel lies within window / 4 of the centre ...
            assert distance > RADIUS + window // 4, f"{sample['file']} has a nucleus at its centre"
            # ... and no annotated point within window / 2.
            if n.label is not None:
                assert distance > window // 2, f"{sample['file']} is centred too close to a cell"
        patch = read_rgb(report.db3_dir / sample["file"])
        holding_stain += bool(patch.min() < 215)  # glass is ~238 in every channel, cytoplasm's green 196
    assert holding_stain > 0, "no hard patch shows stain: they are no harder than glass"


def test_hard_background_does_not_overlap_other_background(built: tuple[Path, BuildReport]) -> None:
    _, report = built
    manifest = _manifest(report.db3_dir)
    window = manifest["window_px"]
    by_image: dict[str, list[tuple[int, int]]] = {}
    for s in manifest["samples"]:
        if s["label"] == "background":
            by_image.setdefault(s["image"], []).append((s["top"], s["left"]))
    for image, windows in by_image.items():
        for i, (top, left) in enumerate(windows):
            assert 0 <= top <= HEIGHT - window, f"outside {image}"
            assert 0 <= left <= WIDTH - window, f"outside {image}"
            for other in windows[:i]:
                assert abs(top - other[0]) >= window or abs(left - other[1]) >= window, f"overlap in {image}"


def _glass_only_windows(folder: Path, report: BuildReport, options: BuildOptions) -> dict[str, list[tuple[int, int]]]:
    """The background windows of the build before hard background existed: clear windows only, all of them."""
    by_image: dict[str, list[tuple[float, float]]] = {}
    for line in (folder / "labels.csv").read_text().splitlines()[1:]:
        image, x, y, _ = line.split(",")
        by_image.setdefault(image, []).append((float(x), float(y)))
    expected = {}
    for images in report.split.values():
        for image in images:  # the layout leaves room for every wanted window, so nothing is carried over
            excluded = exclusion_mask(
                nucleus_mask(read_rgb(folder / "images" / image)),
                by_image[image],
                margin_px=options.margin_px,
                point_radius_px=options.point_radius_px,
            )
            wanted = len(by_image[image])
            expected[image] = sample_free_windows(excluded, options.window_px, wanted, _image_rng(options.seed, image))
    return expected


@pytest.mark.parametrize("explicit", [True, False], ids=["fraction-0", "default"])
def test_fraction_zero_reproduces_glass_only_background(
    built: tuple[Path, BuildReport], tmp_path: Path, explicit: bool
) -> None:
    root, with_hard = built
    kwargs = {"hard_background_fraction": 0.0} if explicit else {}
    report = build_datasets(root / "annotated", tmp_path / "zero", crop_px=CROP, **kwargs)  # type: ignore[arg-type]
    manifest = _manifest(report.db3_dir)
    backgrounds = [s for s in manifest["samples"] if s["label"] == "background"]
    assert report.hard_background == manifest["background"]["hard"]["patches"] == 0
    assert all(s["kind"] == "clear" and "_bg" in s["file"] for s in backgrounds)
    got: dict[str, list[tuple[int, int]]] = {}
    for s in backgrounds:
        got.setdefault(s["image"], []).append((s["top"], s["left"]))
    assert got == _glass_only_windows(root / "annotated", report, BuildOptions(crop_px=CROP))
    assert report.db3_fingerprint != with_hard.db3_fingerprint
    assert report.db4_fingerprint == with_hard.db4_fingerprint
    # With hard background the clear windows are the first ones drawn without it, the same files.
    first_clear = {
        s["file"]: (s["top"], s["left"])
        for s in _manifest(with_hard.db3_dir)["samples"]
        if s["label"] == "background" and s["kind"] == "clear"
    }
    zero = {s["file"]: (s["top"], s["left"]) for s in backgrounds}
    assert first_clear
    assert all(zero[f] == where for f, where in first_clear.items())


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0], ids=lambda f: f"fraction{f}")
def test_hard_background_is_deterministic_for_a_seed(fraction: float, tmp_path: Path) -> None:
    _annotated(tmp_path / "annotated", _layout(4))
    first = _build(tmp_path, "first", hard_background_fraction=fraction)
    again = _build(tmp_path, "again", hard_background_fraction=fraction)
    other = _build(tmp_path, "other", hard_background_fraction=fraction, seed=5)
    assert first.db3_fingerprint == again.db3_fingerprint
    assert first.db3_fingerprint != other.db3_fingerprint
    for split in ("train", "validation"):
        assert first.db3_counts[split]["background"] == first.db3_counts[split]["cell"]
    total = sum(first.db3_counts[s]["background"] for s in first.db3_counts)
    assert first.hard_background == round(total * fraction) if fraction in (0.0, 1.0) else first.hard_background > 0


def test_backgrounds_balance_the_cells(built: tuple[Path, BuildReport]) -> None:
    _, report = built
    for split in ("train", "validation"):
        assert report.db3_counts[split]["background"] == report.db3_counts[split]["cell"]
    assert report.background_shortfall == 0


def test_unannotated_nuclei_are_found_by_the_blob_mask() -> None:
    nuclei = [Nucleus("x", 100, 100, None), Nucleus("x", 200, 150, "NILM")]
    mask = nucleus_mask(_field(nuclei, seed=0))
    assert mask[100, 100]
    assert mask[150, 200]
    assert not mask[20, 20]


def test_pale_nucleus_inside_cytoplasm_is_masked() -> None:
    field = np.full((120, 120, 3), GLASS, np.uint8)
    cv2.ellipse(field, (60, 60), (40, 30), 0, 0, 360, CYTOPLASM, -1)
    cv2.circle(field, (60, 60), 8, (195, 165, 190), -1)  # faint, but darker than its cytoplasm
    mask = nucleus_mask(field)
    assert mask[60, 60]
    assert not mask[5, 5]


def test_cells_and_crops_are_centred_on_the_point(built: tuple[Path, BuildReport]) -> None:
    root, report = built
    manifest = _manifest(report.db4_dir)
    sample = next(s for s in manifest["samples"] if not any(s["padding"]))
    crop = read_rgb(report.db4_dir / sample["file"])
    field = read_rgb(root / "annotated" / "images" / sample["image"])
    assert crop.shape == (CROP, CROP, 3)
    top, left = int(sample["y"]) - CROP // 2, int(sample["x"]) - CROP // 2
    assert np.array_equal(crop, field[top : top + CROP, left : left + CROP])
    cell = read_rgb(report.db3_dir / sample["file"].replace(sample["label"], "cell"))
    assert cell.shape == (20, 20, 3)
    assert tuple(cell[10, 10]) == NUCLEUS


def test_border_crops_are_padded_by_reflection_and_recorded(tmp_path: Path) -> None:
    nuclei = [Nucleus(f"f{i}.png", 4, 120, "NILM") for i in range(2)] + [Nucleus("f0.png", 160, 120, "HSIL")]
    _annotated(tmp_path / "annotated", nuclei)
    report = _build(tmp_path)
    manifest = _manifest(report.db4_dir)
    padded = [s for s in manifest["samples"] if any(s["padding"])]
    assert sorted(manifest["padded_by_reflection"]) == sorted(s["file"] for s in padded)
    assert {tuple(s["padding"]) for s in padded} == {(0, 0, CROP // 2 - 4, 0)}
    crop = read_rgb(report.db4_dir / padded[0]["file"])
    pad = CROP // 2 - 4
    assert np.array_equal(crop[:, pad - 1], crop[:, pad + 1])  # a mirror around the border column
    assert report.padded == len(padded) + len(_manifest(report.db3_dir)["padded_by_reflection"])


@pytest.mark.parametrize(
    ("x", "y", "pads"),
    [(50.0, 40.0, (0, 0, 0, 0)), (0.0, 0.0, (8, 0, 8, 0)), (99.9, 79.5, (0, 7, 0, 7)), (3.7, 40.0, (0, 0, 5, 0))],
    ids=["inside", "top-left-corner", "bottom-right-corner", "left-edge-fractional"],
)
def test_cut_centred(x: float, y: float, pads: tuple[int, int, int, int]) -> None:
    field = np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    crop, got = cut_centred(field, x, y, 16)
    assert crop.shape == (16, 16, 3)
    assert got == pads
    assert np.array_equal(crop[8, 8], field[int(y), int(x)])


# -- layouts and manifests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("numbered", [False, True], ids=["named", "numbered"])
def test_outputs_read_back_with_the_same_counts_and_fingerprints(tmp_path: Path, numbered: bool) -> None:
    _annotated(tmp_path / "annotated", _layout(4))
    report = _build(tmp_path, numbered=numbered)
    db3, db4 = read_dataset(report.db3_dir, verify=True), read_dataset(report.db4_dir, verify=True)
    assert (db3.kind, db4.kind) == ("DB_3", "DB_4")
    assert db4.scheme == ("numbered" if numbered else "named")
    folders = {p.name for p in (report.db4_dir / "train").iterdir()}
    assert folders == (set(LEGACY_DB4_FOLDERS) if numbered else set(BETHESDA_CLASSES))
    assert db4.counts() == report.db4_counts
    assert db3.counts() == report.db3_counts
    assert fingerprint_index(db3) == report.db3_fingerprint
    assert fingerprint_index(db4) == report.db4_fingerprint


def test_manifest_says_how_the_data_was_made(built: tuple[Path, BuildReport]) -> None:
    root, report = built
    db3, db4 = _manifest(report.db3_dir), _manifest(report.db4_dir)
    for manifest in (db3, db4):
        assert manifest["source"] == str((root / "annotated").resolve())
        assert manifest["source_fingerprint"] == report.source_fingerprint
        assert manifest["seed"] == 0
        assert manifest["stage1_scale"] == 0.5
        assert manifest["split"] == {k: list(v) for k, v in report.split.items()}
        assert manifest["label_mapping"]["extra_label_map"] == {"ASC-US": "LSIL", "ASC-H": "HSIL"}
        assert {"source_label": "ASC-US", "class": "LSIL", "cells": 2} in manifest["label_mapping"]["used"]
        assert manifest["problems"] == []
    assert (db3["kind"], db3["window_px"], db3["input_px"]) == ("DB_3", 40, 20)
    assert db3["counts"] == report.db3_counts
    assert (db4["kind"], db4["crop_px"]) == ("DB_4", CROP)
    assert db4["counts"] == report.db4_counts
    assert db4["fingerprint"] == report.db4_fingerprint


# -- bad input ---------------------------------------------------------------------------------------------------


def _damaged(tmp_path: Path) -> Path:
    """Good fields plus: a truncated image, a row outside its image, a non-image file, an unknown label."""
    nuclei = [*_layout(4), Nucleus("broken.png", 100, 100, "HSIL")]
    folder = _annotated(
        tmp_path / "annotated",
        nuclei,
        extra_rows=("field00.png,400,10,NILM", "field01.png,30,30,koilocyte-ish"),
    )
    broken = folder / "images" / "broken.png"
    broken.write_bytes(broken.read_bytes()[:200])
    (folder / "images" / "readme.txt").write_text("not an image")
    return folder


def test_bad_input_is_reported_and_the_build_goes_on(tmp_path: Path) -> None:
    folder = _damaged(tmp_path)
    report = _build(tmp_path)
    csv = folder / "labels.csv"
    text = "\n".join(report.problems)
    assert f"{folder / 'images' / 'readme.txt'}: not an image file (.txt); skipped" in text
    assert f"{csv}, line 15: point (400, 10) is outside field00.png (320x240 pixels)" in text
    assert f"{csv}, line 16: label 'koilocyte-ish' is not one of" in text
    assert f"{folder / 'images' / 'broken.png'}: image data is truncated" in text
    assert "(CSV lines 14)" in text
    assert sum(sum(c.values()) for c in report.db4_counts.values()) == 12
    assert _manifest(report.db4_dir)["problems"] == list(report.problems)


def test_strict_stops_before_writing_anything(tmp_path: Path) -> None:
    _damaged(tmp_path)
    with pytest.raises(DatasetError, match=r"4 problem\(s\), nothing written \(strict\)"):
        _build(tmp_path, strict=True)
    assert not (tmp_path / "out").exists()


def test_refuses_a_non_empty_output_unless_overwrite(tmp_path: Path) -> None:
    _annotated(tmp_path / "annotated", _layout(2))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        _build(tmp_path)
    _build(tmp_path, overwrite=True)
    first = read_dataset(out / "DB_4").counts()
    (out / "DB_4" / "train" / "stale.txt").write_text("old")
    _build(tmp_path, overwrite=True, seed=3)
    assert (out / "keep.txt").read_text() == "mine"
    assert not (out / "DB_4" / "train" / "stale.txt").exists()
    assert sum(map(sum, (c.values() for c in read_dataset(out / "DB_4").counts().values()))) == sum(
        map(sum, (c.values() for c in first.values()))
    )
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_no_usable_point_is_an_error(tmp_path: Path) -> None:
    _annotated(tmp_path / "annotated", [Nucleus("a.png", 10, 10, None)], extra_rows=("a.png,999,1,NILM",))
    with pytest.raises(DatasetError, match=r"no usable annotated point; first problem: .*line 2"):
        _build(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_px": 1}, "crop_px"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"stage1_scale": 0.0}, "stage1_scale"),
        ({"stage1_scale": 20.0}, "under 2 px"),
        ({"background_per_image": -1}, "background_per_image"),
        ({"hard_background_fraction": -0.1}, "hard_background_fraction"),
        ({"hard_background_fraction": 1.5}, "hard_background_fraction"),
    ],
    ids=[
        "tiny-crop",
        "no-validation",
        "all-validation",
        "zero-scale",
        "huge-scale",
        "negative-background",
        "negative-hard",
        "hard-over-one",
    ],
)
def test_options_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BuildOptions(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("scale", "window"), [(0.5, 40), (0.25, 80), (1 / 3, 60), (1.0, 20)], ids=str)
def test_stage1_window(scale: float, window: int) -> None:
    assert stage1_window_px(scale) == window


def test_build_from_a_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative annotated folder (``papscreen dataset build ../data/x``) must not be joined onto itself."""
    folder = tmp_path / "data" / "annotated"
    write_rgb(folder / "images" / "a.png", np.full((120, 120, 3), 240, np.uint8))
    (folder / "labels.csv").write_text("image,x,y,label\na.png,60,60,NILM\n")
    monkeypatch.chdir(tmp_path / "data")
    report = build_datasets(Path("annotated"), tmp_path / "out", crop_px=32, val_fraction=0.5)
    assert report.db4_fingerprint


# -- abnormal nuclei repeated in DB_3 ---------------------------------------------------------------------------


def test_abnormal_repeat_adds_shifted_cell_patches_of_abnormal_nuclei_only(
    built: tuple[Path, BuildReport], tmp_path: Path
) -> None:
    root, plain = built
    report = build_datasets(
        root / "annotated", tmp_path / "repeat", crop_px=CROP, hard_background_fraction=0.5, abnormal_repeat=3
    )
    abnormal = sum(n for counts in plain.db4_counts.values() for c, n in counts.items() if c != "NILM")
    cells = {split: plain.db3_counts[split]["cell"] for split in plain.db3_counts}
    assert sum(report.db3_counts[s]["cell"] for s in cells) == sum(cells.values()) + 2 * abnormal
    assert report.db4_counts == plain.db4_counts  # DB_4 is untouched
    manifest = _manifest(report.db3_dir)
    assert manifest["abnormal_repeat"] == 3
    repeats = [row for row in manifest["samples"] if row.get("repeat")]
    assert len(repeats) == 2 * abnormal
    window = stage1_window_px(BuildOptions().stage1_scale)
    originals = {(r["image"], r["line"]): r for r in manifest["samples"] if "line" in r and not r.get("repeat")}
    for row in repeats:
        origin = originals[(row["image"], row["line"])]
        assert max(abs(row["x"] - origin["x"]), abs(row["y"] - origin["y"])) <= 0.1 * window


def test_abnormal_repeat_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="abnormal_repeat"):
        BuildOptions(abnormal_repeat=0)
