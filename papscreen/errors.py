"""One error hierarchy for papscreen.

Every error a person may see carries the facts (which file, which line, what limit) and says what to do.
Flows, the command line and the dashboard show ``str(error)`` as it is, so messages are written for people.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AnalysisTimeoutError",
    "AnnotationError",
    "CheckpointError",
    "ConfigError",
    "CorruptImageError",
    "DatasetError",
    "DecompressionBombError",
    "FileTooLargeError",
    "ImageError",
    "PapscreenError",
    "PretrainedWeightsMissingError",
    "SignoutError",
    "UnreadableRegionError",
    "UnsupportedImageError",
]


class PapscreenError(Exception):
    """Base of every error papscreen raises on purpose."""


class ConfigError(PapscreenError):
    """The settings are invalid or a settings file cannot be read."""


class ImageError(PapscreenError):
    """An image or scan cannot be used; ``path`` names it and ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CorruptImageError(ImageError):
    """The file claims to be an image but cannot be decoded (truncated, damaged, or not an image)."""


class UnsupportedImageError(ImageError):
    """The file is in a format or layout papscreen does not read."""


class FileTooLargeError(ImageError):
    """The file is larger on disk than the configured limit."""

    def __init__(self, path: str | Path, size_bytes: int, limit_bytes: int) -> None:
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes
        super().__init__(
            path,
            f"file is {size_bytes:,} bytes, over the limit of {limit_bytes:,} bytes "
            "(raise PAPSCREEN_LIMITS__MAX_FILE_BYTES if this scan is genuine)",
        )


class DecompressionBombError(ImageError):
    """The image declares more pixels than the configured limit; it is refused before decoding."""

    def __init__(self, path: str | Path, pixels: int, limit_pixels: int) -> None:
        self.pixels = pixels
        self.limit_pixels = limit_pixels
        super().__init__(
            path,
            f"image declares {pixels:,} pixels, over the limit of {limit_pixels:,} for a plain image; "
            "whole-slide scans must be pyramidal TIFF/SVS/NDPI/MRXS "
            "(raise PAPSCREEN_LIMITS__MAX_IMAGE_PIXELS if this image is genuine)",
        )


class AnalysisTimeoutError(ImageError):
    """Analysing the scan took longer than the configured limit; it must not keep the compute slot."""

    def __init__(self, path: str | Path, limit_seconds: float, phase: str) -> None:
        self.limit_seconds = limit_seconds
        super().__init__(
            path,
            f"analysis stopped after the time limit of {limit_seconds:.0f} s (during {phase}); "
            "raise analysis.time_limit_seconds if scans this large are expected",
        )


class UnreadableRegionError(CorruptImageError):
    """A region of a slide cannot be decoded (a damaged tile); the slide opened, this part of it did not.

    ``location`` is the region's top-left corner in level-0 pixels, ``size`` its (width, height) at ``level``.
    """

    def __init__(
        self, path: str | Path, location: tuple[int, int], level: int, size: tuple[int, int], detail: str
    ) -> None:
        self.location = location
        self.level = level
        self.size = size
        super().__init__(
            path,
            f"cannot read the region at level-0 (x={location[0]}, y={location[1]}), level {level}, "
            f"{size[0]}x{size[1]} pixels: {detail}; the scan is damaged there (rescan or re-export it)",
        )


class DatasetError(PapscreenError):
    """A dataset folder does not have the expected layout."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AnnotationError(PapscreenError):
    """A row of a point-annotation CSV cannot be used; names the file and the line."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}, line {line}: {reason}")


class CheckpointError(PapscreenError):
    """A model file or card cannot be loaded; names the file and says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class PretrainedWeightsMissingError(CheckpointError):
    """ImageNet weights were asked for but are not on this machine; papscreen never downloads at run time.

    ``path`` is where the file was expected; the message says where to get it and where to put it.
    """

    def __init__(self, path: str | Path, architecture: str, url: str) -> None:
        self.architecture = architecture
        self.url = url
        super().__init__(
            path,
            f"ImageNet weights for {architecture} are not on this machine, and papscreen never downloads at run "
            f"time. On a machine with internet, download {url} and copy the file to {Path(path)} "
            "(or pass its location as the pretrained path); or train without pretrained weights",
        )


class SignoutError(PapscreenError):
    """A sign-out step that the slide's state or the person's role does not allow; the message says why."""
