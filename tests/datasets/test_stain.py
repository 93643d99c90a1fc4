"""Sampling background windows: clear ones avoid all stain, hard ones only keep their centre clear."""

from __future__ import annotations

import numpy as np
import pytest

from papscreen.datasets.stain import (
    centre_exclusion_mask,
    sample_centred_windows,
    sample_free_windows,
)


def _overlaps(a: tuple[int, int], b: tuple[int, int], window: int) -> bool:
    return abs(a[0] - b[0]) < window and abs(a[1] - b[1]) < window


def _stained_field(seed: int) -> np.ndarray:
    """A 200x300 nucleus mask: a few random blobs, so most windows hold stain somewhere."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((200, 300), bool)
    for y, x in zip(rng.integers(0, 200, 25), rng.integers(0, 300, 25), strict=True):
        mask[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4] = True
    return mask


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_centred_windows_keep_their_centre_clear_but_may_hold_stain(seed: int) -> None:
    window = 40
    nuclei = _stained_field(seed)
    points = [(40.0, 50.0), (250.0, 150.0)]
    centres = centre_exclusion_mask(nuclei, points, window)
    windows = sample_centred_windows(centres, window, 30, np.random.default_rng(seed))
    assert windows
    stained_windows = 0
    ys, xs = np.nonzero(nuclei)
    for k, (top, left) in enumerate(windows):
        assert 0 <= top <= 200 - window
        assert 0 <= left <= 300 - window
        cy, cx = top + window // 2, left + window // 2
        assert np.hypot(ys - cy, xs - cx).min() > window // 4, "a stained pixel near the centre"
        for px, py in points:
            assert np.hypot(px - cx, py - cy) > window // 2, "an annotated point near the centre"
        assert not any(_overlaps((top, left), other, window) for other in windows[:k])
        stained_windows += bool(nuclei[top : top + window, left : left + window].any())
    assert stained_windows > 0, "hard windows are allowed to, and here should, hold stain off-centre"


def test_centred_windows_avoid_taken_windows() -> None:
    window = 20
    taken = sample_free_windows(np.zeros((100, 100), bool), window, 6, np.random.default_rng(0))
    windows = sample_centred_windows(np.zeros((100, 100), bool), window, 50, np.random.default_rng(1), taken=taken)
    assert windows
    for top, left in windows:
        assert not any(_overlaps((top, left), other, window) for other in taken)
    assert len(taken) + len(windows) <= (100 // window) ** 2


def test_centred_windows_are_deterministic_for_a_seed() -> None:
    centres = centre_exclusion_mask(_stained_field(3), [(100.0, 100.0)], 40)
    first = sample_centred_windows(centres, 40, 10, np.random.default_rng(7))
    assert first == sample_centred_windows(centres, 40, 10, np.random.default_rng(7))
    assert first != sample_centred_windows(centres, 40, 10, np.random.default_rng(8))


@pytest.mark.parametrize(
    ("shape", "count"), [((30, 30), 3), ((100, 100), 0)], ids=["image-smaller-than-window", "none-wanted"]
)
def test_centred_windows_nothing_to_give(shape: tuple[int, int], count: int) -> None:
    assert sample_centred_windows(np.zeros(shape, bool), 40, count, np.random.default_rng(0)) == []


def test_no_centre_is_allowed_near_a_blob_or_point() -> None:
    nuclei = np.zeros((120, 120), bool)
    nuclei[60, 60] = True
    mask = centre_exclusion_mask(nuclei, [(20.0, 20.0)], 40)
    assert mask[60, 70]  # blob: window // 4 = 10
    assert not mask[60, 71]
    assert mask[20, 40]  # point: window // 2 = 20
    assert not mask[20, 41]
    assert not mask[100, 100]
