"""The slide engine: any scan in; graded cells, slide category, gallery and overlay out.

``analyze(slide, models, settings)`` is pure: no Prefect, no database, no Streamlit. It reads the scan tile by
tile, so memory stays bounded whatever the scan's size.
"""

from papscreen.pipeline.engine import analyze, gallery_image, scan_kind
from papscreen.pipeline.grading import SlideGrade, grade_slide
from papscreen.pipeline.models import ModelPair, load_model_pair, resolve_precision
from papscreen.pipeline.result import CellTable, GalleryCell, SlideResult, SlideSummary

__all__ = [
    "CellTable",
    "GalleryCell",
    "ModelPair",
    "SlideGrade",
    "SlideResult",
    "SlideSummary",
    "analyze",
    "gallery_image",
    "grade_slide",
    "load_model_pair",
    "resolve_precision",
    "scan_kind",
]
