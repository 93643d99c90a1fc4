"""The gallery: N most suspicious cells across classes, each nucleus once, whatever order the batches come in."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from papscreen.pipeline.gallery import SuspiciousCells, overlap_distance, select_separated

CLASSES = ("HSIL", "LSIL", "NILM", "SCC")


def _cells(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), size=n).astype(np.float32)
    xy = rng.uniform(0, 2000, size=(n, 2))
    crops = rng.integers(0, 255, size=(n, 4, 4, 3), dtype=np.uint8)
    return probabilities, xy, crops


def _collect(probabilities: np.ndarray, xy: np.ndarray, crops: np.ndarray, order: np.ndarray, batch: int, size: int):
    gallery = SuspiciousCells(CLASSES, size, min_distance=40.0)
    for start in range(0, len(order), batch):
        chosen = order[start : start + batch]
        gallery.offer(probabilities[chosen], chosen, xy[chosen], crops[chosen])
    return gallery.cells()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 120), seed=st.integers(0, 1000), batch=st.integers(1, 50), size=st.integers(0, 12))
def test_the_gallery_is_the_most_suspicious_separated_cells_whatever_the_batches(
    n: int, seed: int, batch: int, size: int
) -> None:
    probabilities, xy, crops = _cells(n, seed)
    shuffled = np.random.default_rng(seed + 1).permutation(n)
    in_order = _collect(probabilities, xy, crops, np.arange(n), n or 1, size)
    in_batches = _collect(probabilities, xy, crops, shuffled, batch, size)
    assert [c.index for c in in_batches] == [c.index for c in in_order]
    suspicion = 1.0 - probabilities[:, CLASSES.index("NILM")]
    expected = select_separated(xy, np.lexsort((np.arange(n), -suspicion)), 40.0, size)
    # The heap keeps three candidates a place: with that headroom it matches the exhaustive answer here.
    assert [c.index for c in in_order] == expected
    for cell in in_batches:
        assert cell.label == CLASSES[int(probabilities[cell.index].argmax())]
        assert cell.suspicion_rank == float(suspicion[cell.index])
        np.testing.assert_array_equal(cell.crop, crops[cell.index])


def test_a_nucleus_found_twice_is_shown_once_and_the_next_cell_takes_its_place() -> None:
    probabilities = np.array(
        [[0.05, 0.0, 0.05, 0.9], [0.1, 0.0, 0.1, 0.8], [0.6, 0.1, 0.3, 0.0], [0.0, 0.0, 1.0, 0.0]], np.float32
    )
    xy = np.array([[100.0, 100.0], [110.0, 100.0], [400.0, 100.0], [800.0, 800.0]])
    crops = np.zeros((4, 2, 2, 3), np.uint8)
    gallery = SuspiciousCells(CLASSES, 2, min_distance=overlap_distance(64))
    gallery.offer(probabilities, np.arange(4), xy, crops)
    shown = gallery.cells()
    assert [c.index for c in shown] == [0, 2]  # cell 1 sits 10 px from cell 0, inside its crop
    assert [c.label for c in shown] == ["SCC", "HSIL"]


def test_no_gallery_when_its_size_is_zero_or_no_cells_come() -> None:
    probabilities, xy, crops = _cells(10, 0)
    empty = SuspiciousCells(CLASSES, 0, 10.0)
    empty.offer(probabilities, np.arange(10), xy, crops)
    assert empty.cells() == ()
    assert SuspiciousCells(CLASSES, 5, 10.0).cells() == ()
