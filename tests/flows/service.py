"""What the flow tests share: a service configured on a test database, champion models, synthetic scans."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from papscreen.config import Settings, load_settings
from papscreen.datasets.synthetic import render_field
from papscreen.db.database import Database
from papscreen.imaging.image_io import write_rgb
from papscreen.models.card import read_card
from papscreen.models.checkpoints import resolve_card_path
from papscreen.tasks.analysis import MODEL_CACHE
from papscreen.tasks.registry import register_saved_model

__all__ = [
    "OLD",
    "configure_service",
    "copy_settled",
    "mark_settled",
    "register_champions",
    "start_service",
    "write_field_scan",
]

OLD = 1_000_000_000.0
"""An mtime long past: a file dropped "at once" before the pass has settled."""


def configure_service(monkeypatch: pytest.MonkeyPatch, database: Database, **env: str) -> Settings:
    """Point papscreen's settings (as flows read them: ``PAPSCREEN_*``) at the test database, on the CPU."""
    values = {
        "PAPSCREEN_DATABASE_URL": database.url.render_as_string(hide_password=False),
        "PAPSCREEN_DEVICE": "cpu",
        "PAPSCREEN_INTAKE__SETTLE_SECONDS": "30",
        "PAPSCREEN_ORCHESTRATION__RETRY_DELAYS_SECONDS": "[0.5, 1, 2]",
        "PAPSCREEN_ANALYSIS__READER_THREADS": "2",
        **env,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    settings.ensure_folders()
    return settings


def register_champions(database: Database, folders: tuple[Path, Path]) -> None:
    """Register the session's trained models; the first of each stage becomes its champion."""
    for folder in folders:
        register_saved_model(database, folder, read_card(resolve_card_path(folder)), actor="test")


def start_service(
    monkeypatch: pytest.MonkeyPatch, database: Database, folders: tuple[Path, Path], **env: str
) -> Settings:
    """A configured service whose champions are the session's trained models, with a cold model cache."""
    settings = configure_service(monkeypatch, database, **env)
    register_champions(database, folders)
    MODEL_CACHE.clear()
    return settings


def write_field_scan(
    path: Path, seed: int, *, hsil: int = 0, size: tuple[int, int] = (768, 576), settled: bool = True
) -> Path:
    """A small synthetic field (NILM cells, ``hsil`` HSIL) as PNG, JPEG or TIFF by the path's suffix.

    ``settled``: the file is finished, as far as the intake can tell (:func:`mark_settled`); otherwise it is a
    fresh file the intake waits for.
    """
    rng = np.random.default_rng(seed)
    composition = {"NILM": 12, **({"HSIL": hsil} if hsil else {})}
    field = render_field(rng, composition, width=size[0], height=size[1], n_inflammatory=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_rgb(path, field.rgb)
    return mark_settled(path) if settled else path


def mark_settled(path: Path) -> Path:
    """Declare a file in the intake finished, as a scanner does: an old mtime and a ``NAME.done`` marker.

    The intake counts its settle time from the later of mtime and ctime, and a test cannot age a ctime: the
    marker is what makes the file be taken at once (the marker moves along with it, or is deleted).
    """
    os.utime(path, (OLD, OLD))
    path.with_name(path.name + ".done").touch()
    return path


def copy_settled(source: Path, target: Path) -> Path:
    """Copy a scan into the intake, settled (:func:`mark_settled`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return mark_settled(target)
