"""Moving scans: nothing is ever lost or overwritten, on one file system or across two."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from papscreen.intake import files
from papscreen.intake.files import MAX_NAME_CHARS, destination, move_file, sha256_of, unchanged_since, write_reason

RECEIVED = datetime(2024, 3, 9, 14, 30, tzinfo=UTC)
CONTENT = bytes(range(256)) * 1000


@pytest.fixture(params=[True, False], ids=["same-filesystem", "across-filesystems"])
def same_filesystem(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test both ways; the cross-file-system path is forced by patching the device check."""
    if not request.param:
        monkeypatch.setattr(files, "_same_filesystem", lambda src, folder: False)
    return request.param


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    path = tmp_path / "intake" / "sub" / "a.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(CONTENT)
    os.utime(path, (1_600_000_000, 1_600_000_000))
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# -- hashing and change checks ------------------------------------------------------------------------------
def test_sha256_of_matches_hashlib(scan: Path) -> None:
    assert sha256_of(scan) == hashlib.sha256(CONTENT).hexdigest()


def test_unchanged_since_notices_rewrites_appends_and_removal(scan: Path) -> None:
    info = scan.stat()
    assert unchanged_since(scan, info.st_size, info.st_mtime)
    os.utime(scan, (info.st_atime, info.st_mtime + 1))
    assert not unchanged_since(scan, info.st_size, info.st_mtime)
    with scan.open("ab") as f:
        f.write(b"x")
    os.utime(scan, (info.st_atime, info.st_mtime))
    assert not unchanged_since(scan, info.st_size, info.st_mtime)
    scan.unlink()
    assert not unchanged_since(scan, info.st_size, info.st_mtime)


# -- destination --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jpg", "00000012-a.jpg"),
        ("sub/deeper/a.jpg", "00000012-sub__deeper__a.jpg"),
        ("../../etc/x.jpg", "00000012-etc__x.jpg"),
        ("/abs/./x.jpg", "00000012-abs__x.jpg"),
        ("a b/ç.tif", "00000012-a_b___.tif"),
        ("..", "00000012-scan"),
        ("win\\path\\x.svs", "00000012-win__path__x.svs"),
    ],
    ids=["plain", "folders", "climbing", "absolute", "unicode-and-space", "only-dots", "backslashes"],
)
def test_destination_is_flat_and_safe(tmp_path: Path, name: str, expected: str) -> None:
    path = destination(tmp_path, 12, name, RECEIVED)
    assert path == tmp_path / "2024" / "03" / "09" / expected
    assert path.resolve().is_relative_to(tmp_path.resolve())


def test_destination_is_deterministic(tmp_path: Path) -> None:
    assert destination(tmp_path, 5, "x/y.png", RECEIVED) == destination(tmp_path, 5, "x/y.png", RECEIVED)
    assert destination(tmp_path, 5, "x/y.png", RECEIVED) != destination(tmp_path, 6, "x/y.png", RECEIVED)


def test_destination_dates_an_aware_time_in_utc(tmp_path: Path) -> None:
    late_in_new_york = datetime(2024, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert destination(tmp_path, 1, "a.jpg", late_in_new_york).parent == tmp_path / "2024" / "01" / "02"


def test_a_very_long_name_is_capped_keeping_its_extension(tmp_path: Path) -> None:
    path = destination(tmp_path, 123456789, "x" * 400 + ".ndpi", RECEIVED)
    assert path.name.startswith("123456789-")
    assert path.suffix == ".ndpi"
    assert len(path.name) == len("123456789-") + MAX_NAME_CHARS
    assert len(path.name + ".reason.json") < 255


def test_a_long_name_without_an_extension_is_capped(tmp_path: Path) -> None:
    assert len(destination(tmp_path, 1, "y" * 400, RECEIVED).name) == len("00000001-") + MAX_NAME_CHARS


# -- move_file ----------------------------------------------------------------------------------------------
def test_a_move_keeps_content_and_mtime_and_leaves_nothing_behind(
    scan: Path, tmp_path: Path, same_filesystem: bool
) -> None:
    dest = tmp_path / "store" / "2024" / "00000001-a.jpg"
    assert move_file(scan, dest) == dest
    assert dest.read_bytes() == CONTENT
    assert dest.stat().st_mtime == 1_600_000_000
    assert not scan.exists()
    assert _leftovers(dest.parent) == []


def test_a_move_never_overwrites(scan: Path, tmp_path: Path, same_filesystem: bool) -> None:
    dest = tmp_path / "store" / "taken.jpg"
    dest.parent.mkdir()
    dest.write_bytes(b"the earlier scan")
    with pytest.raises(FileExistsError):
        move_file(scan, dest)
    assert dest.read_bytes() == b"the earlier scan"
    assert scan.read_bytes() == CONTENT
    assert _leftovers(dest.parent) == []


def test_a_destination_appearing_after_the_check_is_not_overwritten(
    scan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "store" / "raced.jpg"
    monkeypatch.setattr(files, "_refuse_existing", lambda path: None)  # as if the other writer came just after
    dest.parent.mkdir()
    dest.write_bytes(b"the other writer's")
    with pytest.raises(FileExistsError):
        move_file(scan, dest)
    assert dest.read_bytes() == b"the other writer's"
    assert scan.read_bytes() == CONTENT


def test_the_done_marker_moves_along(scan: Path, tmp_path: Path, same_filesystem: bool) -> None:
    marker = scan.with_name("a.jpg.done")
    marker.write_bytes(b"")
    dest = tmp_path / "store" / "00000001-a.jpg"
    move_file(scan, dest)
    assert not marker.exists()
    assert dest.with_name("00000001-a.jpg.done").exists()


def test_an_existing_destination_marker_stops_the_move_before_anything_moves(scan: Path, tmp_path: Path) -> None:
    scan.with_name("a.jpg.done").write_bytes(b"")
    dest = tmp_path / "store" / "b.jpg"
    dest.parent.mkdir()
    dest.with_name("b.jpg.done").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        move_file(scan, dest)
    assert scan.exists()
    assert scan.with_name("a.jpg.done").exists()
    assert not dest.exists()


def test_a_marker_that_cannot_be_moved_is_deleted_so_it_cannot_mark_a_later_file(
    scan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = scan.with_name("a.jpg.done")
    marker.write_bytes(b"")
    move_one = files._move_one

    def failing_for_markers(src: Path, dest: Path, expected_sha256: str | None = None) -> None:
        if src.name.endswith(".done"):
            raise OSError(errno.EIO, "disk trouble")
        move_one(src, dest, expected_sha256)

    monkeypatch.setattr(files, "_move_one", failing_for_markers)
    dest = move_file(scan, tmp_path / "store" / "a.jpg")
    assert dest.read_bytes() == CONTENT
    assert not marker.exists()


def test_a_symlink_is_moved_as_the_link_never_its_target(tmp_path: Path, same_filesystem: bool) -> None:
    target = tmp_path / "outside" / "secret.jpg"
    target.parent.mkdir()
    target.write_bytes(b"not ours")
    link = tmp_path / "intake" / "link.jpg"
    link.parent.mkdir()
    link.symlink_to(target)
    dest = tmp_path / "quarantine" / "00000002-link.jpg"
    move_file(link, dest)
    assert dest.is_symlink()
    assert os.readlink(dest) == str(target)
    assert not os.path.lexists(link)
    assert target.read_bytes() == b"not ours"


def test_a_broken_symlink_can_be_moved(tmp_path: Path, same_filesystem: bool) -> None:
    link = tmp_path / "broken.jpg"
    link.symlink_to(tmp_path / "nowhere")
    dest = tmp_path / "quarantine" / "broken.jpg"
    move_file(link, dest)
    assert dest.is_symlink()
    assert not os.path.lexists(link)


def test_a_copy_that_does_not_match_keeps_the_source(
    scan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "_same_filesystem", lambda src, folder: False)
    monkeypatch.setattr(files, "sha256_of", lambda path: "0" * 64)  # as if the copy came out different
    dest = tmp_path / "store" / "a.jpg"
    with pytest.raises(OSError, match="does not match"):
        move_file(scan, dest)
    assert scan.read_bytes() == CONTENT
    assert not dest.exists()
    assert _leftovers(dest.parent) == []


def test_a_copy_is_checked_against_the_digest_the_scan_was_claimed_under(
    scan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan rewritten after its check is never stored in place of what was checked; the right one is."""
    monkeypatch.setattr(files, "_same_filesystem", lambda src, folder: False)
    claimed = hashlib.sha256(b"what the intake hashed before the scanner rewrote the file").hexdigest()
    dest = tmp_path / "store" / "a.jpg"
    with pytest.raises(OSError, match="changed after it was checked") as raised:
        move_file(scan, dest, expected_sha256=claimed)
    assert raised.value.errno == errno.EAGAIN  # a cause that passes: the intake leaves the file for the next pass
    assert scan.read_bytes() == CONTENT
    assert not dest.exists()
    assert _leftovers(dest.parent) == []
    assert move_file(scan, dest, expected_sha256=hashlib.sha256(CONTENT).hexdigest()).read_bytes() == CONTENT


def test_a_copy_left_half_written_by_a_killed_process_is_removed_by_the_next_move(
    scan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "_same_filesystem", lambda src, folder: False)
    dest = tmp_path / "store" / "a.jpg"
    dest.parent.mkdir()
    host = socket.gethostname()
    dead = _dead_pid()
    stale = dest.with_name(f"a.jpg.partial-{host}-{dead}")
    running = dest.with_name(f"a.jpg.partial-{host}-{os.getppid()}")  # a copy still under way
    elsewhere = dest.with_name("a.jpg.partial-another-host-1")
    for partial in (stale, running, elsewhere):
        partial.write_bytes(CONTENT[:100])
    assert move_file(scan, dest).read_bytes() == CONTENT
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted(["a.jpg", running.name, elsewhere.name])


def _dead_pid() -> int:
    """The pid of a process that has just ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_without_hard_links_the_move_falls_back_to_rename(
    scan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    dest = tmp_path / "store" / "a.jpg"
    move_file(scan, dest)
    assert dest.read_bytes() == CONTENT
    assert not scan.exists()


def test_a_move_interrupted_after_the_link_is_completed(scan: Path, tmp_path: Path) -> None:
    dest = tmp_path / "store" / "a.jpg"
    dest.parent.mkdir()
    os.link(scan, dest)  # the crash came between link and unlink
    assert move_file(scan, dest) == dest
    assert not scan.exists()
    assert dest.read_bytes() == CONTENT


def test_moving_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        move_file(tmp_path / "gone.jpg", tmp_path / "store" / "gone.jpg")
    assert not (tmp_path / "store" / "gone.jpg").exists()


# -- write_reason -------------------------------------------------------------------------------------------
def test_write_reason_records_why_and_when(tmp_path: Path) -> None:
    bad = tmp_path / "00000003-cut.jpg"
    bad.write_bytes(b"")
    sidecar = write_reason(bad, "file is empty (0 bytes)", {"source": Path("/intake/cut.jpg"), "size": 0})
    assert sidecar == tmp_path / "00000003-cut.jpg.reason.json"
    record = json.loads(sidecar.read_text())
    assert record["file"] == "00000003-cut.jpg"
    assert record["reason"] == "file is empty (0 bytes)"
    assert record["details"] == {"source": "/intake/cut.jpg", "size": 0}
    when = datetime.fromisoformat(record["time"])
    assert when.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - when) < timedelta(minutes=1)


def test_write_reason_never_overwrites(tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    first = write_reason(bad, "first")
    second = write_reason(bad, "second")
    third = write_reason(bad, "third")
    names = [p.name for p in (first, second, third)]
    assert names == ["x.jpg.reason.json", "x.jpg.reason.2.json", "x.jpg.reason.3.json"]
    assert json.loads(first.read_text())["reason"] == "first"
    assert json.loads(third.read_text())["details"] == {}
