"""``papscreen report SLIDE``: a slide's report as PDF, CSV or JSON, the same files the dashboard offers."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from papscreen.cli.common import console, err_console, open_database
from papscreen.db.queries.report import slide_report
from papscreen.reports import report_csv, report_json, report_pdf

__all__ = ["app"]

app = typer.Typer()


class ReportFormat(StrEnum):
    """The report's file formats."""

    PDF = "pdf"
    CSV = "csv"
    JSON = "json"


RENDER = {ReportFormat.PDF: report_pdf, ReportFormat.CSV: report_csv, ReportFormat.JSON: report_json}


@app.command("report")
def report_command(
    ctx: typer.Context,
    slide_id: Annotated[int, typer.Argument(help="The slide's number (the worklist's #).")],
    file_format: Annotated[ReportFormat, typer.Option("--format", help="pdf, csv or json.")] = ReportFormat.PDF,
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (default: papscreen-slide-N-STATE.FORMAT here).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the file if it exists.")] = False,
) -> None:
    """Write a slide's report: FINAL once signed out, PRELIMINARY before; names the models that produced it."""
    with open_database(ctx) as database, database.session() as session:
        try:
            report = slide_report(session, slide_id)
        except LookupError as e:
            err_console.print(f"[bold red]error:[/] no slide #{slide_id}", highlight=False)
            raise typer.Exit(2) from e
    state = "final" if report.final else "preliminary"
    target = out or Path(f"papscreen-slide-{slide_id}-{state}.{file_format.value}")
    if target.exists() and not force:
        err_console.print(f"[bold red]error:[/] {target} exists; pass --force to replace it", highlight=False)
        raise typer.Exit(2)
    target.write_bytes(RENDER[file_format](report))
    console.print(f"{state} report of slide #{slide_id} written to {target}", highlight=False, soft_wrap=True)
