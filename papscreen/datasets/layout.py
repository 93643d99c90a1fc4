"""Read the original project's dataset layouts (DB_3 for stage 1, DB_4 for stage 2) into plain data.

Both layouts are ``<root>/<split>/<class folder>/<image>``. The kind is detected from the class folders:
``cell``/``background`` is DB_3; ``1``..``4`` (legacy meaning: 1=HSIL 2=LSIL 3=NILM 4=SCC) or Bethesda names
(NILM, LSIL, HSIL, SCC, or an extra label such as ASC-US that the label map sends to one of them) is DB_4.

What a person can fix without the whole dataset being unusable (a stray text file, an empty class folder, a
corrupt image) is reported in ``problems`` and skipped; a layout that cannot be read at all (no split, no class
folders, an unknown class folder) raises :class:`~papscreen.errors.DatasetError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from papscreen.bethesda import BETHESDA_CLASSES, DEFAULT_EXTRA_LABEL_MAP, LEGACY_DB4_FOLDERS, normalise_label
from papscreen.datasets.conventions import (
    DB3_CLASSES,
    DB3_FOLDER_ALIASES,
    IMAGE_SUFFIXES,
    MANIFEST_NAME,
    SPLIT_ALIASES,
    SPLITS,
)
from papscreen.errors import DatasetError, ImageError
from papscreen.imaging.image_io import read_rgb

__all__ = ["DatasetIndex", "DatasetKind", "Sample", "is_ignored", "read_dataset"]

DatasetKind = Literal["DB_3", "DB_4"]
FolderScheme = Literal["db3", "numbered", "named"]


@dataclass(frozen=True)
class Sample:
    """One image of a dataset and its class.

    Attributes:
        path: the image file.
        label_index: index of ``label`` in the dataset's ``class_names``.
        label: canonical class name (``cell``/``background`` or a Bethesda class).
    """

    path: Path
    label_index: int
    label: str


@dataclass(frozen=True)
class DatasetIndex:
    """What :func:`read_dataset` found: the kind, the classes, the samples of each split and the problems.

    Attributes:
        kind: ``"DB_3"`` or ``"DB_4"``.
        root: the dataset folder.
        class_names: DB_3 in ``DB3_CLASSES`` order, DB_4 in ``BETHESDA_CLASSES`` order (whatever the folder names).
        scheme: how the class folders are named: ``db3``, ``numbered`` (legacy ``1``..``4``) or ``named``.
        splits: canonical split name (``train``, ``validation``) -> samples, sorted by path.
        problems: one message per skipped file or suspicious folder, naming it.
    """

    kind: DatasetKind
    root: Path
    class_names: tuple[str, ...]
    scheme: FolderScheme
    splits: Mapping[str, tuple[Sample, ...]]
    problems: tuple[str, ...] = field(default=())

    def samples(self) -> tuple[Sample, ...]:
        """Every sample of every split, train first."""
        return tuple(s for split in SPLITS for s in self.splits.get(split, ()))

    def counts(self) -> dict[str, dict[str, int]]:
        """Samples per split and class, every class present (zero when none)."""
        table = {split: dict.fromkeys(self.class_names, 0) for split in self.splits}
        for split, samples in self.splits.items():
            for sample in samples:
                table[split][sample.label] += 1
        return table


def is_ignored(path: Path) -> bool:
    """Whether a file is bookkeeping rather than data: hidden files and papscreen's ``manifest.json``.

    Examples:
        >>> is_ignored(Path(".DS_Store")), is_ignored(Path("manifest.json")), is_ignored(Path("a.png"))
        (True, True, False)
    """
    return path.name.startswith(".") or path.name == MANIFEST_NAME


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_folders(root: Path) -> dict[str, Path]:
    """Canonical split -> folder, refusing a missing split or two folders for the same split."""
    found: dict[str, list[Path]] = {}
    for folder in _visible_dirs(root):
        split = SPLIT_ALIASES.get(folder.name.lower())
        if split is not None:
            found.setdefault(split, []).append(folder)
    for split, folders in found.items():
        if len(folders) > 1:
            names = " and ".join(f.name for f in folders)
            raise DatasetError(root, f"both {names} are the {split} split; keep one")
    missing = [s for s in SPLITS if s not in found]
    if missing:
        split = missing[0]
        aliases = ", ".join(sorted(a for a, s in SPLIT_ALIASES.items() if s == split))
        hint = ""
        inner = [p.name for p in _visible_dirs(root) if p.name.upper() in {"DB_3", "DB_4"}]
        if inner:
            hint = f"; it holds {' and '.join(inner)}: give one of those"
        raise DatasetError(root, f"no {split} split (expected a folder named one of: {aliases}){hint}")
    return {split: found[split][0] for split in SPLITS}


def _db4_class(name: str, extra_label_map: Mapping[str, str]) -> str | None:
    return normalise_label(name, extra_label_map)


def _detect_scheme(
    root: Path, class_dirs: Mapping[str, list[Path]], extra_label_map: Mapping[str, str]
) -> tuple[FolderScheme, dict[Path, str]]:
    """Decide how the class folders are named, and the canonical class of each; unknown folders raise."""
    folders = [f for dirs in class_dirs.values() for f in dirs]
    readers = {
        "db3": lambda n: DB3_FOLDER_ALIASES.get(n.lower()),
        "numbered": lambda n: LEGACY_DB4_FOLDERS.get(n),
        "named": lambda n: _db4_class(n, extra_label_map),
    }
    fits = {scheme: [f for f in folders if read(f.name) is not None] for scheme, read in readers.items()}
    best: FolderScheme = max(fits, key=lambda s: len(fits[s]))  # type: ignore[assignment]
    unknown = [f for f in folders if readers[best](f.name) is None]
    if unknown:
        bad = unknown[0]
        where = bad.relative_to(root).as_posix()
        if best == "db3":
            expected = "DB_3 class folders are cell or background"
        else:
            extras = ", ".join(sorted(extra_label_map)) or "none configured"
            expected = (
                f"DB_4 class folders are {', '.join(BETHESDA_CLASSES)}, an extra label of the label map "
                f"({extras}), or the legacy 1..4; do not mix names and numbers"
            )
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise DatasetError(root, f"unknown class folder {where}{more}: {expected}")
    return best, {f: readers[best](f.name) for f in folders}  # type: ignore[misc]


def _image_files(folder: Path, root: Path, problems: list[str]) -> list[Path]:
    """Image files under a class folder (recursively), reporting and skipping everything else."""
    images = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or is_ignored(path) or path.is_dir():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(
                f"{path.relative_to(root).as_posix()}: not an image file ({path.suffix or 'no suffix'}); skipped"
            )
            continue
        images.append(path)
    return images


def read_dataset(
    root: str | Path,
    *,
    verify: bool = False,
    extra_label_map: Mapping[str, str] = DEFAULT_EXTRA_LABEL_MAP,
) -> DatasetIndex:
    """Index a DB_3 or DB_4 dataset folder, detecting which it is.

    Args:
        root: the folder holding ``train/`` and ``validation/`` (or their aliases, e.g. ``val/``).
        verify: decode every image and skip (reporting) the ones that cannot be decoded; slower, but a training
            run then never meets a corrupt file halfway through.
        extra_label_map: how DB_4 folders named by an extra Bethesda label (ASC-US, ASC-H) are counted.

    Returns:
        A :class:`DatasetIndex`; ``problems`` lists skipped files and empty or missing classes.

    Raises:
        DatasetError: ``root`` is not a folder, a split is missing, a split has no class folders, a class folder
            name is unknown, or the two splits are of different kinds.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from papscreen.imaging.image_io import write_rgb
        >>> root = Path(tempfile.mkdtemp())
        >>> for split, folder in [("train", "cell"), ("val", "background")]:
        ...     write_rgb(root / split / folder / "a.png", np.zeros((20, 20, 3), np.uint8))
        >>> index = read_dataset(root)
        >>> index.kind, index.counts()["validation"]
        ('DB_3', {'background': 1, 'cell': 0})
        >>> index.problems
        ('train: no background samples (no class folder)', 'validation: no cell samples (no class folder)')
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "not a folder" if root.exists() else "no such folder")
    split_dirs = _split_folders(root)
    problems: list[str] = []
    class_dirs: dict[str, list[Path]] = {}
    for split, folder in split_dirs.items():
        class_dirs[split] = _visible_dirs(folder)
        if not class_dirs[split]:
            raise DatasetError(folder, f"the {split} split has no class folders")
        for stray in sorted(p for p in folder.iterdir() if p.is_file() and not is_ignored(p)):
            problems.append(f"{stray.relative_to(root).as_posix()}: not inside a class folder; skipped")
    scheme, folder_class = _detect_scheme(root, class_dirs, extra_label_map)
    kind: DatasetKind = "DB_3" if scheme == "db3" else "DB_4"
    class_names = DB3_CLASSES if kind == "DB_3" else BETHESDA_CLASSES

    splits: dict[str, tuple[Sample, ...]] = {}
    for split in SPLITS:
        samples: list[Sample] = []
        for folder in class_dirs[split]:
            label = folder_class[folder]
            files = _image_files(folder, root, problems)
            if not files:
                problems.append(f"{folder.relative_to(root).as_posix()}: empty class folder (no images)")
            for path in files:
                if verify:
                    try:
                        read_rgb(path)
                    except ImageError as e:
                        problems.append(f"{path.relative_to(root).as_posix()}: {e.reason}; skipped")
                        continue
                samples.append(Sample(path=path, label_index=class_names.index(label), label=label))
        present = {folder_class[f] for f in class_dirs[split]}
        problems.extend(f"{split}: no {name} samples (no class folder)" for name in class_names if name not in present)
        splits[split] = tuple(sorted(samples, key=lambda s: s.path))
    return DatasetIndex(
        kind=kind, root=root, class_names=class_names, scheme=scheme, splits=splits, problems=tuple(problems)
    )
