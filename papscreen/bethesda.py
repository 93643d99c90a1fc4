"""The Bethesda squamous categories papscreen grades, and how other labels map onto them.

The canonical order is by severity (NILM < LSIL < HSIL < SCC), so a class index also ranks its grade.
The original project numbered its DB_4 folders alphabetically (1=HSIL, 2=LSIL, 3=NILM, 4=SCC);
``LEGACY_DB4_FOLDERS`` keeps that meaning for reading its datasets and importing its models.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "ABNORMAL_CLASSES",
    "BETHESDA_CLASSES",
    "CLASS_COLOURS",
    "DEFAULT_EXTRA_LABEL_MAP",
    "LEGACY_DB4_FOLDERS",
    "LEGACY_MODEL_CLASSES",
    "REPORT_INTERPRETATIONS",
    "SIGNOUT_BY_SCREENER",
    "class_index",
    "normalise_label",
]

BETHESDA_CLASSES: tuple[str, ...] = ("NILM", "LSIL", "HSIL", "SCC")
"""Canonical class order of every papscreen stage-2 model, least to most severe."""

ABNORMAL_CLASSES: tuple[str, ...] = ("LSIL", "HSIL", "SCC")

CLASS_COLOURS: Mapping[str, tuple[int, int, int]] = {
    "NILM": (0, 158, 115),
    "LSIL": (230, 159, 0),
    "HSIL": (213, 94, 0),
    "SCC": (204, 0, 102),
}
"""RGB colour of each class on overlays, galleries and the dashboard (Okabe-Ito based, readable by most
colour-blind people); severity darkens from green to magenta."""

LEGACY_DB4_FOLDERS: Mapping[str, str] = {"1": "HSIL", "2": "LSIL", "3": "NILM", "4": "SCC"}
"""Folder names of the original project's DB_4 and what they mean."""

LEGACY_MODEL_CLASSES: tuple[str, ...] = ("HSIL", "LSIL", "NILM", "SCC")
"""Output order of the original project's 4-class ResNet50 head."""

DEFAULT_EXTRA_LABEL_MAP: Mapping[str, str] = {"ASC-US": "LSIL", "ASC-H": "HSIL"}
"""The usual mapping of Bethesda labels that have no class of their own in the 4-class scheme."""


REPORT_INTERPRETATIONS: tuple[str, ...] = ("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC", "unsatisfactory")
"""What a lab reports for a slide (Bethesda 2014, squamous): the four graded classes, the two atypical ones that
have no class of their own in the model, and a specimen unsatisfactory for evaluation."""

SIGNOUT_BY_SCREENER: tuple[str, ...] = ("NILM", "unsatisfactory")
"""Interpretations a cytotechnologist may sign out alone; any other goes on to a pathologist."""


def _canonical_spelling(label: str) -> str:
    return label.strip().upper().replace("_", "-").replace(" ", "-")


def normalise_label(label: str, extra_label_map: Mapping[str, str] = DEFAULT_EXTRA_LABEL_MAP) -> str | None:
    """Return the 4-class Bethesda name for ``label``, or ``None`` when it has none.

    Spelling is forgiving (case, ``_`` or space for ``-``); extra labels such as ASC-US go through
    ``extra_label_map``, whose targets must themselves be one of ``BETHESDA_CLASSES``.

    Examples:
        >>> normalise_label("hsil")
        'HSIL'
        >>> normalise_label("ASC_US")
        'LSIL'
        >>> normalise_label("neutrophil") is None
        True
    """
    spelled = _canonical_spelling(label)
    if spelled in BETHESDA_CLASSES:
        return spelled
    mapped = {_canonical_spelling(k): v for k, v in extra_label_map.items()}.get(spelled)
    if mapped is None:
        return None
    mapped = _canonical_spelling(mapped)
    return mapped if mapped in BETHESDA_CLASSES else None


def class_index(name: str) -> int:
    """Index of a canonical class name in ``BETHESDA_CLASSES``.

    Examples:
        >>> class_index("HSIL")
        2
    """
    return BETHESDA_CLASSES.index(name)
