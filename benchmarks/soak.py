"""Soak the intake with faults: scans arriving for minutes while workers are killed and connections cut.

    .venv/bin/python benchmarks/soak.py --scans 1000 --pg          # about 1,000 scans on PostgreSQL
    .venv/bin/python benchmarks/soak.py --scans 100                 # SQLite, a couple of minutes

A writer drops ``--scans`` files into a fresh intake folder over the run: good scans (small PNG, JPEG, TIFF and
BMP), a fifth of them byte-identical copies under other names or in other folders, a tenth bad (empty, cut short,
random bytes named like an image, a header declaring 3.6 gigapixels, GIF), some written slowly in pieces, names
that are not UTF-8 or are very long, and symlinks. Two intake workers (separate processes running
:func:`papscreen.tasks.intake.ingest_pass` in a loop, as the service's passes do) take them. A killer sends
SIGKILL to a random worker every ``--kill-every`` seconds on average, at whatever moment it is in (claiming,
hashing, copying, moving, committing) and starts a new one; on PostgreSQL another thread ends the workers'
connections with ``pg_terminate_backend`` every ``--cut-every`` seconds.

When the writer is done, the kills stop and the workers drain the folder. Then the script checks and prints:

* every file written ends, byte-identical, exactly once in the store or the quarantine (nothing lost, nothing
  deleted, nothing copied twice), and nothing is left in the intake folder;
* every distinct good content has exactly one slide queued for analysis, every other copy is a duplicate;
* no claim is left unfinished and no retry is pending.

It exits non-zero when a check fails. The analysis loop (killed analyses, attempts within the cap) is not part of
this soak yet: ``tests/flows`` covers killed analyses one at a time.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ADMIN_URL = os.environ.get("PAPSCREEN_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


# -- what the writer drops ------------------------------------------------------------------------------------


def _image_bytes(rng: np.random.Generator, fmt: str) -> bytes:
    height, width = int(rng.integers(24, 64)), int(rng.integers(24, 64))
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _bad_bytes(rng: np.random.Generator, kind: str) -> tuple[str, bytes]:
    if kind == "empty":
        return ".jpg", b""
    if kind == "cut":
        data = _image_bytes(rng, "PNG")
        return ".png", data[: len(data) // 2]
    if kind == "random":
        return ".jpg", rng.integers(0, 255, int(rng.integers(10, 4000)), dtype=np.uint8).tobytes()
    if kind == "bomb":
        data = bytearray(_image_bytes(rng, "BMP"))
        data[18:26] = struct.pack("<ii", 60_000, 60_000)
        return ".bmp", bytes(data)
    buffer = io.BytesIO()  # gif: a real image in a format papscreen does not take
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buffer, format="GIF")
    return ".tif", buffer.getvalue()


@dataclass
class Written:
    """Every file the writer created, as (relative name bytes, sha256), and the symlinks with their targets."""

    files: list[tuple[bytes, str]] = field(default_factory=list)
    links: list[tuple[bytes, bytes]] = field(default_factory=list)
    good: set[str] = field(default_factory=set)


def write_scans(intake: Path, count: int, seconds: float, seed: int, written: Written) -> None:
    """Drop ``count`` entries into ``intake`` spread over ``seconds``; record each one in ``written``."""
    rng = np.random.default_rng(seed)
    chooser = random.Random(seed)
    earlier: list[bytes] = []
    for i in range(count):
        roll = chooser.random()
        sub = chooser.choice([b"", b"", b"ward 3/", b"run-" + str(i % 7).encode() + b"/"])
        if roll < 0.2 and earlier:  # a duplicate: the same bytes under another name
            data = chooser.choice(earlier)
            name = sub + f"copy {i}.".encode() + chooser.choice([b"png", b"jpg", b"tif"])
        elif roll < 0.3:
            suffix, data = _bad_bytes(rng, chooser.choice(["empty", "cut", "random", "bomb", "gif"]))
            name = sub + f"bad-{i}".encode() + suffix.encode()
        elif roll < 0.33:
            target = chooser.choice(
                [b"/etc/hostname", b"../outside.png", (earlier and b"scan-0.png") or b"nowhere.png"]
            )
            name = sub + f"link-{i}.png".encode()
            path = Path(os.fsdecode(os.fsencode(intake) + b"/" + name))
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.fsdecode(target), path)
            written.links.append((name, target))
            continue
        else:
            fmt, suffix = chooser.choice([("PNG", "png"), ("JPEG", "jpg"), ("TIFF", "tif"), ("BMP", "bmp")])
            data = _image_bytes(rng, fmt)
            odd = chooser.random()
            if odd < 0.05:
                stem = b"scan-\xe9\xff-" + str(i).encode()  # not UTF-8
            elif odd < 0.08:  # a nested name longer than the database's column, each part within 255 bytes
                stem = b"/".join([b"a rather long folder name " * 8] * 3) + b"/" + b"long " * 40 + str(i).encode()
            else:
                stem = f"scan-{i}".encode()
            name = sub + stem + b"." + suffix.encode()
        path = Path(os.fsdecode(os.fsencode(intake) + b"/" + name))
        path.parent.mkdir(parents=True, exist_ok=True)
        if chooser.random() < 0.05 and len(data) > 8:  # written slowly, in pieces
            with path.open("wb") as handle:
                for piece in range(0, len(data), max(1, len(data) // 4)):
                    handle.write(data[piece : piece + max(1, len(data) // 4)])
                    handle.flush()
                    time.sleep(0.3)
        else:
            partial = path.with_name("." + path.name + ".part")  # how scanners and rsync write: then rename
            partial.write_bytes(data)
            os.rename(partial, path)
        written.files.append((name, hashlib.sha256(data).hexdigest()))
        if name.startswith((sub + b"scan-", sub + b"a rather")):
            earlier.append(data)
            written.good.add(hashlib.sha256(data).hexdigest())
        time.sleep(seconds / count)


# -- the workers ----------------------------------------------------------------------------------------------


def run_worker(home: Path, database_url: str) -> None:
    """An intake worker: passes in a loop until killed; a failed pass (the connection cut) is simply retried."""
    from papscreen.config import load_settings
    from papscreen.db.database import Database
    from papscreen.tasks.intake import ingest_pass

    settings = load_settings(home=home, database_url=database_url)
    settings.intake.settle_seconds = 1.0
    settings.intake.retry_seconds = 0.5
    settings.intake.retry_max_seconds = 2.0
    settings.orchestration.intake_lock_seconds = 5.0
    database = Database(settings.database_url)
    while True:
        try:
            ingest_pass(settings, database)
        except Exception as e:  # noqa: BLE001 - what Prefect's retries do for the service
            print(f"pass failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
        time.sleep(0.05)


class Workers:
    """The intake worker processes, restarted after each kill."""

    def __init__(self, count: int, home: Path, database_url: str, log: Path) -> None:
        self.home, self.database_url, self.log = home, database_url, log
        self.processes = [self._start() for _ in range(count)]
        self.kills = 0

    def _start(self) -> subprocess.Popen:
        command = [sys.executable, __file__, "worker", "--home", str(self.home), "--database-url", self.database_url]
        with self.log.open("a") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def kill_one(self, chooser: random.Random) -> None:
        index = chooser.randrange(len(self.processes))
        self.processes[index].send_signal(signal.SIGKILL)
        self.processes[index].wait()
        self.kills += 1
        self.processes[index] = self._start()

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGKILL)
            process.wait()


def cut_connections(admin_url: str, database_name: str, stop: threading.Event, every: float, cuts: list[int]) -> None:
    """End every connection of the workers to ``database_name`` now and then, as a database failover would."""
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    chooser = random.Random(7)
    while not stop.wait(chooser.uniform(0.5, 1.5) * every):
        with engine.connect() as connection:
            ended = connection.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database_name},
            ).scalar_one()
        cuts.append(int(ended))
    engine.dispose()


# -- the checks -----------------------------------------------------------------------------------------------


def _kept_files(*roots: Path) -> collections.Counter[str]:
    """sha256 of every kept scan under the roots (sidecars and markers aside); a link counts as its target."""
    kept: collections.Counter[str] = collections.Counter()
    for root in roots:
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                if name.endswith((".reason.json", ".done")) or ".reason." in name:
                    continue
                if path.is_symlink():
                    kept["link:" + os.readlink(path)] += 1
                else:
                    kept[hashlib.sha256(path.read_bytes()).hexdigest()] += 1
    return kept


def check(home: Path, database_url: str, written: Written) -> dict[str, object]:
    """Compare what was written with what the store, the quarantine and the database hold."""
    from papscreen.config import load_settings
    from papscreen.db import queries
    from papscreen.db.database import Database
    from papscreen.db.schema import SlideStatus

    settings = load_settings(home=home, database_url=database_url)
    database = Database(settings.database_url)
    expected = collections.Counter(sha for _name, sha in written.files)
    expected.update("link:" + os.fsdecode(target) for _name, target in written.links)
    kept = _kept_files(settings.store_dir, settings.quarantine_dir)
    left = [p for p in settings.intake_dir.rglob("*") if p.is_file() or p.is_symlink()]
    with database.session() as session:
        slides = queries.list_slides(session)
        unstored = queries.unstored_claims(session)
        retries = queries.intake_retries(session)
    queued_by_sha = collections.Counter(s.sha256 for s in slides if s.status == SlideStatus.QUEUED)
    duplicates = sum(1 for s in slides if s.status == SlideStatus.DUPLICATE)
    quarantined = sum(1 for s in slides if s.status == SlideStatus.QUARANTINED)
    statuses = collections.Counter(str(s.status.value) for s in slides)
    others = [
        f"slide {s.id} ({s.original_name}): {s.status.value}, {s.error}"
        for s in slides
        if s.status not in (SlideStatus.QUEUED, SlideStatus.DUPLICATE, SlideStatus.QUARANTINED)
    ]
    database.dispose()
    problems = []
    if kept != expected:
        missing, extra = expected - kept, kept - expected
        problems.append(f"files lost or copied: {sum(missing.values())} missing, {sum(extra.values())} extra")
    if left:
        problems.append(f"{len(left)} files left in the intake folder: {[p.name for p in left[:5]]}")
    not_once = [sha for sha in written.good if queued_by_sha[sha] != 1]
    if not_once:
        problems.append(f"{len(not_once)} good contents without exactly one slide queued for analysis")
    if unstored:
        problems.append(f"{len(unstored)} claims never finished")
    if retries:
        problems.append(f"{len(retries)} files still waiting for a retry")
    problems += others
    return {
        "entries_written": len(written.files) + len(written.links),
        "distinct_good_scans": len(written.good),
        "slides": len(slides),
        "queued_once": len(written.good) - len(not_once),
        "duplicates": duplicates,
        "quarantined": quarantined,
        "statuses": dict(statuses),
        "problems": problems,
    }


# -- the run --------------------------------------------------------------------------------------------------


def _database(pg: bool, home: Path, admin_url: str) -> tuple[str, str | None]:
    if not pg:
        return f"sqlite:///{home / 'papscreen.db'}", None
    import sqlalchemy as sa

    name = f"papscreen_soak_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return str(sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)), name


def _drop(name: str, admin_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _drained(home: Path) -> bool:
    intake = home / "intake"
    return not any(p.is_file() or p.is_symlink() for p in intake.rglob("*"))


def soak(args: argparse.Namespace) -> dict[str, object]:
    from papscreen.config import load_settings
    from papscreen.db import migrate
    from papscreen.db.database import Database

    home = Path(tempfile.mkdtemp(prefix="papscreen-soak-"))
    database_url, pg_name = _database(args.pg, home, args.admin_url)
    settings = load_settings(home=home, database_url=database_url)
    settings.ensure_folders()
    database = Database(settings.database_url)
    migrate.upgrade(database)
    database.dispose()
    written = Written()
    stop = threading.Event()
    cuts: list[int] = []
    started = time.perf_counter()
    workers = Workers(args.workers, home, database_url, home / "workers.log")
    cutter = None
    if pg_name:
        cutter = threading.Thread(target=cut_connections, args=(args.admin_url, pg_name, stop, args.cut_every, cuts))
        cutter.start()
    writer = threading.Thread(
        target=write_scans, args=(settings.intake_dir, args.scans, args.seconds, args.seed, written)
    )
    writer.start()
    chooser = random.Random(args.seed)
    while writer.is_alive():
        time.sleep(chooser.uniform(0.3, 1.7) * args.kill_every)
        workers.kill_one(chooser)
    stop.set()
    if cutter:
        cutter.join()
    deadline = time.monotonic() + args.drain_seconds
    while not _drained(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # a last pass settles any claim whose file the final moves left recorded but unsettled
    workers.stop()
    report = check(home, database_url, written)
    report.update(
        scans=args.scans,
        backend="postgresql" if pg_name else "sqlite",
        workers=args.workers,
        kills=workers.kills,
        connections_cut=sum(cuts),
        seconds=round(time.perf_counter() - started, 1),
        home=str(home),
    )
    if not args.keep:
        if pg_name:
            _drop(pg_name, args.admin_url)
        shutil.rmtree(home, ignore_errors=True)
        report.pop("home")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    run = sub.add_parser("run", help="the soak (the default)")
    worker = sub.add_parser("worker", help="one intake worker (started by the soak)")
    worker.add_argument("--home", type=Path, required=True)
    worker.add_argument("--database-url", required=True)
    for p in (parser, run):
        p.add_argument("--scans", type=int, default=1000)
        p.add_argument("--seconds", type=float, default=None, help="how long the writer takes (default scans/8)")
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--pg", action="store_true", help="PostgreSQL (cut connections too) instead of SQLite")
        p.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL server to create the soak database on")
        p.add_argument("--kill-every", type=float, default=2.0, help="mean seconds between two SIGKILLs")
        p.add_argument("--cut-every", type=float, default=3.0, help="mean seconds between two connection cuts")
        p.add_argument("--drain-seconds", type=float, default=300.0)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--keep", action="store_true", help="keep the soak's folder and PostgreSQL database")
        p.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    if args.role == "worker":
        run_worker(args.home, args.database_url)
        return 0
    args.seconds = args.seconds if args.seconds is not None else args.scans / 8
    report = soak(args)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
