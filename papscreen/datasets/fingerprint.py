"""A content fingerprint of a dataset, so every trained model can say exactly what it was trained on.

The fingerprint is a sha256 over the sorted list of ``relative path, sha256 of the file, label``: it does not
depend on where the folder lives, on file modification times or on the order the file system lists files, so
two copies of a dataset on two machines have the same fingerprint, and changing one pixel or one label changes
it. ``manifest.json`` and hidden files are not data and are not part of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from papscreen.datasets.annotations import AnnotationSet
from papscreen.datasets.layout import DatasetIndex

__all__ = [
    "FINGERPRINT_VERSION",
    "file_sha256",
    "fingerprint_annotations",
    "fingerprint_entries",
    "fingerprint_index",
    "short_fingerprint",
]

FINGERPRINT_VERSION = "papscreen-dataset-fingerprint/1"
"""Hashed first, so a change to the recipe can never collide with an older fingerprint."""

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks so large scans do not fill memory.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = path.write_bytes(b"abc")
        >>> file_sha256(path)[:16]
        'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_entries(root: str | Path, entries: Iterable[tuple[str | Path, str]]) -> str:
    """Fingerprint of files under ``root`` with their labels.

    Args:
        root: the dataset folder; paths are hashed relative to it, with ``/``, so the location does not matter.
        entries: (file, label) pairs; a file may be given absolute or relative to ``root``.

    Returns:
        64 hex digits.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "a.png").write_bytes(b"pixels")
        >>> one = fingerprint_entries(root, [("a.png", "cell")])
        >>> one == fingerprint_entries(root, [(root / "a.png", "cell")])
        True
        >>> one == fingerprint_entries(root, [("a.png", "background")])
        False
    """
    root = Path(root)
    lines = []
    for entry, label in entries:
        path = Path(entry)
        full = path if path.is_absolute() else root / path
        relative = full.relative_to(root).as_posix()
        lines.append(f"{relative}\t{file_sha256(full)}\t{label}\n")
    digest = hashlib.sha256(f"{FINGERPRINT_VERSION}\n".encode())
    for line in sorted(lines):
        digest.update(line.encode("utf-8"))
    return digest.hexdigest()


def fingerprint_index(index: DatasetIndex) -> str:
    """Fingerprint of a DB_3 or DB_4 dataset: every sample of every split with its class name.

    Skipped files (reported problems) are not part of it: the fingerprint describes what a model would see.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from papscreen.datasets.layout import read_dataset
        >>> from papscreen.imaging.image_io import write_rgb
        >>> root = Path(tempfile.mkdtemp())
        >>> for split in ("train", "validation"):
        ...     for folder in ("cell", "background"):
        ...         write_rgb(root / split / folder / "a.png", np.zeros((20, 20, 3), np.uint8))
        >>> len(fingerprint_index(read_dataset(root)))
        64
    """
    return fingerprint_entries(index.root, ((s.path, s.label) for s in index.samples()))


def fingerprint_annotations(annotations: AnnotationSet) -> str:
    r"""Fingerprint of an annotated folder: the CSV (which holds the labels) and every image in ``images/``.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from papscreen.datasets.annotations import read_annotations
        >>> from papscreen.imaging.image_io import write_rgb
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_rgb(folder / "images" / "a.png", np.zeros((40, 60, 3), np.uint8))
        >>> _ = (folder / "labels.csv").write_text("image,x,y,label\na.png,10,20,NILM\n")
        >>> len(short_fingerprint(fingerprint_annotations(read_annotations(folder))))
        16
    """
    root = annotations.root
    entries: list[tuple[str | Path, str]] = [(annotations.csv_path, "annotations")]
    entries += [(annotations.images_dir / name, "image") for name in annotations.image_files]
    return fingerprint_entries(root, entries)


def short_fingerprint(fingerprint: str) -> str:
    """The first 16 hex digits, for tables and model cards; enough to tell datasets apart at a glance.

    Examples:
        >>> short_fingerprint("0123456789abcdef" * 4)
        '0123456789abcdef'
    """
    return fingerprint[:16]
