"""Shapes and names shared by every dataset papscreen reads or writes.

The original project's layouts:

* DB_3 (stage 1): ``train/`` and ``validation/``, each with a ``cell`` and a ``background`` folder of small
  RGB patches. A patch is a ``stage1_window_px`` square of the field at full resolution, resized to
  ``STAGE1_INPUT_PX`` (20) pixels: the *working scale* of stage 1 is ``20 / window``.
* DB_4 (stage 2): ``train/`` and ``validation/``, with folders ``1``..``4`` (HSIL, LSIL, NILM, SCC) or folders
  named by class, of ``DEFAULT_CROP_PX`` (250) pixel crops centred on a nucleus, cut at full resolution.

Every dataset papscreen writes also carries a ``manifest.json`` describing how it was made.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "DB3_CLASSES",
    "DB3_FOLDER_ALIASES",
    "DEFAULT_CROP_PX",
    "DEFAULT_STAGE1_SCALE",
    "IMAGE_SUFFIXES",
    "MANIFEST_NAME",
    "SPLITS",
    "SPLIT_ALIASES",
    "STAGE1_INPUT_PX",
]

STAGE1_INPUT_PX = 20
"""Side of a stage-1 input patch, in pixels at the working scale."""

DEFAULT_STAGE1_SCALE = 0.5
"""Default working scale of stage 1: a 20 px patch sees a 40 px window of the full-resolution field."""

DEFAULT_CROP_PX = 250
"""Side of a stage-2 crop at full resolution, as in the original DB_4."""

SPLITS: tuple[str, ...] = ("train", "validation")
SPLIT_ALIASES: Mapping[str, str] = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
}

DB3_CLASSES: tuple[str, ...] = ("background", "cell")
"""Stage-1 class order: index 1 is the cell probability."""

DB3_FOLDER_ALIASES: Mapping[str, str] = {
    "cell": "cell",
    "cells": "cell",
    "background": "background",
    "backgrounds": "background",
    "bg": "background",
}

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
MANIFEST_NAME = "manifest.json"
