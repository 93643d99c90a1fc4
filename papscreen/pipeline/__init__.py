"""The slide engine: any scan in; graded cells, slide category, gallery and overlay out.

``analyze(slide, models, settings)`` is pure: no Prefect, no database, no Streamlit. It reads the scan tile by
tile, so memory stays bounded whatever the scan's size.
"""

from papscreen.pipeline.result import CellTable, GalleryCell, SlideResult, SlideSummary

__all__ = ["CellTable", "GalleryCell", "SlideResult", "SlideSummary"]
