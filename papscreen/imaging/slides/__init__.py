"""Slide readers: one interface over plain field images and whole-slide pyramids.

Open any scan with :func:`open_slide`; it returns a :class:`SlideReader` (``dimensions``, ``level_dimensions``,
``level_downsamples``, ``mpp``, ``read_region``, ``thumbnail``). :class:`ArraySlideReader` wraps a numpy array,
so tests and synthetic data need no file.
"""

from papscreen.imaging.slides.array import ArraySlideReader
from papscreen.imaging.slides.base import SlideReader
from papscreen.imaging.slides.factory import SLIDE_SUFFIXES, open_slide
from papscreen.imaging.slides.openslide_reader import OpenSlideReader
from papscreen.imaging.slides.plain import PlainImageReader
from papscreen.imaging.slides.tiff import TiffReader

__all__ = [
    "SLIDE_SUFFIXES",
    "ArraySlideReader",
    "OpenSlideReader",
    "PlainImageReader",
    "SlideReader",
    "TiffReader",
    "open_slide",
]
