"""Watched-folder intake, the file-system half: find arrived scans, check them, move them without loss.

:func:`scan_intake` lists the files in the intake folder that have finished arriving (a ``NAME.done`` marker or
an mtime older than the settle time) and refuses symlinks; :func:`probe_scan` opens each with papscreen's own
readers to prove it can be analysed; :func:`move_file` puts it in the store (or quarantine) atomically without
overwriting anything, at the deterministic place :func:`destination` names; :func:`write_reason` leaves a note
beside a quarantined file. No database and no Prefect here: the flows compose these functions.
"""

from papscreen.intake.discover import Arrival, Scan, printable, scan_intake
from papscreen.intake.files import (
    destination,
    move_file,
    remove_stale_partials,
    sha256_of,
    unchanged_since,
    write_reason,
)
from papscreen.intake.probe import ScanInfo, probe_scan

__all__ = [
    "Arrival",
    "Scan",
    "ScanInfo",
    "destination",
    "move_file",
    "printable",
    "probe_scan",
    "remove_stale_partials",
    "scan_intake",
    "sha256_of",
    "unchanged_since",
    "write_reason",
]
