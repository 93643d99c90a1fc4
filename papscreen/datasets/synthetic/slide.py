"""Synthetic whole-slide images: a pyramidal tiled TIFF of glass with some blocks of rendered cells, and its truth.

The slide path (readers, tiling, tissue detection, the screening pipeline and its benchmarks) needs real pyramid
files of realistic size whose every abnormal cell is known. A slide here is a grid of square blocks of
``block_px`` level-0 pixels: tissue blocks are fields drawn by :func:`render_field`, every other block is empty
glass (near-white with faint sensor noise), much as a liquid-based preparation leaves a round spot of cells on a
large empty slide. Each block is drawn from its own seeded stream, so any block can be rendered again on its own
(:func:`render_block`) to check what a reader returns.

:func:`write_synthetic_slide` writes the pyramid one row of blocks at a time, so its memory is bounded by one row
(``block_px`` x width x 3 bytes) however large the slide: level-0 tiles go straight to tifffile, and the smaller
levels are shrunk from the same blocks into raw files in a temporary folder beside the output, then written tile
by tile. Each level is a separate top-level IFD (not a SubIFD), level 0 first, so OpenSlide's generic-TIFF
reader sees the whole pyramid, and tifffile does too.
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Literal

import cv2
import numpy as np
import tifffile

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.synthetic.field import render_field
from papscreen.datasets.synthetic.scene import TruthCell

__all__ = ["GLASS_LEVEL", "SlidePlan", "render_block", "write_synthetic_slide"]

GLASS_LEVEL = 243
"""Grey level of empty glass in every channel (a scanner's white-balanced background, a little below 255)."""

_GLASS_NOISE_SD = 1.5
# Glass noise is drawn for a patch this size and repeated over the block: a benchmark slide is mostly glass, and
# drawing fresh normals for every glass pixel would cost more than all its tissue. Nobody sees a 1.5-grey repeat.
_GLASS_PATCH_PX = 256
_JPEG_QUALITY = 90
# tifffile keeps up to this many bytes of tiles waiting for its encoder threads; the default (hundreds of MB)
# would dominate the writer's memory.
_ENCODE_BUFFER_BYTES = 32 * 1024**2
# Above this many raw pixel bytes in all levels the file is written as BigTIFF (classic TIFF offsets stop at 4 GiB;
# noisy glass compresses poorly, so the margin is wide).
_BIGTIFF_RAW_BYTES = 2**31

Compression = Literal["jpeg", "zlib"] | None


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _checked_counts(name: str, counts: Mapping[str, int]) -> Mapping[str, int]:
    """A read-only copy of a class -> count mapping, refused with a ValueError naming ``name`` if malformed."""
    if not isinstance(counts, Mapping):
        raise ValueError(f"{name} must map Bethesda classes to counts, got {type(counts).__name__}")
    for label, count in counts.items():
        if label not in BETHESDA_CLASSES:
            raise ValueError(f"{name}: unknown class {label!r}; use one of {', '.join(BETHESDA_CLASSES)}")
        if not _is_int(count) or count < 0:
            raise ValueError(f"{name}: the count of {label} must be a non-negative integer, got {count!r}")
    return MappingProxyType({label: int(count) for label, count in counts.items()})


@dataclass(frozen=True)
class SlidePlan:
    """What a synthetic slide holds: its size, which blocks carry cells, how many of each class, and its seed.

    The slide is cut into square blocks of ``block_px`` (the right and bottom ones cropped to the slide). Tissue
    blocks each get ``composition`` squamous cells (or their own entry in ``block_compositions``), plus a share of
    ``planted``, which the seed spreads at random over the tissue blocks so a test can ask for "three HSIL
    somewhere" without choosing where. Every other block is empty glass. The mappings are kept as read-only
    copies, so a plan cannot change once made (it is not hashable, though).

    Attributes:
        width: level-0 width, px.
        height: level-0 height, px.
        tissue_blocks: the (block column, block row) of each block that holds cells.
        composition: squamous cells per class in each tissue block without an entry in ``block_compositions``.
            Clutter (inflammatory cells, debris, bacteria, mucus) comes with every tissue block, even an empty one.
        block_compositions: per-block overrides of ``composition``, keyed by tissue block.
        planted: extra cells per class spread over the tissue blocks, usually abnormal ones.
        block_px: block side, px; a multiple of 16 (and, for writing, of the tile size and every downsample).
        seed: the slide's seed; with the block position it seeds every block.

    Raises:
        ValueError: a field out of range (the message names it), a tissue block outside the grid or listed twice,
            an unknown class or a negative count, or planted cells on a slide without tissue blocks.

    Examples:
        A benchmark slide: mostly glass, six blocks of cells.

        >>> big = SlidePlan(40_000, 40_000, tissue_blocks=((9, 9), (10, 9), (9, 10), (10, 10), (8, 9), (11, 10)))
        >>> big.blocks_across, big.blocks_down, big.cell_counts
        (20, 20, {'NILM': 240})

        A test slide with planted high-grade cells, and one that is nearly empty.

        >>> small = SlidePlan(4096, 3072, tissue_blocks=((0, 0), (1, 1)), block_px=1024, planted={"HSIL": 3}, seed=7)
        >>> small.cell_counts
        {'NILM': 80, 'HSIL': 3}
        >>> SlidePlan(4096, 3072, tissue_blocks=((2, 1),), composition={"NILM": 1}, block_px=1024).cell_counts
        {'NILM': 1}
        >>> SlidePlan(4096, 3072, block_px=1000)
        Traceback (most recent call last):
        ...
        ValueError: block_px must be a positive multiple of 16, got 1000
    """

    width: int
    height: int
    tissue_blocks: tuple[tuple[int, int], ...] = ()
    composition: Mapping[str, int] = field(default_factory=lambda: {"NILM": 40})
    block_compositions: Mapping[tuple[int, int], Mapping[str, int]] = field(default_factory=dict)
    planted: Mapping[str, int] = field(default_factory=dict)
    block_px: int = 2048
    seed: int = 0
    _per_block: Mapping[tuple[int, int], Mapping[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.block_px) or self.block_px <= 0 or self.block_px % 16:
            raise ValueError(f"block_px must be a positive multiple of 16, got {self.block_px!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        blocks: list[tuple[int, int]] = []
        for block in self.tissue_blocks:
            if not isinstance(block, Sequence) or len(block) != 2 or not all(_is_int(v) for v in block):
                raise ValueError(f"tissue_blocks: each entry must be (block column, block row), got {block!r}")
            col, row = int(block[0]), int(block[1])
            if not (0 <= col < self.blocks_across and 0 <= row < self.blocks_down):
                raise ValueError(
                    f"tissue_blocks: block {(col, row)} is outside the {self.blocks_across}x{self.blocks_down} grid "
                    f"of {self.block_px}-px blocks"
                )
            if (col, row) in blocks:
                raise ValueError(f"tissue_blocks: block {(col, row)} is listed twice")
            blocks.append((col, row))
        composition = _checked_counts("composition", self.composition)
        planted = _checked_counts("planted", self.planted)
        if not isinstance(self.block_compositions, Mapping):
            raise ValueError("block_compositions must map (block column, block row) to a composition")
        overrides = {}
        for key, counts in self.block_compositions.items():
            if key not in blocks:
                raise ValueError(f"block_compositions: block {key!r} is not one of tissue_blocks")
            overrides[tuple(key)] = _checked_counts(f"block_compositions[{key!r}]", counts)
        if sum(planted.values()) and not blocks:
            raise ValueError("planted: cells cannot be planted on a slide without tissue_blocks")
        object.__setattr__(self, "tissue_blocks", tuple(blocks))
        object.__setattr__(self, "composition", composition)
        object.__setattr__(self, "planted", planted)
        object.__setattr__(self, "block_compositions", MappingProxyType(overrides))
        object.__setattr__(self, "_per_block", self._spread_planted())

    def _spread_planted(self) -> Mapping[tuple[int, int], Mapping[str, int]]:
        """Each tissue block's final composition: its own cells plus its random share of ``planted``."""
        per_block = {block: dict(self.block_compositions.get(block, self.composition)) for block in self.tissue_blocks}
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1,)))
        for label in BETHESDA_CLASSES:  # fixed order, so the mapping's order cannot change the draw
            count = self.planted.get(label, 0)
            if not count:
                continue
            shares = np.bincount(rng.integers(0, len(self.tissue_blocks), count), minlength=len(self.tissue_blocks))
            for block, share in zip(self.tissue_blocks, shares, strict=True):
                if share:
                    per_block[block][label] = per_block[block].get(label, 0) + int(share)
        return MappingProxyType({block: MappingProxyType(counts) for block, counts in per_block.items()})

    @property
    def blocks_across(self) -> int:
        """Block columns, the last one possibly narrower than ``block_px``."""
        return math.ceil(self.width / self.block_px)

    @property
    def blocks_down(self) -> int:
        """Block rows, the last one possibly shorter than ``block_px``."""
        return math.ceil(self.height / self.block_px)

    def block_composition(self, col: int, row: int) -> dict[str, int]:
        """Squamous cells per class that block (``col``, ``row``) holds, planted ones included; empty for glass."""
        return dict(self._per_block.get((col, row), {}))

    @property
    def cell_counts(self) -> dict[str, int]:
        """Squamous cells per class on the whole slide (the truth :func:`write_synthetic_slide` returns)."""
        totals = dict.fromkeys(BETHESDA_CLASSES, 0)
        for counts in self._per_block.values():
            for label, count in counts.items():
                totals[label] += count
        return {label: count for label, count in totals.items() if count}


def _block_box(plan: SlidePlan, col: int, row: int) -> tuple[int, int, int, int]:
    """(x, y, width, height) of a block in level-0 pixels, cropped to the slide."""
    x, y = col * plan.block_px, row * plan.block_px
    return x, y, min(plan.block_px, plan.width - x), min(plan.block_px, plan.height - y)


def _glass(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Empty glass: :data:`GLASS_LEVEL` plus faint noise, drawn for one patch and repeated."""
    side = _GLASS_PATCH_PX
    patch = np.rint(rng.normal(GLASS_LEVEL, _GLASS_NOISE_SD, (side, side, 3)))
    patch = np.clip(patch, 0, 255).astype(np.uint8)
    return np.tile(patch, (math.ceil(height / side), math.ceil(width / side), 1))[:height, :width]


def render_block(plan: SlidePlan, col: int, row: int) -> tuple[np.ndarray, list[TruthCell]]:
    """Render one block of a slide, exactly as :func:`write_synthetic_slide` writes it.

    Every block has its own random stream (the plan's seed and the block position through
    :class:`numpy.random.SeedSequence`), so a block does not depend on the others: a test can render just the
    block it reads back, and a change to one block leaves the rest of the slide as it was.

    Args:
        plan: the slide.
        col: block column, from 0 at the left.
        row: block row, from 0 at the top.

    Returns:
        The block as HxWx3 uint8 RGB (``block_px`` square, cropped at the slide's right and bottom edges), and its
        squamous cells with level-0 slide coordinates; glass blocks have none.

    Raises:
        ValueError: a block outside the slide, or more cells than fit in a tissue block.

    Examples:
        >>> plan = SlidePlan(1024, 768, tissue_blocks=((1, 0),), composition={"SCC": 2}, block_px=512)
        >>> glass, none = render_block(plan, 0, 1)
        >>> glass.shape, none, abs(float(glass.mean()) - GLASS_LEVEL) < 1
        ((256, 512, 3), [], True)
        >>> tissue, cells = render_block(plan, 1, 0)
        >>> tissue.shape, [c.label for c in cells], all(512 <= c.x < 1024 and c.y < 512 for c in cells)
        ((512, 512, 3), ['SCC', 'SCC'], True)
    """
    if not (0 <= col < plan.blocks_across and 0 <= row < plan.blocks_down):
        raise ValueError(f"block {(col, row)} is outside the {plan.blocks_across}x{plan.blocks_down} grid of the slide")
    x, y, width, height = _block_box(plan, col, row)
    rng = np.random.default_rng(np.random.SeedSequence(plan.seed, spawn_key=(0, col, row)))
    if (col, row) not in plan.tissue_blocks:
        return _glass(rng, width, height), []
    field_ = render_field(rng, plan.block_composition(col, row), width=width, height=height)
    cells = [replace(cell, x=cell.x + x, y=cell.y + y) for cell in field_.cells]
    return field_.rgb, cells


def _shrink(block: np.ndarray, downsample: int) -> np.ndarray:
    """Area-average a block by an integer factor, dropping a remainder that does not fill a whole output pixel."""
    height, width = block.shape[0] // downsample, block.shape[1] // downsample
    if downsample == 1:
        return block
    if height == 0 or width == 0:
        return np.empty((height, width, 3), np.uint8)
    return cv2.resize(block[: height * downsample, : width * downsample], (width, height), interpolation=cv2.INTER_AREA)


def _level0_tiles(
    plan: SlidePlan, tile_px: int, reduced: Sequence[tuple[int, BinaryIO]], cells: list[TruthCell]
) -> Iterator[np.ndarray]:
    """Level-0 tiles in row-major order, rendering one row of blocks at a time.

    While a row is in memory it is also shrunk by each of ``reduced``'s downsamples and appended to that level's
    raw file, and its truth is added to ``cells``. Tiles are copies, so tifffile's encoding queue never keeps a
    finished row alive.
    """
    for row in range(plan.blocks_down):
        blocks = []
        for col in range(plan.blocks_across):
            rgb, truth = render_block(plan, col, row)
            blocks.append(rgb)
            cells.extend(truth)
        for downsample, sink in reduced:
            band = np.concatenate([_shrink(block, downsample) for block in blocks], axis=1)
            sink.write(np.ascontiguousarray(band).data)
        for y in range(0, blocks[0].shape[0], tile_px):
            for block in blocks:
                for x in range(0, block.shape[1], tile_px):
                    yield block[y : y + tile_px, x : x + tile_px].copy()
        del blocks


def _raw_tiles(source: BinaryIO, width: int, height: int, tile_px: int) -> Iterator[np.ndarray]:
    """Tiles of a raw HxWx3 uint8 image in a file, in row-major order, reading one row of tiles at a time."""
    for y in range(0, height, tile_px):
        rows = min(tile_px, height - y)
        data = source.read(rows * width * 3)
        if len(data) != rows * width * 3:
            raise RuntimeError(f"a reduced level's scratch file ended early at row {y} (disk full?)")
        band = np.frombuffer(data, np.uint8).reshape(rows, width, 3)
        for x in range(0, width, tile_px):
            yield band[:, x : x + tile_px].copy()


def _check_writer_args(
    plan: SlidePlan, tile_px: int, downsamples: Sequence[int], compression: Compression, mpp: float
) -> tuple[int, ...]:
    if not _is_int(tile_px) or tile_px <= 0 or tile_px % 16:
        raise ValueError(f"tile_px must be a positive multiple of 16 (a TIFF rule), got {tile_px!r}")
    if plan.block_px % tile_px:
        raise ValueError(f"tile_px ({tile_px}) must divide the plan's block_px ({plan.block_px})")
    levels = tuple(downsamples)
    if not levels or levels[0] != 1 or not all(_is_int(d) for d in levels):
        raise ValueError(f"downsamples must be integers starting with 1, got {levels!r}")
    if any(b <= a for a, b in itertools.pairwise(levels)):
        raise ValueError(f"downsamples must increase, got {levels!r}")
    for downsample in levels:
        if plan.block_px % downsample:
            raise ValueError(f"downsamples: {downsample} does not divide the plan's block_px ({plan.block_px})")
        if plan.width < downsample or plan.height < downsample:
            raise ValueError(f"downsamples: {downsample} leaves nothing of a {plan.width}x{plan.height} slide")
    if compression not in ("jpeg", "zlib", None):
        raise ValueError(f"compression must be 'jpeg', 'zlib' or None, got {compression!r}")
    if not (isinstance(mpp, int | float) and math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be a positive number of microns per pixel, got {mpp!r}")
    return tuple(int(d) for d in levels)


def write_synthetic_slide(
    path: str | Path,
    plan: SlidePlan,
    *,
    tile_px: int = 512,
    downsamples: Sequence[int] = (1, 4, 16),
    compression: Compression = "jpeg",
    mpp: float = 0.25,
    overwrite: bool = False,
) -> list[TruthCell]:
    """Write ``plan`` as a pyramidal tiled RGB TIFF that OpenSlide and tifffile both read, and return its truth.

    JPEG (quality 90, YCbCr 4:2:0) is the default because it is what slide scanners write, so benchmarks decode
    what they would in service, and because noisy glass barely compresses losslessly (a 40000-px zlib slide runs
    to gigabytes). Use ``"zlib"`` when a test compares pixels exactly with :func:`render_block`.

    The file appears only when complete: it is written inside a temporary folder beside ``path`` (on the same
    disk, not in a RAM-backed /tmp, since a reduced level of a large slide holds hundreds of MB) and moved into
    place. Files whose raw pixels exceed 2 GiB are written as BigTIFF.

    Args:
        path: the TIFF to write.
        plan: what the slide holds.
        tile_px: tile side, px; a multiple of 16 that divides ``plan.block_px``.
        downsamples: the pyramid's integer factors, level 0 (1) first, each dividing ``plan.block_px``. A level
            is ``width // d`` by ``height // d`` pixels, each the area average of a d x d square of level 0.
        compression: ``"jpeg"``, ``"zlib"`` (lossless) or ``None``.
        mpp: microns per level-0 pixel, written as the resolution tags (pixels per centimetre) of every level.
        overwrite: replace an existing file instead of refusing.

    Returns:
        Every squamous cell on the slide with level-0 coordinates, block by block in row-major order.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: writer arguments that do not fit the plan (the message names the argument), or a tissue block
            with more cells than fit.

    Examples:
        >>> from papscreen.imaging.slides import open_slide
        >>> folder = Path(tempfile.mkdtemp())
        >>> plan = SlidePlan(1024, 768, tissue_blocks=((0, 0),), composition={"NILM": 2}, planted={"HSIL": 1},
        ...                  block_px=512)
        >>> cells = write_synthetic_slide(folder / "slide.tif", plan, tile_px=256, downsamples=(1, 4))
        >>> sorted(cell.label for cell in cells)
        ['HSIL', 'NILM', 'NILM']
        >>> with open_slide(folder / "slide.tif") as slide:
        ...     slide.level_dimensions, slide.mpp
        (((1024, 768), (256, 192)), 0.25)
    """
    path = Path(path)
    levels = _check_writer_args(plan, tile_px, downsamples, compression, mpp)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    sizes = [(plan.width // d, plan.height // d) for d in levels]
    raw_bytes = sum(3 * width * height for width, height in sizes)
    codec: dict[str, object] = {}
    if compression == "jpeg":
        codec = {"compression": "jpeg", "compressionargs": {"level": _JPEG_QUALITY}}
    elif compression == "zlib":
        codec = {"compression": "zlib"}
    cells: list[TruthCell] = []
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        partial = Path(scratch) / "slide.tif"
        scratch_files = [Path(scratch) / f"level{index}.raw" for index in range(1, len(levels))]
        with tifffile.TiffWriter(partial, bigtiff=raw_bytes > _BIGTIFF_RAW_BYTES) as tif:
            for index, (downsample, (width, height)) in enumerate(zip(levels, sizes, strict=True)):
                with ExitStack() as files:
                    if index == 0:
                        sinks = [
                            (d, files.enter_context(f.open("wb")))
                            for d, f in zip(levels[1:], scratch_files, strict=True)
                        ]
                        tiles = _level0_tiles(plan, tile_px, sinks, cells)
                    else:
                        source = files.enter_context(scratch_files[index - 1].open("rb"))
                        tiles = _raw_tiles(source, width, height, tile_px)
                    pixels_per_cm = 1e4 / (mpp * downsample)
                    tif.write(
                        tiles,
                        shape=(height, width, 3),
                        dtype=np.uint8,
                        tile=(tile_px, tile_px),
                        photometric="rgb",
                        subfiletype=0 if index == 0 else 1,
                        resolution=(pixels_per_cm, pixels_per_cm),
                        resolutionunit="CENTIMETER",
                        metadata=None,
                        buffersize=_ENCODE_BUFFER_BYTES,
                        **codec,
                    )
                if index > 0:
                    os.remove(scratch_files[index - 1])  # free the disk as soon as a level is in the TIFF
        os.replace(partial, path)
    return cells
