"""papscreen: cervical cytology screening with a two-stage CNN.

The package is layered so that the science never depends on the service:
``config`` <- ``imaging`` <- ``datasets`` <- ``models`` <- ``pipeline`` <- ``tasks``/``flows``;
``db`` serves the service layers, and ``cli`` and ``dashboard`` are entry points.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("papscreen")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
