"""``scan_intake``: which files have arrived, which are still being written, and which must never be read."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from papscreen.config import IntakeSettings
from papscreen.errors import ConfigError
from papscreen.intake import discover
from papscreen.intake.discover import scan_intake

NOW = time.time() + 10_000
"""The tests' clock: far enough ahead that a file's mtime set to ``NOW - age`` is later than its ctime (the
real time it was written), so the settle wait counts from that mtime."""
SETTINGS = IntakeSettings(settle_seconds=5.0)


def _file(folder: Path, name: str, age: float = 60.0, content: bytes = b"scan") -> Path:
    """A file whose mtime is ``age`` seconds before ``NOW``."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (NOW - age, NOW - age))
    return path


def _names(folder: Path, settings: IntakeSettings = SETTINGS) -> tuple[list[str], list[str]]:
    scan = scan_intake(folder, settings, now=NOW)
    return [a.name for a in scan.ready], [p.relative_to(folder).as_posix() for p in scan.waiting]


@pytest.fixture
def intake(tmp_path: Path) -> Path:
    folder = tmp_path / "intake"
    folder.mkdir()
    return folder


def test_settled_files_are_ready_and_young_ones_wait(intake: Path) -> None:
    _file(intake, "old.jpg", age=60)
    _file(intake, "exactly.png", age=5.0)
    _file(intake, "young.tif", age=4.9)
    assert _names(intake) == (["exactly.png", "old.jpg"], ["young.tif"])


def test_an_arrival_describes_the_file(intake: Path) -> None:
    path = _file(intake, "sub/a.jpg", age=60, content=b"12345")
    (arrival,) = scan_intake(intake, SETTINGS, now=NOW).ready
    assert arrival.path == path
    assert arrival.path.is_absolute()
    assert arrival.name == "sub/a.jpg"
    assert arrival.size == 5
    assert arrival.mtime == NOW - 60
    assert arrival.marker is None
    assert arrival.refused is None


def test_a_done_marker_makes_a_young_file_ready_and_is_not_listed_itself(intake: Path) -> None:
    _file(intake, "young.svs", age=0)
    marker = _file(intake, "young.svs.done", age=0, content=b"")
    scan = scan_intake(intake, SETTINGS, now=NOW)
    assert [a.name for a in scan.ready] == ["young.svs"]
    assert scan.ready[0].marker == marker
    assert scan.waiting == []


def test_an_append_restarts_the_wait(intake: Path) -> None:
    path = _file(intake, "growing.ndpi", age=60)
    assert _names(intake) == (["growing.ndpi"], [])
    with path.open("ab") as f:
        f.write(b"more")
    os.utime(path, (NOW - 1, NOW - 1))
    assert _names(intake) == ([], ["growing.ndpi"])


def test_patterns_match_case_insensitively_on_the_name(intake: Path) -> None:
    for name in ("a.JPG", "b.Jpeg", "c.TIFF", "d.txt", "e.jpg.gz", "jpg"):
        _file(intake, name)
    assert _names(intake) == (["a.JPG", "b.Jpeg", "c.TIFF"], [])
    assert _names(intake, IntakeSettings(patterns=["*.JPG"], settle_seconds=5)) == (["a.JPG"], [])


def test_hidden_entries_markers_and_partial_downloads_are_ignored(intake: Path) -> None:
    names = [
        ".hidden.jpg",
        ".sync/a.jpg",
        "x.jpg.part",
        "x.tmp",
        "x.PARTIAL",
        "x.jpg.crdownload",
        "x.jpg.done",
        "~$scan.jpg",
    ]
    for name in [*names, "kept.jpg"]:
        _file(intake, name)
    assert _names(intake, IntakeSettings(patterns=["*"], settle_seconds=5)) == (["kept.jpg"], [])


@pytest.mark.parametrize(("recursive", "expected"), [(True, ["a/b/deep.jpg", "top.jpg"]), (False, ["top.jpg"])])
def test_sub_folders_are_read_only_when_recursive(intake: Path, recursive: bool, expected: list[str]) -> None:
    _file(intake, "top.jpg")
    _file(intake, "a/b/deep.jpg")
    assert _names(intake, IntakeSettings(recursive=recursive, settle_seconds=5)) == (expected, [])


def test_ready_is_sorted_by_name(intake: Path) -> None:
    for name in ("c.jpg", "a/z.jpg", "b.jpg", "a.jpg"):
        _file(intake, name)
    assert _names(intake)[0] == ["a.jpg", "a/z.jpg", "b.jpg", "c.jpg"]


def test_a_symlink_leading_outside_is_refused_and_its_target_left_alone(intake: Path, tmp_path: Path) -> None:
    secret = _file(tmp_path / "outside", "secret.jpg", content=b"not yours")
    (intake / "link.jpg").symlink_to(secret)
    (arrival,) = scan_intake(intake, SETTINGS, now=NOW).ready
    assert arrival.path == intake / "link.jpg"
    assert arrival.refused == f"symlink to {secret.resolve()}, outside the intake folder: refused"
    assert arrival.size == 0


def test_a_broken_symlink_is_refused(intake: Path) -> None:
    (intake / "gone.jpg").symlink_to(intake / "nowhere.jpg")
    (arrival,) = scan_intake(intake, SETTINGS, now=NOW).ready
    assert arrival.refused is not None
    assert arrival.refused.startswith("broken symlink")


def test_a_symlink_loop_is_refused_not_raised(intake: Path) -> None:
    (intake / "loop.jpg").symlink_to(intake / "loop.jpg")
    (arrival,) = scan_intake(intake, SETTINGS, now=NOW).ready
    assert arrival.refused is not None
    assert "refused" in arrival.refused


def test_a_symlink_to_a_file_inside_is_refused_and_the_file_ingested_on_its_own(intake: Path) -> None:
    real = _file(intake, "sub/real.jpg", content=b"1234")
    (intake / "alias.jpg").symlink_to(real)
    ready = scan_intake(intake, SETTINGS, now=NOW).ready
    assert [(a.name, a.refused is None) for a in ready] == [("alias.jpg", False), ("sub/real.jpg", True)]
    assert ready[0].refused is not None
    assert "sub/real.jpg, a file inside the intake folder" in ready[0].refused
    assert ready[0].size == 4


def test_symlinked_folders_are_not_followed(intake: Path, tmp_path: Path) -> None:
    _file(tmp_path / "elsewhere", "a.jpg")
    (intake / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert _names(intake) == ([], [])


def test_a_pipe_named_like_a_scan_is_refused_without_opening_it(intake: Path) -> None:
    os.mkfifo(intake / "pipe.jpg")
    (arrival,) = scan_intake(intake, SETTINGS, now=NOW).ready
    assert arrival.refused == "not a regular file (a pipe, socket or device): refused"


def test_a_file_vanishing_between_listing_and_stat_is_skipped(intake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _file(intake, "stays.jpg")
    listed = discover._candidates

    def listing_with_a_ghost(root: Path, recursive: bool) -> Iterator[Path]:
        yield root / "moved-away.jpg"
        yield from listed(root, recursive)

    monkeypatch.setattr(discover, "_candidates", listing_with_a_ghost)
    assert _names(intake) == (["stays.jpg"], [])


def test_a_missing_intake_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        scan_intake(tmp_path / "nope", SETTINGS, now=NOW)


def test_now_defaults_to_the_clock(intake: Path) -> None:
    _file(intake, "in-the-future.jpg", age=-1_000_000_000)  # an mtime in the future: never settled by age
    _file(intake, "written.jpg", age=NOW - time.time())  # written now: settled at once with no settle time
    scan = scan_intake(intake, IntakeSettings(settle_seconds=0))
    assert [a.name for a in scan.ready] == ["written.jpg"]
    assert [p.name for p in scan.waiting] == ["in-the-future.jpg"]


def test_an_old_mtime_set_by_a_copy_tool_does_not_shorten_the_wait(intake: Path) -> None:
    """``cp -p`` and ``rsync -t`` set the source's old mtime, sometimes before the copy has finished; the ctime
    that setting it moves, which no program can set back, keeps the file waiting for the whole settle time."""
    path = intake / "copied with times.jpg"
    path.write_bytes(b"half of a scan")
    os.utime(path, (1_000_000, 1_000_000))
    written = time.time()
    assert [p.name for p in scan_intake(intake, SETTINGS, now=written + 1).waiting] == ["copied with times.jpg"]
    assert [a.name for a in scan_intake(intake, SETTINGS, now=written + 6).ready] == ["copied with times.jpg"]
