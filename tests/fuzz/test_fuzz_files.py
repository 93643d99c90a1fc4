"""Fuzzing the files people write by hand or other programs read: only papscreen's own errors may escape.

The settings file and the users file are edited by a lab's IT admin, the annotation CSV comes from another
program or a spreadsheet; a typo must give one clear error, never a traceback. The GeoJSON and CSV exports are
read by QuPath and spreadsheets: whatever the cells, they must be strict JSON and a CSV that reads back the same.
"""

from __future__ import annotations

import csv
import json
import math
import string
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from papscreen.config import Settings, load_settings
from papscreen.dashboard.auth import load_users
from papscreen.datasets.annotations import read_annotations
from papscreen.errors import PapscreenError
from papscreen.imaging.image_io import write_rgb
from papscreen.pipeline.export import cells_geojson, write_cells_csv
from papscreen.pipeline.result import CellTable

CLASSES = ("HSIL", "LSIL", "NILM", "SCC")
T = TypeVar("T")


def outcome(call: Callable[[], T]) -> tuple[T | None, str]:
    """``call``'s result and ``""``, or ``None`` and the message of the project error it raised (a non-empty one:
    it is what a person reads). Any other exception escapes and fails the test."""
    try:
        return call(), ""
    except PapscreenError as e:
        message = str(e).strip()
    if not message:
        raise AssertionError("a refusal must say why")
    return None, message


BCRYPT = "$2b$12$" + "a" * 53

# -- values as a person might type them into TOML -------------------------------------------------------------

_toml_strings = st.text(max_size=30).map(json.dumps)  # a JSON string is a TOML basic string (or a syntax error)
_toml_scalars = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(f), repr(f))
    ),
    st.booleans().map(lambda b: "true" if b else "false"),
    _toml_strings,
    st.sampled_from(["", "[", "{}", "1979-05-27T07:32:00Z", "'single'", '"""multi"""', "0x1F", "1_000"]),
)
_toml_values = st.one_of(_toml_scalars, st.lists(_toml_scalars, max_size=4).map(lambda v: "[" + ", ".join(v) + "]"))
_keys = st.one_of(
    st.sampled_from(sorted(Settings.model_fields)),
    st.text(string.ascii_letters + "_-.", min_size=1, max_size=12),
    st.text(max_size=8).map(json.dumps),
)


def _section_keys(section: str) -> list[str]:
    field = Settings.model_fields.get(section)
    model = getattr(field, "annotation", None)
    return sorted(getattr(model, "model_fields", {})) or ["x"]


@st.composite
def settings_files(draw: st.DrawFn) -> str:
    """A settings file: real sections and keys with values of any type, unknown ones, or plain garbage."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    lines = [f"{draw(_keys)} = {draw(_toml_values)}" for _ in range(draw(st.integers(0, 4)))]
    sections = ["batch", "intake", "limits", "analysis", "grading", "orchestration", "schedules", "retrain", "labels"]
    for section in draw(st.lists(st.sampled_from(sections), max_size=3, unique=True)):
        lines.append(f"[{section}]")
        key = st.one_of(st.sampled_from(_section_keys(section)), _keys)
        lines += [f"{draw(key)} = {draw(_toml_values)}" for _ in range(draw(st.integers(0, 4)))]
    return "\n".join(lines) + "\n"


def _text_file(factory: pytest.TempPathFactory, name: str, text: str) -> Path:
    """``text`` written as a person's editor would, lone surrogates (undecodable bytes) kept as bytes."""
    path = factory.mktemp("file") / name
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    return path


@given(text=settings_files())
def test_a_settings_file_is_read_or_refused_with_a_config_error(tmp_path_factory, text: str) -> None:
    path = _text_file(tmp_path_factory, "papscreen.toml", text)
    settings, refusal = outcome(lambda: load_settings(path))
    assert isinstance(settings, Settings) or refusal


@st.composite
def users_files(draw: st.DrawFn) -> str:
    """A users file: [users.NAME] tables with good, odd or missing hashes and names, or garbage."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.one_of(st.sampled_from(["ann", "bob.smith", "x@lab"]), st.text(max_size=10).map(json.dumps)))
        lines.append(f"[users.{name}]")
        if draw(st.booleans()):
            lines.append(f"password_hash = {draw(st.one_of(st.just(json.dumps(BCRYPT)), _toml_values))}")
        if draw(st.booleans()):
            lines.append(f"display_name = {draw(_toml_values)}")
        if draw(st.integers(0, 4)) == 0:
            lines.append(f"{draw(_keys)} = {draw(_toml_values)}")
    if draw(st.integers(0, 4)) == 0:
        lines.insert(0, f"{draw(_keys)} = {draw(_toml_values)}")
    return "\n".join(lines) + "\n"


@given(text=users_files())
def test_a_users_file_is_read_or_refused_with_a_users_file_error(tmp_path_factory, text: str) -> None:
    path = _text_file(tmp_path_factory, "users.toml", text)
    users, refusal = outcome(lambda: load_users(path))
    assert refusal or all(u.password_hash == BCRYPT for u in users.values())


# -- annotation CSV -------------------------------------------------------------------------------------------

_cells = st.one_of(
    st.sampled_from(["a.png", "missing.png", "../a.png", "/etc/passwd", "images/a.png", "a.PNG", ""]),
    st.sampled_from(["10", "59", "60", "-1", "0", "1e309", "nan", "inf", "3.5", " 7 ", "x", ""]),
    st.sampled_from(["NILM", "LSIL", "HSIL", "SCC", "ASC-US", "ASC-H", "nilm", "other", ""]),
    st.text(max_size=12),
)


@st.composite
def annotation_csvs(draw: st.DrawFn) -> bytes:
    """A CSV as a spreadsheet or another program might write it, or bytes that are no CSV at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    header = draw(st.permutations(["image", "x", "y", "label"]))
    if draw(st.integers(0, 4)) == 0:
        header = draw(st.lists(st.sampled_from(["image", "x", "y", "label", "Image", "X", "", "extra"]), max_size=6))
    rows = [header] + [draw(st.lists(_cells, max_size=6)) for _ in range(draw(st.integers(0, 8)))]
    delimiter = draw(st.sampled_from([",", ",", ";", "\t"]))
    lines = []
    for row in rows:
        quoted = [f'"{c}"' if draw(st.integers(0, 5)) == 0 else c for c in row]
        lines.append(delimiter.join(quoted))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    return newline.join(lines).encode(encoding, errors="replace")


@given(data=annotation_csvs())
def test_an_annotation_csv_gives_good_points_and_problems_or_our_error(tmp_path_factory, data: bytes) -> None:
    folder = tmp_path_factory.mktemp("annotated")
    write_rgb(folder / "images" / "a.png", np.zeros((40, 60, 3), np.uint8))
    (folder / "labels.csv").write_bytes(data)
    found, refusal = outcome(lambda: read_annotations(folder))
    if refusal:
        return
    for point in found.points:
        assert point.label in CLASSES
        assert 0 <= point.x < 60
        assert 0 <= point.y < 40
    assert all(isinstance(p, str) and p for p in found.problems)


# -- exports --------------------------------------------------------------------------------------------------

_probability = st.floats(0, 1, width=32) | st.sampled_from([math.nan, math.inf, -0.0, 1e-45])


@st.composite
def cell_tables(draw: st.DrawFn) -> CellTable:
    n = draw(st.integers(0, 20))
    coordinate = st.floats(-1e9, 1e9, allow_nan=False) | st.sampled_from([math.nan, math.inf])
    xy = np.array([[draw(coordinate), draw(coordinate)] for _ in range(n)], np.float64).reshape(n, 2)
    scores = np.array([draw(_probability) for _ in range(n)], np.float32)
    probabilities = np.array([[draw(_probability) for _ in CLASSES] for _ in range(n)], np.float32).reshape(n, 4)
    return CellTable(xy, scores, probabilities, CLASSES)


@given(cells=cell_tables())
def test_the_geojson_export_is_strict_json_whatever_the_numbers(cells: CellTable) -> None:
    text = json.dumps(cells_geojson(cells), allow_nan=False)  # NaN and Infinity are not JSON: QuPath refuses them
    features = json.loads(text)["features"]
    assert len(features) == len(cells)
    assert [f["properties"]["classification"]["name"] for f in features] == cells.labels


@given(cells=cell_tables())
def test_the_csv_export_reads_back_one_row_per_cell(tmp_path_factory, cells: CellTable) -> None:
    path = tmp_path_factory.mktemp("csv") / "cells.csv"
    write_cells_csv(path, cells)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == cells.labels
    assert [int(r["cell"]) for r in rows] == list(range(len(cells)))
