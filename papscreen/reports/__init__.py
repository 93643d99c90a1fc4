"""A slide's report as a file: PDF for the record, CSV and JSON for a laboratory information system."""

from papscreen.reports.render import report_csv, report_json, report_pdf

__all__ = ["report_csv", "report_json", "report_pdf"]
