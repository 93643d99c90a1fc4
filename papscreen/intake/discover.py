"""Find the scans that have finished arriving in the watched intake folder, from the file system alone.

A scanner or a person copies files into the folder; papscreen must not read one while it is still being
written. A file counts as arrived when a ``NAME.done`` marker sits beside it, or when neither its content nor its
metadata has changed for ``settle_seconds``: the later of its modification time and its status-change time
(``ctime``) is that old. Any write moves the mtime forward, and a copy tool that sets an old mtime on a file it is
still writing (``cp -p``, ``rsync -t``, some scanner shares) cannot shorten the wait, because setting the mtime
moves the ctime, which no program can set back. Both tests are stateless (they need no memory of earlier looks), so
a restarted service sees the same thing.

Symlinks are never followed into their targets: a link leading outside the folder could make papscreen read (and
later move) any file on the machine, so every symlinked file is reported as ``refused`` with the reason, for the
caller to quarantine. Files that vanish between listing and ``stat`` (moved away by someone else) are skipped.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from papscreen.config import IntakeSettings
from papscreen.errors import ConfigError

__all__ = ["MARKER_SUFFIX", "TEMPORARY_PREFIXES", "TEMPORARY_SUFFIXES", "Arrival", "Scan", "printable", "scan_intake"]

MARKER_SUFFIX = ".done"
"""``NAME.done`` beside ``NAME`` says the writer has finished it, whatever its mtime."""

TEMPORARY_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")
"""Names that copy tools and browsers give a file until it is complete; never scans, whatever the pattern."""

TEMPORARY_PREFIXES = (".", "~$")
"""Hidden files (``rsync`` writes ``.name.XXXX`` until done, LibreOffice ``.~lock``) and Office's ``~$`` owner files."""


def printable(text: str) -> str:
    r"""``text`` as valid UTF-8: bytes of a file name that are not UTF-8 (kept by Python as surrogates) become U+FFFD.

    A scanner share mounted with another encoding gives such names; the database, JSON sidecars and logs all need
    text, while the file itself is still reached through its real path.

    Examples:
        >>> printable(os.fsdecode(b"scan-\xff.png")) == "scan-\ufffd.png"
        True
        >>> printable("ward 3/a.png")
        'ward 3/a.png'
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass(frozen=True)
class Arrival:
    """One file in the intake folder that is ready to be ingested, or that must be refused.

    Attributes:
        path: absolute path in the intake folder (the link itself for a symlink; never its target).
        name: the path relative to the intake folder, POSIX style (``"sub/a.jpg"``); the original name, made
            :func:`printable` (``path`` keeps the real bytes).
        size: bytes; for a symlink to a file inside the intake folder, its target's size; 0 for other links.
        mtime: modification time (seconds since the epoch), to check later that the file was not rewritten.
        marker: the ``NAME.done`` marker beside it, if there is one.
        refused: ``None``, or why the file must not be read (a symlink, with where it leads).
    """

    path: Path
    name: str
    size: int
    mtime: float
    marker: Path | None
    refused: str | None
    changed: float = 0.0
    """The last change of its content or metadata: the later of mtime and ctime (what the settle wait counts from)."""


@dataclass(frozen=True)
class Scan:
    """The result of one look at the intake folder.

    Attributes:
        ready: settled (or marked done) files and refused entries, sorted by ``name``.
        waiting: matching files still being written (changed less than ``settle_seconds`` ago, no marker), sorted.
    """

    ready: list[Arrival]
    waiting: list[Path]


def scan_intake(intake_dir: Path, settings: IntakeSettings, *, now: float | None = None) -> Scan:
    """Look once at the intake folder and sort what matches ``settings.patterns`` into ready and waiting.

    Args:
        intake_dir: the watched folder.
        settings: the patterns (matched case-insensitively on the file name), recursion and settle time.
        now: the current time (seconds since the epoch); ``time.time()`` when not given. Tests pass it.

    Returns:
        A :class:`Scan`. Hidden files and folders, ``*.done`` markers and partial downloads are never listed;
        folder symlinks are not descended into.

    Raises:
        ConfigError: the intake folder does not exist or is not a folder.

    Examples:
        >>> import os, tempfile, time
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "done.JPG").write_bytes(b"x")
        >>> _ = (folder / "done.JPG.done").write_bytes(b"")
        >>> _ = (folder / "new.png").write_bytes(b"x")
        >>> os.utime(folder / "new.png", (1000.0, 1000.0))  # an old mtime set by a copy tool: still waits
        >>> _ = (folder / "notes.txt").write_bytes(b"x")
        >>> scan = scan_intake(folder, IntakeSettings(settle_seconds=5))
        >>> [a.name for a in scan.ready], [p.name for p in scan.waiting]
        (['done.JPG'], ['new.png'])
        >>> [a.name for a in scan_intake(folder, IntakeSettings(settle_seconds=5), now=time.time() + 6).ready]
        ['done.JPG', 'new.png']
    """
    root = Path(os.path.abspath(intake_dir))
    if not root.is_dir():
        raise ConfigError(
            f"intake folder {root} does not exist or is not a folder; create it or set PAPSCREEN_INTAKE_DIR"
        )
    now = time.time() if now is None else now
    real_root = root.resolve()
    patterns = [p.lower() for p in settings.patterns]
    ready: list[Arrival] = []
    waiting: list[Path] = []
    for path in _candidates(root, settings.recursive):
        if not _matches(path.name, patterns):
            continue
        arrival = _arrival(root, real_root, path)
        if arrival is None:
            continue
        settled = now - arrival.changed >= settings.settle_seconds
        if arrival.refused is not None or arrival.marker is not None or settled:
            ready.append(arrival)
        else:
            waiting.append(path)
    ready.sort(key=lambda a: a.name)
    waiting.sort()
    return Scan(ready=ready, waiting=waiting)


def _candidates(root: Path, recursive: bool) -> Iterator[Path]:
    """Every non-hidden, non-folder entry under ``root``; symlinked folders are listed as folders, not entered."""
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for filename in filenames:
            if not _ignored(filename):
                yield Path(folder) / filename


def _ignored(filename: str) -> bool:
    """Hidden files, markers and names that copy tools and editors use for unfinished or lock files."""
    lowered = filename.lower()
    return filename.startswith(TEMPORARY_PREFIXES) or lowered.endswith((MARKER_SUFFIX, *TEMPORARY_SUFFIXES))


def _matches(filename: str, patterns: list[str]) -> bool:
    lowered = filename.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in patterns)


def _arrival(root: Path, real_root: Path, path: Path) -> Arrival | None:
    """Describe one entry, or ``None`` when it vanished before it could be looked at."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    name = printable(path.relative_to(root).as_posix())
    marker = path.with_name(path.name + MARKER_SUFFIX)
    marker_or_none = marker if os.path.lexists(marker) else None
    if stat.S_ISLNK(info.st_mode):
        return _link_arrival(real_root, path, name, info, marker_or_none)
    refused = None if stat.S_ISREG(info.st_mode) else "not a regular file (a pipe, socket or device): refused"
    changed = max(info.st_mtime, info.st_ctime)
    return Arrival(path, name, info.st_size, info.st_mtime, marker_or_none, refused, changed)


def _link_arrival(real_root: Path, path: Path, name: str, info: os.stat_result, marker: Path | None) -> Arrival:
    """A symlinked file, refused with where it leads; its target is looked up (stat) but never opened."""
    target = Path(os.path.realpath(path))  # never raises, even on a link loop
    size, mtime = 0, info.st_mtime
    if not os.path.exists(target):
        refused = f"broken symlink (its target {printable(str(target))} does not exist): refused"
    elif not target.is_relative_to(real_root):
        refused = f"symlink to {printable(str(target))}, outside the intake folder: refused"
    else:
        try:
            target_info = target.stat()
        except OSError:
            target_info = None
        if target_info is None or not stat.S_ISREG(target_info.st_mode):
            refused = f"symlink to {printable(str(target))}, not a regular file: refused"
        else:
            size, mtime = target_info.st_size, target_info.st_mtime
            refused = (
                f"symlink to {printable(target.relative_to(real_root).as_posix())}, a file inside the intake folder "
                "that is ingested on its own: refused"
            )
    return Arrival(path, name, size, mtime, marker, refused)
