"""Move scans out of the intake folder without ever losing or overwriting one.

A patient's scan may exist in one copy only, so every move here either completes or leaves the source where it
was, and never replaces a file already at the destination. On one file system a move is a hard link followed by
removing the source name (the link fails if the destination exists, atomically); across file systems the bytes
are copied to a temporary name beside the destination (``NAME.partial-HOST-PID``, removed by the next move to that
destination if its process was killed), synced, re-read and checked against the source's sha256 and only then
given their final name, and the source is removed last.

Destinations are deterministic (:func:`destination`), so a crash between moving a file and recording it in the
database can be recovered by looking where the file would have gone.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from papscreen.datasets.fingerprint import file_sha256

__all__ = [
    "MAX_NAME_CHARS",
    "destination",
    "move_file",
    "remove_stale_partials",
    "sha256_of",
    "unchanged_since",
    "write_reason",
]

MAX_NAME_CHARS = 150
"""Longest flattened name kept in a destination; leaves room under the 255-byte limit of most file systems
for the slide id and suffixes such as ``.done``, ``.reason.json`` and ``.partial-<host>-<pid>``."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_SUFFIX_CHARS = 16
_COPY_CHUNK = 8 * 1024 * 1024
# errno values meaning "this file system has no hard links"; anything else from os.link is a real failure.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK}


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes, streamed so a 20 GB slide does not fill memory.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = path.write_bytes(b"abc")
        >>> sha256_of(path)[:16]
        'ba7816bf8f01cfea'
    """
    return file_sha256(path)


def unchanged_since(path: Path, size: int, mtime: float) -> bool:
    """Whether ``path`` still has this size and mtime, i.e. nobody rewrote or appended to it meanwhile.

    Call it after hashing or probing a file: if it changed, what was checked is not what will be stored.
    A file that has vanished has changed.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.jpg"
        >>> _ = path.write_bytes(b"abc")
        >>> info = path.stat()
        >>> unchanged_since(path, info.st_size, info.st_mtime)
        True
        >>> _ = path.write_bytes(b"abcd")
        >>> unchanged_since(path, info.st_size, info.st_mtime)
        False
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    return info.st_size == size and info.st_mtime == mtime


def destination(root: Path, slide_id: int, name: str, received: datetime) -> Path:
    """Where a scan is kept: ``root/YYYY/MM/DD/{slide_id:08d}-{flattened safe name}``.

    The name's folders are flattened with ``__``, characters outside ``[A-Za-z0-9._-]`` become ``_``, ``.`` and
    ``..`` parts are dropped (a name can never climb out of ``root``), and a long name is cut to
    :data:`MAX_NAME_CHARS` keeping its extension. The date is ``received``'s (in UTC when it carries a time
    zone). The same arguments always give the same path.

    Examples:
        >>> destination(Path("/store"), 42, "ward 3/../ç.tif", datetime(2024, 5, 6, 7, 8, tzinfo=UTC)).as_posix()
        '/store/2024/05/06/00000042-ward_3___.tif'
        >>> destination(Path("/store"), 7, "../../etc/x.jpg", datetime(2024, 1, 2)).as_posix()
        '/store/2024/01/02/00000007-etc__x.jpg'
    """
    if received.tzinfo is not None:
        received = received.astimezone(UTC)
    day = root / f"{received.year:04d}" / f"{received.month:02d}" / f"{received.day:02d}"
    return day / f"{slide_id:08d}-{_safe_name(name)}"


def _safe_name(name: str) -> str:
    """A flat, portable, bounded file name for ``name`` (a relative POSIX path)."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".", "..")]
    flat = _UNSAFE.sub("_", "__".join(parts)) or "scan"
    if len(flat) <= MAX_NAME_CHARS:
        return flat
    stem, dot, suffix = flat.rpartition(".")
    if not dot or not stem or len(suffix) > _MAX_SUFFIX_CHARS:
        return flat[:MAX_NAME_CHARS]
    return stem[: MAX_NAME_CHARS - len(suffix) - 1] + "." + suffix


def move_file(src: Path, dest: Path, *, expected_sha256: str | None = None) -> Path:
    """Move ``src`` to ``dest`` atomically, never overwriting, and its ``src.done`` marker to ``dest.done``.

    A symlink is moved as the link itself, never its target. Across file systems the copy is re-read and its
    sha256 checked against the bytes read from the source, and against ``expected_sha256`` when given (the
    digest the scan was claimed under, so that a file rewritten after its check is never stored in its place),
    before the source is removed. ``dest``'s folder is created. A move that was interrupted
    after the hard link (``src`` and ``dest`` are one file) is completed by removing ``src``.

    The marker is moved (or, failing that, deleted) so that a stale marker can never declare a later file of
    the same name finished while it is still being written.

    Args:
        src: the file in the intake folder.
        dest: where it goes; usually :func:`destination`'s answer.
        expected_sha256: the digest the copy must have (only checked when the bytes are copied).

    Returns:
        ``dest``.

    Raises:
        FileExistsError: ``dest`` (or ``dest.done`` when there is a marker) already exists; nothing was moved.
        FileNotFoundError: ``src`` does not exist.
        OSError: the copy did not match the source or ``expected_sha256``, or the file system failed; the source
            is left in place.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.jpg").write_bytes(b"scan")
        >>> moved = move_file(folder / "a.jpg", folder / "store" / "1-a.jpg")
        >>> moved.read_bytes(), (folder / "a.jpg").exists()
        (b'scan', False)
    """
    src, dest = Path(src), Path(dest)
    if not os.path.lexists(src):
        raise FileNotFoundError(errno.ENOENT, "cannot move a file that is not there", str(src))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if _same_file(src, dest):
        os.unlink(src)  # an earlier move stopped between link and unlink: finish it
    else:
        marker, dest_marker = _marker(src), _marker(dest)
        _refuse_existing(dest)
        if os.path.lexists(marker):
            _refuse_existing(dest_marker)
        _move_one(src, dest, expected_sha256)
    _move_marker(_marker(src), _marker(dest))
    return dest


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def _refuse_existing(dest: Path) -> None:
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, "refusing to overwrite an existing file", str(dest))


def _same_file(a: Path, b: Path) -> bool:
    """Whether two names are the very same file (inode), without following symlinks."""
    try:
        info_a, info_b = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    return (info_a.st_dev, info_a.st_ino) == (info_b.st_dev, info_b.st_ino)


def _same_filesystem(src: Path, folder: Path) -> bool:
    """Whether ``src`` (not followed if a link) lives on the same file system as ``folder``; tests patch this."""
    return os.lstat(src).st_dev == os.stat(folder).st_dev


def _move_one(src: Path, dest: Path, expected_sha256: str | None = None) -> None:
    """Move one file or link; ``dest`` was checked absent but may appear meanwhile, which the link refuses."""
    if _same_filesystem(src, dest.parent):
        try:
            _link_then_unlink(src, dest)
        except OSError as e:
            if e.errno != errno.EXDEV:  # one file system mounted twice still refuses links between the mounts
                raise
        else:
            _fsync_folder(dest.parent)
            return
    if src.is_symlink():
        os.symlink(os.readlink(src), dest)  # creating a link never replaces an existing name
    else:
        _copy_verified(src, dest, expected_sha256)
    _fsync_folder(dest.parent)
    os.unlink(src)


def _link_then_unlink(src: Path, dest: Path) -> None:
    """Give ``src`` the extra name ``dest`` (atomically refusing an existing one), then drop the name ``src``."""
    try:
        os.link(src, dest, follow_symlinks=False)
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        _refuse_existing(dest)  # no hard links here: rename, which would replace a file, only after this check
        os.rename(src, dest)
        return
    os.unlink(src)


def remove_stale_partials(dest: Path) -> list[Path]:
    """Delete the half-written copies to ``dest`` that a killed process of this host left behind.

    A copy across file systems is written to ``dest.partial-HOST-PID`` first; a process killed during the copy
    (SIGKILL, a power cut) cannot remove it. A partial whose process still runs, or that another host wrote, is
    left alone. Returns what was deleted.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / f"a.jpg.partial-{socket.gethostname()}-999999999").write_bytes(b"half")
        >>> [p.name.split(".")[1] for p in remove_stale_partials(folder / "a.jpg")]
        ['jpg']
    """
    removed = []
    prefix = f"{dest.name}.partial-{socket.gethostname()}-"
    try:
        candidates = [entry for entry in os.scandir(dest.parent) if entry.name.startswith(prefix)]
    except FileNotFoundError:
        return []
    for entry in candidates:
        pid = entry.name.removeprefix(prefix)
        if pid.isdigit() and not _alive(int(pid)):
            with suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _copy_verified(src: Path, dest: Path, expected_sha256: str | None) -> None:
    """Copy across file systems to a temporary name, sync, re-read and verify its sha256, then name it ``dest``."""
    remove_stale_partials(dest)
    partial = dest.with_name(f"{dest.name}.partial-{socket.gethostname()}-{os.getpid()}")
    try:
        source_digest = _copy_and_hash(src, partial)
        copy_digest = sha256_of(partial)
        if copy_digest != source_digest:
            raise OSError(
                errno.EIO,
                f"the copy of {src} does not match it (sha256 {copy_digest} instead of {source_digest}); "
                "the source was kept",
                str(dest),
            )
        if expected_sha256 is not None and copy_digest != expected_sha256:
            raise OSError(
                errno.EAGAIN,
                f"{src} changed after it was checked (sha256 {copy_digest} instead of {expected_sha256}); "
                "the source was kept",
                str(dest),
            )
        _link_then_unlink(partial, dest)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(partial)


def _copy_and_hash(src: Path, partial: Path) -> str:
    """Stream ``src`` into ``partial`` (flushed and synced to disk) and return the sha256 of the bytes read."""
    digest = hashlib.sha256()
    with src.open("rb") as reader, partial.open("wb") as writer:
        while chunk := reader.read(_COPY_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    shutil.copystat(src, partial)
    return digest.hexdigest()


def _fsync_folder(folder: Path) -> None:
    """Make a new name in ``folder`` survive a power cut (where the platform allows syncing a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _move_marker(marker: Path, dest_marker: Path) -> None:
    """Move the ``.done`` marker along; if that fails, delete it rather than leave it to mark a later file."""
    if not os.path.lexists(marker):
        return
    try:
        _move_one(marker, dest_marker)
    except OSError:
        with suppress(FileNotFoundError):
            os.unlink(marker)


def write_reason(quarantined: Path, reason: str, details: dict[str, Any] | None = None) -> Path:
    """Write ``<file>.reason.json`` beside a quarantined file, so staff reading the folder see why it is there.

    Never overwrites: if a sidecar already exists (the file was quarantined again after a retry), the next free
    name ``<file>.reason.2.json``, ``.3``, ... is used. Values in ``details`` that JSON cannot hold are written as
    text.

    Returns:
        The sidecar written.

    Examples:
        >>> import tempfile
        >>> bad = Path(tempfile.mkdtemp()) / "00000003-cut.jpg"
        >>> _ = bad.write_bytes(b"")
        >>> sidecar = write_reason(bad, "file is empty (0 bytes)", {"size": 0})
        >>> sidecar.name, json.loads(sidecar.read_text())["reason"]
        ('00000003-cut.jpg.reason.json', 'file is empty (0 bytes)')
        >>> write_reason(bad, "again").name
        '00000003-cut.jpg.reason.2.json'
    """
    record = {
        "file": quarantined.name,
        "reason": reason,
        "details": details or {},
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n"
    number = 1
    while True:
        sidecar = quarantined.with_name(f"{quarantined.name}.reason{'' if number == 1 else f'.{number}'}.json")
        try:
            with sidecar.open("x", encoding="utf-8") as handle:
                handle.write(text)
        except FileExistsError:
            number += 1
            continue
        return sidecar
