"""Soak the intake and the analyses with faults: scans arriving while workers are killed and the database fails.

    .venv/bin/python benchmarks/soak.py --scans 1000 --pg          # about 1,000 scans on PostgreSQL
    .venv/bin/python benchmarks/soak.py --scans 100 --intake-only  # SQLite, intake passes only, under a minute

A writer drops ``--scans`` files into a fresh intake folder over ``scans/8`` seconds: good scans (small PNG, JPEG,
TIFF and BMP), a fifth of them byte-identical copies under other names or in other folders, a tenth bad (empty,
cut short, random bytes named like an image, a header declaring 3.6 gigapixels, a GIF), some written slowly in
pieces, names that are not UTF-8 or longer than the database column, and symlinks. Two workers (separate
processes) run the intake flow in a loop, as the service's schedule does, with the analyses inline: the shipped
models grade every good scan, against a Prefect server of the soak's own (``--intake-only``: plain intake passes,
no Prefect, no analyses). A killer sends SIGKILL to a random worker every ``--kill-every`` seconds on average, at
whatever moment it is in (claiming, hashing, moving, beginning or storing an analysis) and starts a new one; the
kills go on ``--kill-seconds`` after the last scan is written, while the backlog is analysed. With ``--pg`` the
database is a PostgreSQL server of the soak's own (the machine's ``initdb``/``pg_ctl``): a thread ends the
workers' connections with ``pg_terminate_backend`` every ``--cut-every`` seconds, and half-way through the writing
the server is stopped for 5 seconds and started again. With ``--disk-full`` (root: it mounts a tmpfs) the store is
a file system of its own, so every move into it is a verified copy, and a quarter of the way through it is filled
to the last byte for 10 seconds.

Then the workers drain the backlog without faults, and the script checks and prints:

* every file written ends, byte-identical, exactly once in the store or the quarantine (nothing lost, nothing
  deleted, nothing copied twice), and nothing is left in the intake folder;
* every distinct good content has exactly one slide done with exactly one analysis (queued, with
  ``--intake-only``), unless it was quarantined for being interrupted ``orchestration.max_attempts`` times (the
  kills can do that; counted apart); every other copy is a duplicate; every bad file is quarantined;
* no slide was taken more often than the attempt cap, no claim is left unfinished and no retry is pending.

It exits non-zero when a check fails."""

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
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from papscreen.config import Settings
    from tests.flows.private_postgres import PrivatePostgres

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.flows.private_postgres: the throw-away PostgreSQL server the tests use


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


WORKER_ENV = {
    "PAPSCREEN_DEVICE": "cpu",
    "PAPSCREEN_INTAKE__SETTLE_SECONDS": "1",
    "PAPSCREEN_INTAKE__RETRY_SECONDS": "0.5",
    "PAPSCREEN_INTAKE__RETRY_MAX_SECONDS": "2",
    "PAPSCREEN_ORCHESTRATION__INTAKE_LOCK_SECONDS": "5",
    "PAPSCREEN_ORCHESTRATION__INTAKE_BATCH": "10",
    "PAPSCREEN_ORCHESTRATION__RETRY_DELAYS_SECONDS": "[0.5, 1, 2]",
    "PAPSCREEN_ANALYSIS__READER_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}
"""What every worker runs with: settings as the service reads them (``PAPSCREEN_*``), quick to settle and retry."""


def run_worker(analyze: bool) -> None:
    """A worker until killed: the intake flow with inline analyses, or (``analyze`` false) intake passes alone.

    A failed pass (a connection cut, the database restarting) is simply followed by the next, as the service's
    schedule does.
    """
    if analyze:
        from papscreen.flows.intake import intake_flow

        def one_pass() -> None:
            intake_flow(analyze=True, dispatch="inline")
    else:
        from papscreen.config import load_settings
        from papscreen.db.database import Database
        from papscreen.tasks.intake import ingest_pass

        settings = load_settings()
        database = Database(settings.database_url)

        def one_pass() -> None:
            ingest_pass(settings, database)

    while True:
        try:
            one_pass()
        except Exception as e:  # noqa: BLE001 - the next scheduled pass is what the service would do
            print(f"pass failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
        time.sleep(0.05)


class Workers:
    """The intake worker processes, restarted after each kill."""

    def __init__(self, count: int, env: dict[str, str], analyze: bool, log: Path) -> None:
        self.env, self.analyze, self.log = env, analyze, log
        self.processes = [self._start() for _ in range(count)]
        self.kills = 0

    def _start(self) -> subprocess.Popen:
        command = [sys.executable, __file__, "worker", *(["--analyze"] if self.analyze else [])]
        with self.log.open("a") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)

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
        try:
            with engine.connect() as connection:
                ended = connection.execute(
                    sa.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": database_name},
                ).scalar_one()
        except sa.exc.OperationalError:  # the server is restarting: nothing to cut
            continue
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
                if name.endswith((".reason.json", ".done")) or ".reason." in name or name == FILLER:
                    continue
                if path.is_symlink():
                    kept["link:" + os.readlink(path)] += 1
                else:
                    kept[hashlib.sha256(path.read_bytes()).hexdigest()] += 1
    return kept


def check(settings: Settings, written: Written, analyze: bool) -> dict[str, object]:
    """Compare what was written with what the store, the quarantine and the database hold."""
    from sqlalchemy import func, select

    from papscreen.db import queries
    from papscreen.db.database import Database
    from papscreen.db.schema import Analysis, SlideStatus

    database = Database(settings.database_url)
    expected = collections.Counter(sha for _name, sha in written.files)
    expected.update("link:" + os.fsdecode(target) for _name, target in written.links)
    kept = _kept_files(settings.store_dir, settings.quarantine_dir)
    left = [p for p in settings.intake_dir.rglob("*") if p.is_file() or p.is_symlink()]
    with database.session() as session:
        slides = queries.list_slides(session, limit=10**9)
        unstored = queries.unstored_claims(session)
        retries = queries.intake_retries(session)
        analyses = dict(session.execute(select(Analysis.slide_id, func.count()).group_by(Analysis.slide_id)).all())
    database.dispose()
    finished = SlideStatus.DONE if analyze else SlideStatus.QUEUED
    kept_once = collections.Counter(s.sha256 for s in slides if s.status == finished)
    capped = [
        s
        for s in slides
        if s.status == SlideStatus.QUARANTINED and "interrupted" in (s.error or "") and s.sha256 in written.good
    ]
    statuses = collections.Counter(str(s.status.value) for s in slides)
    expected_states = {SlideStatus.DUPLICATE, SlideStatus.QUARANTINED, finished}
    problems = [
        f"slide {s.id} ({s.original_name}): {s.status.value}, {s.error}"
        for s in slides
        if s.status not in expected_states
    ]
    if kept != expected:
        missing, extra = expected - kept, kept - expected
        problems.append(f"files lost or copied: {sum(missing.values())} missing, {sum(extra.values())} extra")
    if left:
        problems.append(f"{len(left)} files left in the intake folder: {[p.name for p in left[:5]]}")
    capped_shas = {s.sha256 for s in capped}
    not_once = [sha for sha in written.good if kept_once[sha] != 1 and sha not in capped_shas]
    if not_once:
        problems.append(f"{len(not_once)} good contents without exactly one slide {finished.value}")
    if analyze:
        twice = [s.id for s in slides if s.status == SlideStatus.DONE and analyses.get(s.id, 0) != 1]
        if twice:
            problems.append(f"{len(twice)} done slides without exactly one analysis: {twice[:5]}")
    over = [s.id for s in slides if s.attempts > settings.orchestration.max_attempts]
    if over:
        problems.append(f"{len(over)} slides taken more than {settings.orchestration.max_attempts} times: {over[:5]}")
    if unstored:
        problems.append(f"{len(unstored)} claims never finished")
    if retries:
        problems.append(f"{len(retries)} files still waiting for a retry")
    return {
        "entries_written": len(written.files) + len(written.links),
        "distinct_good_scans": len(written.good),
        "slides": len(slides),
        f"good_scans_{finished.value}_once": len(written.good) - len(not_once) - len(capped_shas),
        "good_scans_quarantined_at_the_attempt_cap": len(capped_shas),
        "most_attempts": max((s.attempts for s in slides), default=0),
        "statuses": dict(statuses),
        "problems": problems,
    }


# -- the run --------------------------------------------------------------------------------------------------


def _private_postgres() -> PrivatePostgres:
    """A PostgreSQL server of the soak's own (the machine's binaries), so it can be restarted mid-run."""
    from tests.flows.private_postgres import PrivatePostgres, find_pg_bin

    binaries = find_pg_bin()
    if binaries is None:
        raise SystemExit("--pg needs PostgreSQL's server binaries (initdb, pg_ctl): apt-get install postgresql")
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="papscreen-soak-pg-")), binaries).init()
    server.start()
    return server


def restart_postgres(server: PrivatePostgres, at: float, down_seconds: float, restarts: list[float]) -> None:
    """Stop the server ``at`` seconds from now for ``down_seconds``, as a database upgrade or a crash would."""
    time.sleep(at)
    server.stop()
    stopped = time.perf_counter()
    time.sleep(down_seconds)
    server.start()
    restarts.append(round(time.perf_counter() - stopped, 1))


FILLER = ".soak-filler"
"""The file that fills the store during the disk-full episode (not a scan; the checks skip it)."""


def mount_store(store: Path) -> None:
    """Put the store on a file system of its own (a tmpfs), so it can fill up; moves into it then copy."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(store)], check=True, capture_output=True)


def fill_store(store: Path, at: float, full_seconds: float, episodes: list[float]) -> None:
    """``at`` seconds from now, fill the store's file system to the last byte for ``full_seconds``, then free it."""
    time.sleep(at)
    filler = store / FILLER
    with filler.open("wb", buffering=0) as handle:
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                handle.write(chunk)
        except OSError:
            pass
        try:
            while True:  # the last bytes too: a scan of a few kilobytes must not fit
                handle.write(b"\0" * 512)
        except OSError:
            pass
    started = time.perf_counter()
    time.sleep(full_seconds)
    filler.unlink()
    episodes.append(round(time.perf_counter() - started, 1))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _settled(settings: Settings, analyze: bool) -> bool:
    """The intake folder is empty and, when analysing, no slide is queued or being analysed."""
    from papscreen.db import queries
    from papscreen.db.database import Database
    from papscreen.db.schema import SlideStatus

    if any(p.is_file() or p.is_symlink() for p in settings.intake_dir.rglob("*")):
        return False
    if not analyze:
        return True
    database = Database(settings.database_url)
    try:
        with database.session() as session:
            counts = queries.status_counts(session)
    except Exception:  # noqa: BLE001 - the database may be restarting: not settled yet
        return False
    finally:
        database.dispose()
    return counts.get(SlideStatus.QUEUED, 0) == 0 and counts.get(SlideStatus.PROCESSING, 0) == 0


def soak(args: argparse.Namespace) -> dict[str, object]:
    from papscreen.cli.service_cmd import install_default_models, local_prefect_server
    from papscreen.config import load_settings
    from papscreen.db import migrate
    from papscreen.db.database import Database

    analyze = not args.intake_only
    home = Path(tempfile.mkdtemp(prefix="papscreen-soak-"))
    server = _private_postgres() if args.pg else None
    database_url = server.create_database("papscreen") if server else f"sqlite:///{home / 'papscreen.db'}"
    env = {
        **os.environ,
        **WORKER_ENV,
        "PAPSCREEN_HOME": str(home),
        "PAPSCREEN_DATABASE_URL": database_url,
        "PAPSCREEN_ORCHESTRATION__PREFECT_PORT": str(_free_port()),
    }
    env.pop("PAPSCREEN_CONFIG", None)
    settings = load_settings(home=home, database_url=database_url)
    settings.orchestration.prefect_port = int(env["PAPSCREEN_ORCHESTRATION__PREFECT_PORT"])
    settings.ensure_folders()
    database = Database(settings.database_url)
    migrate.upgrade(database)
    database.dispose()
    with ExitStack() as stack:
        if args.disk_full:
            mount_store(settings.store_dir)
            stack.callback(subprocess.run, ["umount", "-l", str(settings.store_dir)], check=False)
        if analyze:
            print(f"models: {install_default_models(settings)}", flush=True)
            env.pop("PREFECT_API_URL", None)
            prefect = stack.enter_context(local_prefect_server(settings))
            env["PREFECT_API_URL"] = prefect.wait_ready()
        report = _run(args, settings, env, server, analyze)
    report.update(home=str(home))
    if server is not None:
        server.stop()
        report.update(postgres=str(server.root))
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
        report.pop("home")
        if server is not None:
            shutil.rmtree(server.root, ignore_errors=True)
            report.pop("postgres")
    return report


def _run(
    args: argparse.Namespace, settings: Settings, env: dict[str, str], server: PrivatePostgres | None, analyze: bool
) -> dict[str, object]:
    """Write, kill and cut while the workers run; let them drain; check."""
    written = Written()
    stop = threading.Event()
    cuts: list[int] = []
    started = time.perf_counter()
    workers = Workers(args.workers, env, analyze, settings.home / "workers.log")
    cutter = restarter = filler = None
    restarts: list[float] = []
    full: list[float] = []
    if args.disk_full:
        filler = threading.Thread(target=fill_store, args=(settings.store_dir, args.seconds / 4, 10.0, full))
        filler.start()
    if server is not None:
        cutter = threading.Thread(target=cut_connections, args=(server.url(), "papscreen", stop, args.cut_every, cuts))
        cutter.start()
        restarter = threading.Thread(target=restart_postgres, args=(server, args.seconds / 2, 5.0, restarts))
        restarter.start()
    writer = threading.Thread(
        target=write_scans, args=(settings.intake_dir, args.scans, args.seconds, args.seed, written)
    )
    writer.start()
    chooser = random.Random(args.seed)
    kills_end: float | None = None
    while kills_end is None or (time.monotonic() < kills_end and not _settled(settings, analyze)):
        time.sleep(chooser.uniform(0.3, 1.7) * args.kill_every)
        workers.kill_one(chooser)
        if kills_end is None and not writer.is_alive():
            written_at = time.perf_counter()
            kills_end = time.monotonic() + args.kill_seconds  # faults go on while the backlog is analysed
    stop.set()
    for thread in (cutter, restarter, filler):
        if thread is not None:
            thread.join()
    deadline = time.monotonic() + args.drain_seconds
    while not _settled(settings, analyze) and time.monotonic() < deadline:
        time.sleep(1.0)
    time.sleep(3)  # a last pass settles any claim whose file the final moves left recorded but unsettled
    workers.stop()
    report = check(settings, written, analyze)
    report.update(
        scans=args.scans,
        backend="postgresql" if server else "sqlite",
        analyses=analyze,
        workers=args.workers,
        kills=workers.kills,
        connections_cut=sum(cuts),
        cut_rounds=len(cuts),
        postgres_restarts_seconds_down=restarts,
        store_full_seconds=full,
        seconds=round(time.perf_counter() - started, 1),
        drain_seconds=round(time.perf_counter() - written_at, 1),
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    run = sub.add_parser("run", help="the soak (the default)")
    worker = sub.add_parser("worker", help="one worker (started by the soak, configured by its environment)")
    worker.add_argument("--analyze", action="store_true")
    for p in (parser, run):
        p.add_argument("--scans", type=int, default=1000)
        p.add_argument("--seconds", type=float, default=None, help="how long the writer takes (default scans/8)")
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--pg", action="store_true", help="PostgreSQL (cut connections too) instead of SQLite")
        p.add_argument("--kill-every", type=float, default=2.0, help="mean seconds between two SIGKILLs")
        p.add_argument("--cut-every", type=float, default=3.0, help="mean seconds between two connection cuts")
        p.add_argument(
            "--kill-seconds", type=float, default=60.0, help="faults go on this long after the last scan is written"
        )
        p.add_argument("--drain-seconds", type=float, default=600.0, help="then, at most this long without faults")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--keep", action="store_true", help="keep the soak's folder and PostgreSQL database")
        p.add_argument(
            "--disk-full",
            action="store_true",
            help="the store on a tmpfs of its own (needs root), filled to the last byte for 10 s a quarter of the way",
        )
        p.add_argument(
            "--intake-only", action="store_true", help="workers ingest only (no Prefect server, no analyses)"
        )
        p.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    if args.role == "worker":
        run_worker(args.analyze)
        return 0
    args.seconds = args.seconds if args.seconds is not None else args.scans / 8
    report = soak(args)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
