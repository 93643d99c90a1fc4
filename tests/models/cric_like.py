"""A tiny CRIC-like data folder (fields with point labels in the six Bethesda terms), for tests of real-data code."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

LABELS = ("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC")


def cric_like(root: Path, n_fields: int = 12, seed: int = 0) -> Path:
    """Fields of pale cells; abnormal nuclei larger and darker; two fields hold only NILM cells."""
    rng = np.random.default_rng(seed)
    rows = ["image,x,y,bethesda,cric_cell_id"]
    cell_id = 0
    for f in range(n_fields):
        field = np.full((200, 260, 3), 235, np.uint8)
        labels = ["NILM"] * 3 if f < 2 else ["NILM", "NILM", LABELS[1 + f % 5]]
        for k, label in enumerate(labels):
            x, y = 50 + 80 * k + int(rng.integers(-5, 5)), 100 + int(rng.integers(-30, 30))
            severity = LABELS.index(label)
            cv2.circle(field, (x, y), 26, (225, 170, 190), -1)
            cv2.circle(field, (x, y), 5 + 2 * severity, (110 - 10 * severity, 70, 150 - 10 * severity), -1)
            rows.append(f"f{f:02d}.jpg,{x},{y},{label},{cell_id}")
            cell_id += 1
        (root / "cric-dev" / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "cric-dev" / "images" / f"f{f:02d}.jpg"), cv2.cvtColor(field, cv2.COLOR_RGB2BGR))
    (root / "cric-dev" / "labels.csv").write_text("\n".join(rows) + "\n")
    return root
