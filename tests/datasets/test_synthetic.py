"""The synthetic data generator: layout and counts, determinism, ground truth, learnable-but-not-trivial classes.

One ``small`` generation is shared by the module; the CLI test makes a second one with the same seed and
compares every file byte for byte. Cheaper checks (overwrite, another seed) shrink the plan to a few items.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from papscreen.bethesda import BETHESDA_CLASSES, LEGACY_DB4_FOLDERS
from papscreen.cli import app
from papscreen.datasets.conventions import MANIFEST_NAME, SPLITS, STAGE1_INPUT_PX
from papscreen.datasets.synthetic import (
    GENERATOR_VERSION,
    MIN_NUCLEUS_GAP,
    SCALE_PLANS,
    ScalePlan,
    SyntheticSummary,
    generate_synthetic,
    render_cell_crop,
    render_field,
    render_stage1_patches,
)
from papscreen.errors import DatasetError
from papscreen.imaging.image_io import read_rgb

SMALL = SCALE_PLANS["small"]
TINY = ScalePlan({"train": 2, "validation": 1}, {"train": 1, "validation": 1}, 1)
FOLDER_OF = {label: folder for folder, label in LEGACY_DB4_FOLDERS.items()}
runner = CliRunner()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticSummary]:
    out = tmp_path_factory.mktemp("synthetic") / "out"
    return out, generate_synthetic(out, seed=0, scale="small")


@pytest.fixture
def tiny_plan(monkeypatch: pytest.MonkeyPatch) -> ScalePlan:
    """Shrink ``small`` to a handful of items for tests about the writer rather than the images."""
    monkeypatch.setitem(SCALE_PLANS, "small", TINY)  # type: ignore[arg-type]
    return TINY


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _disc_mean(grey: np.ndarray, x: float, y: float, radius: float = 5.0) -> float:
    ys, xs = np.mgrid[0 : grey.shape[0], 0 : grey.shape[1]]
    return float(grey[(xs - x) ** 2 + (ys - y) ** 2 <= radius**2].mean())


# --- layout, counts, manifests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "split", "folder", "expected", "side"),
    [
        *[("DB_3", s, c, SMALL.db3_per_class[s], STAGE1_INPUT_PX) for s in SPLITS for c in ("cell", "background")],
        *[("DB_4", s, FOLDER_OF[label], SMALL.db4_per_class[s], 250) for s in SPLITS for label in BETHESDA_CLASSES],
    ],
    ids=lambda v: str(v),
)
def test_layout_and_counts(small, dataset: str, split: str, folder: str, expected: int, side: int) -> None:
    out, _ = small
    files = sorted((out / dataset / split / folder).iterdir())
    assert [p.name for p in files] == [f"{i:05d}.png" for i in range(expected)]
    assert read_rgb(files[0]).shape == (side, side, 3)


def test_summary_matches_plan(small) -> None:
    _, summary = small
    assert summary.db3 == {s: {"background": SMALL.db3_per_class[s], "cell": SMALL.db3_per_class[s]} for s in SPLITS}
    assert summary.db4 == {s: dict.fromkeys(BETHESDA_CLASSES, SMALL.db4_per_class[s]) for s in SPLITS}
    assert summary.n_fields == SMALL.n_fields


def test_fields_and_labels_csv(small) -> None:
    out, summary = small
    images = sorted((out / "fields" / "images").iterdir())
    assert [p.name for p in images] == [f"field_{i:04d}.png" for i in range(SMALL.n_fields)]
    with (out / "fields" / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["image", "x", "y", "label"]
    sizes = {p.name: read_rgb(p).shape[:2] for p in images}
    assert set(sizes.values()) == {(1536, 2048)}
    for row in rows:
        height, width = sizes[row["image"]]
        assert 0 <= float(row["x"]) < width
        assert 0 <= float(row["y"]) < height
        assert row["label"] in BETHESDA_CLASSES
        assert len(row["x"].split(".")[1]) == 1
    per_image = {name: {r["label"] for r in rows if r["image"] == name} for name in sizes}
    assert per_image["field_0000.png"] == {"NILM"}, "the first field is a negative one"
    assert any(labels - {"NILM"} for labels in per_image.values()), "some fields carry abnormal cells"
    assert {label: sum(r["label"] == label for r in rows) for label in BETHESDA_CLASSES} == summary.field_cells


def test_objects_csv_lists_inflammatory_cells_too(small) -> None:
    out, summary = small
    with (out / "fields" / "objects.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["image", "x", "y", "kind", "label"]
    kinds = [r["kind"] for r in rows]
    assert kinds.count("squamous") == sum(summary.field_cells.values())
    assert kinds.count("inflammatory") == summary.field_inflammatory > 0


@pytest.mark.parametrize("where", [".", "DB_3", "DB_4"], ids=["top", "DB_3", "DB_4"])
def test_manifests(small, where: str) -> None:
    out, _ = small
    manifest = json.loads((out / where / MANIFEST_NAME).read_text())
    assert manifest["generator"]["version"] == GENERATOR_VERSION
    assert (manifest["seed"], manifest["scale"]) == (0, "small")
    assert manifest["created_by"] == "papscreen synth --seed 0 --scale small"
    text = json.dumps(manifest).lower()
    assert "time" not in text
    assert "date" not in text
    assert str(out) not in text
    if where == "DB_3":
        assert manifest["stage1"] == {"working_scale": 0.5, "window_px": 40, "input_px": 20}
    if where == "DB_4":
        assert manifest["folders"] == dict(LEGACY_DB4_FOLDERS)
        assert manifest["crop_px"] == 250


# --- the command line, determinism, refusing to mix data ----------------------------------------------------------


def test_cli_writes_identical_files_and_refuses_to_overwrite(small, tmp_path: Path) -> None:
    out, _ = small
    again = tmp_path / "again"
    result = runner.invoke(app, ["synth", "--out", str(again), "--scale", "small"])
    assert result.exit_code == 0, result.output
    assert "HSIL (folder 1)" in result.output
    assert "┃ Count ┃" in result.output
    assert _files(again) == _files(out), "the same seed must give byte-identical files"

    refused = runner.invoke(app, ["synth", "--out", str(again)])
    assert refused.exit_code != 0
    assert "already holds" in refused.output
    assert "--overwrite" in refused.output
    assert "Traceback" not in refused.output


def test_another_seed_gives_other_data(tiny_plan: ScalePlan, tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "a", seed=1)
    generate_synthetic(tmp_path / "b", seed=2)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    images = [name for name in a if name.endswith(".png")]
    assert all(a[name] != b[name] for name in images)


def test_refuses_non_empty_output_unless_overwrite(tiny_plan: ScalePlan, tmp_path: Path) -> None:
    stale = tmp_path / "DB_3" / "train" / "cell" / "stale.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    with pytest.raises(DatasetError, match="already holds DB_3"):
        generate_synthetic(tmp_path)
    assert stale.exists(), "a refusal must not delete anything"
    (tmp_path / "notes.txt").write_text("mine")
    generate_synthetic(tmp_path, overwrite=True)
    assert not stale.exists(), "overwrite replaces the old dataset instead of mixing"
    assert (tmp_path / "notes.txt").read_text() == "mine", "files the generator did not write are left alone"
    assert len(list((tmp_path / "DB_3" / "train" / "cell").iterdir())) == tiny_plan.db3_per_class["train"]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda p: p.write_text("x"), DatasetError),
        (lambda p: None, ValueError),
    ],
    ids=["out-is-a-file", "unknown-scale"],
)
def test_bad_arguments(tmp_path: Path, make, error: type[Exception]) -> None:
    target = tmp_path / "out"
    make(target)
    with pytest.raises(error):
        generate_synthetic(target, scale="huge" if error is ValueError else "small")  # type: ignore[arg-type]


# --- ground truth in fields ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_field_truth_is_on_the_nuclei(seed: int) -> None:
    composition = {"NILM": 14, "LSIL": 2, "HSIL": 2, "SCC": 2}
    field = render_field(np.random.default_rng(seed), composition, width=1024, height=768)
    assert field.rgb.shape == (768, 1024, 3)
    assert {label: sum(c.label == label for c in field.cells) for label in composition} == composition
    grey = _grey(field.rgb)
    median = float(np.median(grey))
    for cell in field.cells:
        assert _disc_mean(grey, cell.x, cell.y) < 0.75 * median, f"{cell} is not on a dark nucleus"
        # The nucleus's darkness is centred on the annotated point.
        r = cell.nucleus_radius + 3
        ys, xs = np.mgrid[0 : grey.shape[0], 0 : grey.shape[1]]
        weight = np.clip(median - grey, 0, None) ** 2 * ((xs - cell.x) ** 2 + (ys - cell.y) ** 2 <= r * r)
        centroid = np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()
        assert np.hypot(*(centroid - (cell.x, cell.y))) < 3.0, cell
    points = np.array([(c.x, c.y) for c in field.cells])
    gaps = np.hypot(*(points[:, None] - points[None]).transpose(2, 0, 1)) + np.eye(len(points)) * 1e9
    assert gaps.min() >= MIN_NUCLEUS_GAP
    assert all(c.kind == "squamous" for c in field.cells)
    assert all(o.kind == "inflammatory" for o in field.others)


def test_near_empty_field() -> None:
    field = render_field(np.random.default_rng(0), {}, width=800, height=600)
    assert field.cells == []
    assert field.rgb.shape == (600, 800, 3)
    assert np.median(_grey(field.rgb)) > 180, "mostly clear glass"


@pytest.mark.parametrize(
    "composition",
    [{"ASC-US": 1}, {"NILM": -1}, {"NILM": 1.5}],
    ids=["unknown-class", "negative", "fractional"],
)
def test_render_field_rejects_bad_composition(composition) -> None:
    with pytest.raises(ValueError, match=r"NILM|ASC-US"):
        render_field(np.random.default_rng(0), composition, width=300, height=300)


def test_render_field_refuses_more_cells_than_fit() -> None:
    with pytest.raises(ValueError, match="cannot place"):
        render_field(np.random.default_rng(0), {"NILM": 200}, width=200, height=200)


# --- samples -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", BETHESDA_CLASSES)
def test_cell_crop_is_centred_on_a_nucleus(label: str) -> None:
    for seed in range(3):
        crop = render_cell_crop(np.random.default_rng(seed), label)
        grey = _grey(crop)
        assert crop.shape == (250, 250, 3)
        assert _disc_mean(grey, 125, 125) < 0.75 * float(np.median(grey))


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: render_cell_crop(np.random.default_rng(seed), "SCC"),
        lambda seed: np.concatenate(render_stage1_patches(np.random.default_rng(seed), 3, 3)),
        lambda seed: render_field(np.random.default_rng(seed), {"NILM": 3, "HSIL": 1}, width=400, height=300).rgb,
    ],
    ids=["crop", "stage1", "field"],
)
def test_pure_functions_are_deterministic(make) -> None:
    assert np.array_equal(make(7), make(7))
    assert not np.array_equal(make(7), make(8))


def test_stage1_patches() -> None:
    cells, background = render_stage1_patches(np.random.default_rng(0), 24, 30)
    assert cells.shape == (24, 20, 20, 3)
    assert background.shape == (30, 20, 20, 3)
    assert cells.dtype == background.dtype == np.uint8
    centre = np.s_[:, 7:13, 7:13]
    cell_dark = 255 - cells[centre].mean(axis=(1, 2, 3))
    background_dark = 255 - background[centre].mean(axis=(1, 2, 3))
    assert cell_dark.mean() > 2 * background_dark.mean(), "cell patches have a nucleus in the middle"
    # Hard negatives: some background patches hold something dark (neutrophils, debris).
    assert (background.reshape(30, -1).min(axis=1) < 120).sum() >= 3


# --- learnable but not trivial -----------------------------------------------------------------------------------


def _crop_features(rgb: np.ndarray) -> np.ndarray:
    """Three hand-made features: nucleus size (sqrt of the dark blob's area), centre darkness, surround darkness."""
    grey = _grey(rgb)
    mask = (grey < 0.72 * np.median(grey)).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask)
    blob = labels[125, 125]
    area = float((labels == blob).sum()) if blob else 0.0
    ys, xs = np.mgrid[0:250, 0:250]
    distance = np.hypot(xs - 125, ys - 125)
    surround = 255 - float(grey[(distance > 25) & (distance < 60)].mean())
    return np.array([np.sqrt(area), 255 - _disc_mean(grey, 125, 125), surround])


def _best_threshold_accuracy(values: np.ndarray, labels: np.ndarray) -> float:
    """Best accuracy of cutting one feature into four intervals, one per class, in any class order."""
    order = np.argsort(values, kind="stable")
    ranked = labels[order]
    best = 0.0
    for perm in itertools.permutations(range(4)):
        counts = np.array([np.concatenate([[0], np.cumsum(ranked == k)]) for k in perm])
        score = counts[0]
        for k in range(1, 4):
            score = np.maximum.accumulate(score - counts[k]) + counts[k]
        best = max(best, float(score[-1]) / len(ranked))
    return best


def test_classes_are_separable_but_not_trivially(small) -> None:
    out, _ = small
    features, labels = [], []
    for split in SPLITS:
        for index, label in enumerate(BETHESDA_CLASSES):
            for path in sorted((out / "DB_4" / split / FOLDER_OF[label]).iterdir()):
                features.append(_crop_features(read_rgb(path)))
                labels.append(index)
    x, y = np.array(features), np.array(labels)
    mean = {label: x[y == i].mean(axis=0) for i, label in enumerate(BETHESDA_CLASSES)}

    size, darkness = 0, 1
    assert mean["NILM"][size] < mean["HSIL"][size]
    assert mean["NILM"][size] < mean["LSIL"][size]
    assert mean["NILM"][darkness] < mean["HSIL"][darkness] < mean["SCC"][darkness]
    assert mean["LSIL"][darkness] < mean["HSIL"][darkness]

    single = [_best_threshold_accuracy(x[:, f], y) for f in range(x.shape[1])]
    assert max(single) < 0.8, f"one feature alone separates the classes: {single}"

    z = (x - x.mean(axis=0)) / x.std(axis=0)
    centroids = np.array([z[y == i].mean(axis=0) for i in range(4)])
    combined = float((np.argmin(((z[:, None] - centroids[None]) ** 2).sum(-1), axis=1) == y).mean())
    assert combined > max(single) + 0.1, f"features together ({combined:.2f}) should beat any one ({single})"
