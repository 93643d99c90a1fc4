"""Rendering a :class:`~papscreen.db.queries.report.SlideReport`: PDF (fpdf2), CSV and JSON.

The PDF is what a lab files: the slide, the signed interpretation (or PRELIMINARY in large letters until it is
signed out), who signed each step and when, the machine's verdict with its reason, the models that produced it
(and whether they were trained on synthetic demo data), and the most suspicious cells with their crops. CSV and
JSON carry the same facts as data. Every time is UTC.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from PIL import Image

from papscreen import __version__
from papscreen.db.queries.report import SlideReport
from papscreen.imaging.image_io import read_rgb

__all__ = ["report_csv", "report_json", "report_pdf"]

_CROP_MM = 28.0
_CROPS_PER_ROW = 6
DISCLAIMER = (
    "Computer-assisted screening. The interpretation is the signers', made after reviewing the slide; the "
    "machine's verdict and cell grades are aids, not a diagnosis."
)


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def _latin1(text: str) -> str:
    """The core PDF fonts hold Latin-1 only: anything else is replaced rather than failing the report."""
    return text.replace("\u2265", ">=").replace("\u2264", "<=").encode("latin-1", "replace").decode("latin-1")


def _rows(report: SlideReport) -> list[tuple[str, str]]:
    """The report's facts as (label, value) pairs, in the order every format shows them."""
    rows = [
        ("Slide", f"#{report.slide_id} {report.name}"),
        ("Scan SHA-256", report.sha256),
        ("Received", _when(report.received_at)),
        ("Analysed", _when(report.analysed_at)),
        ("Report", "FINAL (signed out)" if report.final else "PRELIMINARY: not signed out"),
        ("Interpretation", report.interpretation or "-"),
        ("Machine category", report.category or "-"),
        ("Why", report.category_reason or "-"),
        ("Abnormal score", "-" if report.abnormal_score is None else f"{report.abnormal_score:.3f}"),
        ("Adequacy", f"{report.adequacy or '-'} ({report.adequacy_reason or 'no reason recorded'})"),
        ("Cells graded", "-" if report.cell_count is None else str(report.cell_count)),
        ("Cells per class", ", ".join(f"{k} {v}" for k, v in report.class_counts.items()) or "-"),
        ("Cells reviewed", f"{report.cells_reviewed} ({report.cells_corrected} corrected)"),
    ]
    rows += [(f"Model, {m.stage}", f"{m.name} ({m.architecture}); trained on {m.trained_on}") for m in report.models]
    for step in report.signouts:
        comment = f"; comment: {step.comment}" if step.comment else ""
        rows.append(
            (
                f"Signed ({step.step})",
                f"{step.interpretation} by {step.signed_by}, {step.role}, {_when(step.signed_at)}{comment}",
            )
        )
    return rows


def report_json(report: SlideReport) -> bytes:
    """The report as JSON (UTF-8): every field, times in ISO 8601 UTC."""
    data: dict[str, Any] = asdict(report)
    data["final"] = report.final
    data["papscreen_version"] = __version__
    return json.dumps(data, indent=2, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)).encode()


def report_csv(report: SlideReport) -> bytes:
    """The report as two-column CSV (field, value), then one row per gallery cell."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["field", "value"])
    writer.writerows(_rows(report))
    writer.writerow([])
    writer.writerow(["gallery rank", "cell id", "class", "probability", "abnormal probability", "x", "y"])
    for g in report.gallery:
        suspicion = "" if g.suspicion is None else f"{g.suspicion:.4f}"
        writer.writerow([g.rank, g.cell_id, g.cls, f"{g.probability:.4f}", suspicion, f"{g.x:.1f}", f"{g.y:.1f}"])
    return out.getvalue().encode()


def report_pdf(report: SlideReport) -> bytes:
    """The report as a one- or two-page A4 PDF."""
    pdf = FPDF(format="A4")
    pdf.set_title(f"papscreen report, slide {report.slide_id}")
    pdf.set_creator(f"papscreen {__version__}")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _latin1(f"Cervical cytology report: slide #{report.slide_id}"), new_x="LMARGIN", new_y="NEXT")
    if not report.final:
        pdf.set_text_color(180, 0, 0)
        pdf.set_font("Helvetica", "B", 13)
        pdf.cell(0, 8, "PRELIMINARY: not signed out", new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    pdf.ln(2)
    for label, value in _rows(report):
        pdf.set_font("Helvetica", "B", 9)
        pdf.cell(42, 5.5, _latin1(label))
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(0, 5.5, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    _gallery(pdf, report)
    pdf.ln(4)
    pdf.set_font("Helvetica", "I", 8)
    pdf.multi_cell(0, 4.5, _latin1(f"{DISCLAIMER} Generated by papscreen {__version__}."))
    return bytes(pdf.output())


def _gallery(pdf: FPDF, report: SlideReport) -> None:
    """The most suspicious cells' crops, six to a row, each captioned with its cell id, class and probability."""
    if not report.gallery:
        return
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, f"The {len(report.gallery)} most suspicious cells", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 7)
    for start in range(0, len(report.gallery), _CROPS_PER_ROW):
        if pdf.get_y() + _CROP_MM + 8 > pdf.h - pdf.b_margin:
            pdf.add_page()
        y = pdf.get_y()
        for column, entry in enumerate(report.gallery[start : start + _CROPS_PER_ROW]):
            x = pdf.l_margin + column * (_CROP_MM + 2)
            crop = _crop(report.results_dir, entry.file)
            if crop is not None:
                pdf.image(crop, x=x, y=y, w=_CROP_MM, h=_CROP_MM)
            else:
                pdf.rect(x, y, _CROP_MM, _CROP_MM)
            pdf.set_xy(x, y + _CROP_MM + 0.5)
            name = f"#{entry.cell_id}" if entry.cell_id is not None else f"crop {entry.rank}"
            pdf.cell(_CROP_MM, 4, _latin1(f"{name} {entry.cls} {entry.probability:.2f}"), align="C")
        pdf.set_xy(pdf.l_margin, y + _CROP_MM + 6)


def _crop(results_dir: str | None, file: str) -> Image.Image | None:
    """A gallery crop for the PDF, or None when its file is gone or lies outside the results folder."""
    if not results_dir:
        return None
    folder = Path(results_dir).resolve()
    path = (folder / file).resolve()
    if not path.is_relative_to(folder):
        return None
    try:
        return Image.fromarray(read_rgb(path))
    except Exception:  # noqa: BLE001 - a missing or unreadable crop leaves an empty frame, not a failed report
        return None
