"""The slide report as files: a PDF a lab can file (parsed back here), CSV and JSON with the same facts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from papscreen.cli import app
from papscreen.db import migrate, queries
from papscreen.db.database import Database
from papscreen.db.queries.report import slide_report
from papscreen.reports import report_csv, report_json, report_pdf
from tests.db.test_slide_view_queries import seed_models, seed_slide


@pytest.fixture
def slide_id(database: Database, tmp_path: Path) -> int:
    models = seed_models(database)
    with database.session() as s:
        queries.record_data_provenance(s, models[1], "synthetic")  # as the retraining notes a demo model
    return seed_slide(database, models=models, results_dir=tmp_path / "results")


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _report(database: Database, slide_id: int):
    with database.session() as s:
        return slide_report(s, slide_id)


def test_a_report_before_sign_out_says_preliminary_and_names_its_models(database: Database, slide_id: int) -> None:
    report = _report(database, slide_id)
    assert not report.final
    text = _text(report_pdf(report))
    assert "PRELIMINARY: not signed out" in text
    assert "case-017.svs" in text
    assert "HSIL: 12 cells graded HSIL or worse" in text  # the machine's verdict with its reason
    assert "s2-test (resnet50); trained on synthetic demo data: not for diagnosis" in text
    assert "s1-test (cnn20plus); trained on data not recorded on its card" in text
    assert f"#{report.gallery[0].cell_id} HSIL 0.95" in text  # the gallery, worst first, by cell id
    assert len(report.gallery) == 5


def test_a_signed_out_report_is_final_with_its_trail(database: Database, slide_id: int) -> None:
    with database.session() as s:
        queries.sign_out(
            s, slide_id, interpretation="ASC-H", user="ann", role="cytotechnologist", require_gallery_viewed=False
        )
        queries.sign_out(
            s,
            slide_id,
            interpretation="HSIL",
            user="dr_p",
            role="pathologist",
            comment="agree",
            require_gallery_viewed=False,
        )
    report = _report(database, slide_id)
    assert report.final
    text = _text(report_pdf(report))
    assert "FINAL (signed out)" in text
    assert "PRELIMINARY" not in text
    assert "ASC-H by ann, cytotechnologist" in text
    assert "HSIL by dr_p, pathologist" in text
    assert "comment: agree" in text

    rows = list(csv.reader(io.StringIO(report_csv(report).decode())))
    fields = {r[0]: r[1] for r in rows if len(r) == 2}
    assert fields["Interpretation"] == "HSIL"
    assert fields["Report"] == "FINAL (signed out)"
    header = rows.index(["gallery rank", "cell id", "class", "probability", "abnormal probability", "x", "y"])
    assert [r[2] for r in rows[header + 1 :]] == [g.cls for g in report.gallery]

    data = json.loads(report_json(report))
    assert (data["final"], data["interpretation"], data["slide_id"]) == (True, "HSIL", slide_id)
    assert [s["signed_by"] for s in data["signouts"]] == ["ann", "dr_p"]


def test_a_missing_crop_leaves_an_empty_frame(database: Database, slide_id: int, tmp_path: Path) -> None:
    for crop in (tmp_path / "results" / "gallery").iterdir():
        crop.unlink()
    assert "PRELIMINARY" in _text(report_pdf(_report(database, slide_id)))


def test_the_report_command_writes_each_format_and_never_overwrites(
    database: Database, slide_id: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate.upgrade(database)
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", database.url.render_as_string(hide_password=False))
    runner = CliRunner()
    out = tmp_path / "r.pdf"
    result = runner.invoke(app, ["report", str(slide_id), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "PRELIMINARY" in _text(out.read_bytes())
    again = runner.invoke(app, ["report", str(slide_id), "--out", str(out)])
    assert again.exit_code == 2
    assert "exists" in again.output
    as_json = tmp_path / "r.json"
    assert runner.invoke(app, ["report", str(slide_id), "--format", "json", "--out", str(as_json)]).exit_code == 0
    assert json.loads(as_json.read_text())["name"] == "case-017.svs"
    missing = runner.invoke(app, ["report", "999", "--out", str(tmp_path / "x.pdf")])
    assert missing.exit_code == 2
    assert "no slide #999" in missing.output
