"""Stage 1: find the nuclei of a field (cells versus background), as points in the field's own pixels.

The stage-1 network classifies 20x20 patches of the field seen at a *working scale* (0.5 by default: a patch shows
a 40 px window). Rather than cutting every window and classifying it on its own, as the original did, the
detector runs the network *densely* (:meth:`~papscreen.models.stage1_net.Stage1Net.dense_logits`): one pass over
the resized field gives the logits of every window on a stride-2 grid (or stride 1), with the same weights and the
same numbers, tens of times faster. Then:

1. the cell-versus-background logit margin of each window is placed at the window's centre (``sigmoid`` of it is
   the softmax cell probability; the margin does not saturate, so peaks of large nuclei stay sharp);
2. optionally smoothed, local maxima above the threshold are peaks, refined to a fraction of a grid step;
3. peaks closer than ``min_distance_px`` are merged greedily, the most confident first (non-maximum suppression);
4. optionally, nucleus-like blobs found by colour (:mod:`papscreen.models.proposals`) are scored by the map at
   their position and added where the network found no peak;
5. positions go back to field pixels exactly: the resize factors, the window's centre and the grid stride.

Fields are processed in overlapping tiles of bounded size; tiles start on the dense grid and overlap by one window,
so the map is the one a single pass would give, whatever the tile size.

Coordinates: pixel centres at integers (x = column, y = row), as in the point annotations.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from papscreen.datasets.conventions import DB3_CLASSES, DEFAULT_STAGE1_SCALE, STAGE1_INPUT_PX
from papscreen.errors import CheckpointError
from papscreen.models.card import ModelCard, Normalisation, library_versions
from papscreen.models.checkpoints import WEIGHTS_NAME, load_weights, resolve_card_path, save_model
from papscreen.models.proposals import ProposalConfig, propose_nuclei
from papscreen.models.stage1_net import (
    Stage1Net,
    Stage1NetPlus,
    build_stage1_network,
    stage1_network_options,
)

__all__ = [
    "CARD_CONFIG_KEYS",
    "Detections",
    "ProbabilityMap",
    "Stage1Config",
    "Stage1Detector",
    "find_peaks",
    "non_maximum_suppression",
    "refine_peaks",
    "snap_to_darkest",
]

Stage1Network = Stage1Net | Stage1NetPlus

CARD_CONFIG_KEYS = (
    "threshold",
    "min_distance_px",
    "smoothing_sigma_px",
    "map_stride",
    "pad_border",
    "refine_peaks",
    "use_proposals",
    "proposal_min_score",
    "proposals_first",
    "snap_radius_px",
    "snap_sigma_px",
    "proposals",
)
"""The :class:`Stage1Config` fields a model card keeps (in ``architecture_options``); tiling is not a model property."""


@dataclass(frozen=True)
class Stage1Config:
    """How stage 1 turns a field into nucleus positions; checked on construction.

    Attributes:
        working_scale: the field is resized by this factor before the network sees it (a 20 px patch then shows
            ``window_px`` field pixels); must match the scale the network was trained at.
        threshold: cell probability a peak needs, in (0, 1).
        min_distance_px: two detections closer than this (field pixels) are one nucleus; the most confident stays.
        smoothing_sigma_px: Gaussian smoothing of the map before peak finding (field pixels); 0 turns it off.
        map_stride: 2 gives a window every 2 working pixels (one dense pass), 1 every pixel (about 2.3 times the
            cost; the same numbers as four shifted passes).
        tile_px: side of a tile at the working scale, overlap included; bounds memory, not results (tiles of
            256 were up to twice as fast as 512 on a 2-core CPU: they stay in cache).
        tile_batch: tiles run through the network together.
        pad_border: mirror the field by half a window at each border, so nuclei at the very edge can be centred
            in a window (DB_3 patches at borders are padded the same way).
        refine_peaks: move each peak to the vertex of a parabola through its neighbours (sub-grid position).
        use_proposals: add nucleus-like colour blobs the network scores above ``proposal_min_score`` but did not
            peak on (see :mod:`papscreen.models.proposals`).
        proposal_min_score: cell probability a colour proposal needs to be kept, in [0, 1).
        snap_radius_px: move each detection to the darkest point (smoothed optical density) within this many field
            pixels, then merge detections closer than ``min_distance_px`` again. The network's map is flat over a
            whole cell (any window holding the nucleus scores alike), so its peak can sit 20 px off the nucleus;
            the nucleus is the darkest part of a cell. 0 turns it off. On CRIC fields (one fold, 34 fields) 15 px
            raised recall within 15 px from 0.73 to 0.84 at about the same number of detections.
        snap_sigma_px: Gaussian smoothing of the darkness before snapping, field pixels (a nucleus-sized blur, so
            a speck of debris does not win over a nucleus).
        proposals_first: where a colour proposal and a network peak fall within ``min_distance_px``, keep the
            proposal: it lies on the stained nucleus, while the network's map is flat over a whole cell (any window
            holding the nucleus scores alike) and its peak can sit 20 px off a large nucleus. Off, a proposal only
            fills a gap the network left.
        proposals: how colour proposals are found.

    Examples:
        >>> config = Stage1Config(working_scale=1 / 3)
        >>> config.window_px
        60
        >>> Stage1Config(threshold=1.5)
        Traceback (most recent call last):
        ...
        ValueError: threshold must be in (0, 1), got 1.5
    """

    working_scale: float = DEFAULT_STAGE1_SCALE
    threshold: float = 0.7
    min_distance_px: float = 16.0
    smoothing_sigma_px: float = 2.0
    map_stride: Literal[1, 2] = 2
    tile_px: int = 256
    tile_batch: int = 4
    pad_border: bool = True
    refine_peaks: bool = True
    use_proposals: bool = False
    proposal_min_score: float = 0.3
    proposals_first: bool = False
    snap_radius_px: float = 0.0
    snap_sigma_px: float = 4.0
    proposals: ProposalConfig = field(default_factory=ProposalConfig)

    def __post_init__(self) -> None:
        """Refuse settings that cannot work, naming the setting."""
        if not 0 < self.working_scale <= 1:
            raise ValueError(f"working_scale must be in (0, 1], got {self.working_scale}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not self.min_distance_px >= 0:
            raise ValueError(f"min_distance_px must be >= 0, got {self.min_distance_px}")
        if not self.smoothing_sigma_px >= 0:
            raise ValueError(f"smoothing_sigma_px must be >= 0, got {self.smoothing_sigma_px}")
        if self.map_stride not in (1, 2):
            raise ValueError(f"map_stride must be 1 or 2, got {self.map_stride}")
        if self.tile_px < 2 * STAGE1_INPUT_PX:
            raise ValueError(f"tile_px must be at least {2 * STAGE1_INPUT_PX} (two windows), got {self.tile_px}")
        if self.tile_batch < 1:
            raise ValueError(f"tile_batch must be at least 1, got {self.tile_batch}")
        if not 0 <= self.proposal_min_score < 1:
            raise ValueError(f"proposal_min_score must be in [0, 1), got {self.proposal_min_score}")
        if not (self.snap_radius_px >= 0 and self.snap_sigma_px > 0):
            raise ValueError(
                f"snap_radius_px must be >= 0 and snap_sigma_px > 0, got {self.snap_radius_px}, {self.snap_sigma_px}"
            )

    @property
    def window_px(self) -> int:
        """Side of the field window one 20 px patch shows (as DB_3 was cut), field pixels."""
        return max(1, round(STAGE1_INPUT_PX / self.working_scale))

    def card_options(self) -> dict[str, Any]:
        """The settings a model card keeps, as plain JSON values."""
        values = asdict(self)
        return {key: values[key] for key in CARD_CONFIG_KEYS}


@dataclass(frozen=True, eq=False)
class ProbabilityMap:
    """The network's verdict on every window of a field, placed at the windows' centres.

    Attributes:
        margin: (rows, cols) float32 logit margin ``cell - background`` of each window; ``sigmoid`` of it is the
            softmax cell probability.
        origin_xy: field position (x, y) of the centre of window ``[0, 0]``.
        step_xy: field pixels between the centres of neighbouring windows along x and y.

    Examples:
        >>> pm = ProbabilityMap(np.zeros((3, 4), np.float32), origin_xy=(-0.5, -0.5), step_xy=(4.0, 4.0))
        >>> pm.to_field(np.array([1.0]), np.array([2.0])).tolist()
        [[7.5, 3.5]]
        >>> float(pm.probabilities[0, 0])
        0.5
    """

    margin: np.ndarray
    origin_xy: tuple[float, float]
    step_xy: tuple[float, float]

    @property
    def probabilities(self) -> np.ndarray:
        """Cell probability of each window, float32."""
        return _sigmoid(self.margin)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the map."""
        return (int(self.margin.shape[0]), int(self.margin.shape[1]))

    def to_field(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Field positions (N, 2) as (x, y) of (possibly fractional) map positions."""
        x = self.origin_xy[0] + np.asarray(cols, np.float64) * self.step_xy[0]
        y = self.origin_xy[1] + np.asarray(rows, np.float64) * self.step_xy[1]
        return np.stack([x, y], axis=1).reshape(-1, 2)

    def to_map(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional map positions (rows, cols) of field positions (N, 2)."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return (xy[:, 1] - self.origin_xy[1]) / self.step_xy[1], (xy[:, 0] - self.origin_xy[0]) / self.step_xy[0]

    def margin_at(self, xy: np.ndarray) -> np.ndarray:
        """The margin at field positions, interpolated bilinearly (clamped at the map's edge)."""
        rows, cols = self.to_map(xy)
        if len(rows) == 0:
            return np.zeros(0, np.float32)
        h, w = self.shape
        r = np.clip(rows, 0, h - 1)
        c = np.clip(cols, 0, w - 1)
        r0 = np.minimum(np.floor(r).astype(int), h - 1)
        c0 = np.minimum(np.floor(c).astype(int), w - 1)
        r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
        fr, fc = r - r0, c - c0
        m = self.margin
        top = m[r0, c0] * (1 - fc) + m[r0, c1] * fc
        bottom = m[r1, c0] * (1 - fc) + m[r1, c1] * fc
        return (top * (1 - fr) + bottom * fr).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Detections:
    """Nuclei stage 1 found in a field.

    Attributes:
        xy: (N, 2) float64 nucleus centres (x, y) in the field's own pixels (plus the region offset).
        scores: (N,) float32 cell probabilities, in decreasing order.
        from_proposal: (N,) bool, true where the point came from a colour proposal rather than a network peak.
        map_shape: (rows, cols) of the probability map.
        map_step_px: field pixels between neighbouring map entries (x, y).
    """

    xy: np.ndarray
    scores: np.ndarray
    from_proposal: np.ndarray
    map_shape: tuple[int, int]
    map_step_px: tuple[float, float]

    def __len__(self) -> int:
        """Number of detections."""
        return len(self.scores)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float32)))).astype(np.float32)


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def find_peaks(score_map: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the local maxima of a map (8-neighbourhood, ties kept) that reach ``threshold``.

    A pixel is a peak when no neighbour is higher (``cv2.dilate`` with a 3x3 square); plateaus give several
    peaks, which non-maximum suppression then merges.

    Examples:
        >>> m = np.zeros((5, 6), np.float32)
        >>> m[1, 1], m[3, 4], m[3, 3] = 0.9, 0.8, 0.2
        >>> [r.tolist() for r in find_peaks(m, 0.5)]
        [[1, 3], [1, 4]]
    """
    score_map = np.ascontiguousarray(score_map, dtype=np.float32)
    if score_map.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    dilated = cv2.dilate(score_map, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    rows, cols = np.nonzero((score_map >= dilated) & (score_map >= threshold))
    return rows.astype(np.int64), cols.astype(np.int64)


def refine_peaks(score_map: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-grid peak positions: the vertex of the parabola through each peak and its two neighbours, per axis.

    The offset is at most half a step; at the map's edge or on a flat top it is zero.

    Examples:
        >>> m = np.array([[0.0, 1.0, 0.5]], np.float32)
        >>> r, c = refine_peaks(m, np.array([0]), np.array([1]))
        >>> r.tolist(), [round(v, 3) for v in c.tolist()]
        ([0.0], [1.167])
    """
    m = np.asarray(score_map, np.float64)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)

    def offset(before: np.ndarray, centre: np.ndarray, after: np.ndarray, ok: np.ndarray) -> np.ndarray:
        curvature = before - 2 * centre + after
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(ok & (curvature < 0), 0.5 * (before - after) / curvature, 0.0)
        return np.clip(np.nan_to_num(delta), -0.5, 0.5)

    h, w = m.shape
    ok_r = (rows > 0) & (rows < h - 1)
    ok_c = (cols > 0) & (cols < w - 1)
    up, down = m[np.clip(rows - 1, 0, h - 1), cols], m[np.clip(rows + 1, 0, h - 1), cols]
    left, right = m[rows, np.clip(cols - 1, 0, w - 1)], m[rows, np.clip(cols + 1, 0, w - 1)]
    centre = m[rows, cols]
    return rows + offset(up, centre, down, ok_r), cols + offset(left, centre, right, ok_c)


def snap_to_darkest(rgb: np.ndarray, xy: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """Move each point to the darkest pixel (Gaussian-smoothed mean optical density) within ``radius`` of it.

    Examples:
        >>> field = np.full((40, 40, 3), 240, np.uint8)
        >>> field[25:30, 8:13] = 60  # a dark nucleus centred at (10, 27)
        >>> snap_to_darkest(field, np.array([[14.0, 20.0]]), radius=10, sigma=1.5).tolist()
        [[10.0, 27.0]]
    """
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if not len(xy):
        return xy.copy()
    darkness = -np.log((rgb.astype(np.float32) + 1.0) / 256.0).mean(axis=2)
    darkness = cv2.GaussianBlur(darkness, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    height, width = darkness.shape
    r = max(1, round(radius))
    out = np.empty_like(xy)
    for i, (x, y) in enumerate(xy):
        cx, cy = round(min(max(float(x), 0), width - 1)), round(min(max(float(y), 0), height - 1))
        top, left = max(0, cy - r), max(0, cx - r)
        window = darkness[top : min(height, cy + r + 1), left : min(width, cx + r + 1)]
        row, col = np.unravel_index(int(np.argmax(window)), window.shape)
        out[i] = (left + col, top + row)
    return out


def non_maximum_suppression(xy: np.ndarray, scores: np.ndarray, min_distance: float) -> np.ndarray:
    """Indices of the points kept when, most confident first, each point removes the others within ``min_distance``.

    Ties in score keep the earlier point, so the result is deterministic.

    Returns:
        Kept indices, in decreasing score.

    Examples:
        >>> xy = np.array([[0.0, 0.0], [5.0, 0.0], [20.0, 0.0]])
        >>> non_maximum_suppression(xy, np.array([0.6, 0.9, 0.7]), 10.0).tolist()
        [1, 2]
    """
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    if min_distance <= 0 or len(order) < 2:
        return order
    # Each kept point suppresses its neighbours, found in a k-d tree: O(n log n) even on a plateau of
    # millions of peaks (a black or saturated scan), where comparing with every kept point took hours.
    tree = cKDTree(xy)
    radius = np.nextafter(float(min_distance), 0.0)  # the ball is closed; suppression is strictly closer
    suppressed = np.zeros(len(xy), bool)
    kept: list[int] = []
    for index in order:
        if suppressed[index]:
            continue
        kept.append(int(index))
        suppressed[tree.query_ball_point(xy[index], radius)] = True
    return np.asarray(kept, np.int64)


_PEAK_BONUS = 1e6
"""Added to a network peak's margin when ranking it against colour proposals (margins are far smaller)."""


def _tile_starts(total_windows: int, per_tile: int) -> list[int]:
    return list(range(0, total_windows, per_tile))


class Stage1Detector:
    """A stage-1 network with everything needed to use it on a field: working scale, thresholds, normalisation.

    The detector keeps the network it was given (what :meth:`to_checkpoint` saves) and runs an evaluation copy
    on ``device``, with batch normalisation folded; change the network later and build a new detector.

    Examples:
        >>> detector = Stage1Detector(Stage1Net(), Stage1Config())
        >>> field = np.full((120, 160, 3), 230, np.uint8)
        >>> detector.probability_map(field).shape  # a window centre every 4 field px, borders mirrored
        (31, 41)
        >>> type(detector.detect(field)).__name__
        'Detections'
    """

    def __init__(
        self,
        network: Stage1Network,
        config: Stage1Config,
        normalisation: Normalisation | None = None,
        device: torch.device | str = "cpu",
        *,
        channels_last: bool | None = None,
    ) -> None:
        """Wrap a network; ``channels_last`` (default on: faster on CPU and GPU alike) picks the inference layout."""
        self.network = network
        self.config = config
        self.normalisation = normalisation or Normalisation()
        self.device = torch.device(device)
        self.channels_last = True if channels_last is None else channels_last
        runner = network.folded() if isinstance(network, Stage1NetPlus) else copy.deepcopy(network)
        runner = runner.eval().to(self.device)
        if self.channels_last:
            runner = runner.to(memory_format=torch.channels_last)
        self._runner: nn.Module = runner
        self._mean = torch.tensor(self.normalisation.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(self.normalisation.std, device=self.device).view(1, 3, 1, 1) * 255.0

    @property
    def architecture(self) -> str:
        """The network's architecture name, as a model card writes it."""
        return str(self.network.architecture)

    def with_config(self, **changes: Any) -> Stage1Detector:
        """The same network with some settings changed (a new detector; this one is unchanged).

        Examples:
            >>> Stage1Detector(Stage1Net(), Stage1Config()).with_config(threshold=0.7).config.threshold
            0.7
        """
        config = Stage1Config(**{**{f.name: getattr(self.config, f.name) for f in fields(self.config)}, **changes})
        return Stage1Detector(self.network, config, self.normalisation, self.device, channels_last=self.channels_last)

    def _normalise(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 on the device -> (N, 3, H, W) normalised float32."""
        x = batch_uint8.permute(0, 3, 1, 2).float()
        x = (x - self._mean) / self._std
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def patch_logits(self, patches: np.ndarray) -> np.ndarray:
        """Logits (N, 2) of 20x20 RGB patches (N, 20, 20, 3) uint8, each classified on its own.

        Examples:
            >>> detector = Stage1Detector(Stage1Net(), Stage1Config())
            >>> detector.patch_logits(np.zeros((3, 20, 20, 3), np.uint8)).shape
            (3, 2)
        """
        patches = np.asarray(patches)
        if patches.ndim != 4 or patches.shape[1:] != (STAGE1_INPUT_PX, STAGE1_INPUT_PX, 3):
            raise ValueError(f"patches must be (N, 20, 20, 3) uint8, got shape {patches.shape}")
        with torch.inference_mode():
            x = self._normalise(torch.from_numpy(np.ascontiguousarray(patches, np.uint8)).to(self.device))
            return self._runner(x).float().cpu().numpy()

    def working_image(self, rgb: np.ndarray) -> np.ndarray:
        """The field resized to the working scale with ``INTER_AREA``, as DB_3 patches were made."""
        rgb = _check_rgb(rgb)
        height, width = rgb.shape[:2]
        size = (max(1, round(width * self.config.working_scale)), max(1, round(height * self.config.working_scale)))
        if size == (width, height):
            return rgb
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)

    def probability_map(self, rgb: np.ndarray, *, region_offset: tuple[float, float] = (0.0, 0.0)) -> ProbabilityMap:
        """The dense map of the field: one entry per window, placed at the window's centre in field pixels.

        Raises:
            ValueError: ``rgb`` is not an HxWx3 uint8 image, or (without border padding) is smaller than a window.
        """
        rgb = _check_rgb(rgb)
        height, width = rgb.shape[:2]
        work = self.working_image(rgb)
        pad = STAGE1_INPUT_PX // 2 if self.config.pad_border else 0
        if pad:
            work = cv2.copyMakeBorder(work, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        margin = self._dense_margin(work)
        scale_x, scale_y = width / (work.shape[1] - 2 * pad), height / (work.shape[0] - 2 * pad)
        # Window [0, 0] covers working pixels 0..19 of the padded image: its centre is at 9.5 - pad in working
        # pixel coordinates, i.e. (10 - pad) * scale - 0.5 in the field's (pixel centres at integers).
        centre = STAGE1_INPUT_PX / 2 - pad
        stride = self.config.map_stride
        return ProbabilityMap(
            margin=margin,
            origin_xy=(centre * scale_x - 0.5 + region_offset[0], centre * scale_y - 0.5 + region_offset[1]),
            step_xy=(stride * scale_x, stride * scale_y),
        )

    def _dense_margin(self, work: np.ndarray) -> np.ndarray:
        """Logit margin of every window of a (padded) working image, tile by tile."""
        stride = self.config.map_stride
        height, width = work.shape[:2]
        if height < STAGE1_INPUT_PX or width < STAGE1_INPUT_PX:
            raise ValueError(
                f"the field is {width}x{height} px at the working scale, smaller than one {STAGE1_INPUT_PX} px window"
            )
        rows = (height - STAGE1_INPUT_PX) // stride + 1
        cols = (width - STAGE1_INPUT_PX) // stride + 1
        per_tile = (self.config.tile_px - STAGE1_INPUT_PX) // stride + 1
        tile = (per_tile - 1) * stride + STAGE1_INPUT_PX
        jobs = [(r, c) for r in _tile_starts(rows, per_tile) for c in _tile_starts(cols, per_tile)]
        margin = np.empty((rows, cols), np.float32)
        source = torch.from_numpy(np.ascontiguousarray(work))
        with torch.inference_mode():
            for first in range(0, len(jobs), self.config.tile_batch):
                batch = jobs[first : first + self.config.tile_batch]
                # Tiles are cut on the window grid and zero-padded to one size (padding only feeds windows
                # that are cropped away), so a batch is one tensor and every tile gives exactly its windows.
                tiles = torch.zeros((len(batch), tile, tile, 3), dtype=torch.uint8)
                for k, (r, c) in enumerate(batch):
                    piece = source[r * stride : r * stride + tile, c * stride : c * stride + tile]
                    tiles[k, : piece.shape[0], : piece.shape[1]] = piece
                logits = self._runner.dense_logits(self._normalise(tiles.to(self.device)), stride=stride)
                out = (logits[:, 1] - logits[:, 0]).float().cpu().numpy()
                for k, (r, c) in enumerate(batch):
                    n_r, n_c = min(per_tile, rows - r), min(per_tile, cols - c)
                    margin[r : r + n_r, c : c + n_c] = out[k, :n_r, :n_c]
        return margin

    def detect(
        self,
        rgb: np.ndarray,
        *,
        region_offset: tuple[float, float] = (0.0, 0.0),
        probability_map: ProbabilityMap | None = None,
    ) -> Detections:
        """Nucleus centres of a field, in its own pixels (plus ``region_offset`` for a region of a larger image).

        Args:
            rgb: HxWx3 uint8 field at full resolution.
            region_offset: (x, y) added to every position, e.g. the region's top-left corner in the slide.
            probability_map: a map of this field already computed by :meth:`probability_map` (saves a pass).

        Examples:
            >>> detector = Stage1Detector(Stage1Net(), Stage1Config())
            >>> found = detector.detect(np.full((64, 64, 3), 255, np.uint8), region_offset=(100.0, 0.0))
            >>> found.xy.shape[1], bool(np.all((found.xy[:, 0] >= 100.0) & (found.xy[:, 0] <= 163.0)))
            (2, True)
        """
        config = self.config
        pm = probability_map or self.probability_map(rgb, region_offset=region_offset)
        margin = pm.margin
        if config.smoothing_sigma_px > 0:
            sigma = (config.smoothing_sigma_px / pm.step_xy[0], config.smoothing_sigma_px / pm.step_xy[1])
            margin = cv2.GaussianBlur(margin, (0, 0), sigmaX=sigma[0], sigmaY=sigma[1], borderType=cv2.BORDER_REFLECT)
        rows, cols = find_peaks(margin, _logit(config.threshold))
        # Rank by the margin, not the probability: a float32 sigmoid is exactly 1.0 beyond a margin of about 17,
        # and ties would let non-maximum suppression keep the first point of a plateau instead of its top.
        strength = margin[rows, cols].astype(np.float64)
        if config.refine_peaks:
            rows_f, cols_f = refine_peaks(margin, rows, cols)
        else:
            rows_f, cols_f = rows.astype(np.float64), cols.astype(np.float64)
        # A window centred on the mirrored border may peak half a pixel outside: keep points on the field.
        height, width = np.asarray(rgb).shape[:2]
        low = np.asarray(region_offset, np.float64)
        xy = np.clip(pm.to_field(rows_f, cols_f), low, low + np.array([width - 1, height - 1]))
        from_proposal = np.zeros(len(xy), bool)
        if config.use_proposals:
            proposed = propose_nuclei(_check_rgb(rgb), config.proposals) + np.asarray(region_offset, np.float64)
            proposed_strength = pm.margin_at(proposed).astype(np.float64)
            keep = _sigmoid(proposed_strength) >= config.proposal_min_score
            xy = np.concatenate([xy, proposed[keep]])
            strength = np.concatenate([strength, proposed_strength[keep]])
            from_proposal = np.concatenate([from_proposal, np.ones(int(keep.sum()), bool)])
        # One kind outranks the other in suppression: network peaks by default (a proposal fills a gap), colour
        # proposals with proposals_first (a proposal moves a peak onto its nucleus).
        first = from_proposal if config.proposals_first else ~from_proposal
        priority = strength + np.where(first, _PEAK_BONUS, 0.0)
        kept = non_maximum_suppression(xy, priority, config.min_distance_px)
        if config.snap_radius_px > 0 and len(kept):
            offset = np.asarray(region_offset, np.float64)
            snapped = snap_to_darkest(_check_rgb(rgb), xy[kept] - offset, config.snap_radius_px, config.snap_sigma_px)
            xy = xy.copy()
            xy[kept] = snapped + offset
            kept = kept[non_maximum_suppression(xy[kept], priority[kept], config.min_distance_px)]
        kept = kept[np.argsort(-strength[kept], kind="stable")]
        return Detections(
            xy=xy[kept],
            scores=_sigmoid(strength[kept]),
            from_proposal=from_proposal[kept],
            map_shape=pm.shape,
            map_step_px=pm.step_xy,
        )

    def card(self, metrics: dict[str, Any], dataset_fingerprint: str | None, training: dict[str, Any]) -> ModelCard:
        """The model card describing this detector (the weights' sha256 is filled in when saved)."""
        return ModelCard(
            stage="stage1",
            architecture=self.architecture,
            classes=DB3_CLASSES,
            input_size=STAGE1_INPUT_PX,
            working_scale=self.config.working_scale,
            normalisation=self.normalisation,
            architecture_options={**self.network.options(), **self.config.card_options()},
            dataset_fingerprint=dataset_fingerprint,
            metrics=metrics,
            training=training,
            library_versions=library_versions(),
            weights_sha256="0" * 64,
        )

    def to_checkpoint(
        self,
        folder: str | Path,
        metrics: dict[str, Any],
        dataset_fingerprint: str | None,
        training: dict[str, Any],
    ) -> ModelCard:
        """Save the network's weights and a stage-1 card into ``folder`` (which must not hold a model yet).

        Examples:
            >>> import tempfile
            >>> folder = Path(tempfile.mkdtemp()) / "model"
            >>> card = Stage1Detector(Stage1Net(), Stage1Config()).to_checkpoint(folder, {}, None, {})
            >>> card.architecture, card.architecture_options["dense_activation"], card.working_scale
            ('cnn20', 'relu', 0.5)
        """
        return save_model(
            dict(self.network.state_dict()), self.card(metrics, dataset_fingerprint, training), Path(folder)
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: torch.device | str = "cpu",
        **overrides: Any,
    ) -> Stage1Detector:
        """Load a saved stage-1 model; ``overrides`` change detector settings (e.g. ``threshold=0.7``).

        Raises:
            CheckpointError: missing, altered or corrupt files, a stage-2 model, an unknown architecture, or
                weights that do not fit the architecture; the message names the file.

        Examples:
            >>> import tempfile
            >>> folder = Path(tempfile.mkdtemp()) / "model"
            >>> _ = Stage1Detector(Stage1Net(), Stage1Config(threshold=0.6)).to_checkpoint(folder, {}, None, {})
            >>> Stage1Detector.from_checkpoint(folder).config.threshold
            0.6
        """
        card_path = resolve_card_path(Path(path))
        state, card = load_weights(card_path, stage="stage1")
        weights_path = card_path.with_name(card.weights_file or WEIGHTS_NAME)
        if tuple(card.classes) != DB3_CLASSES:
            raise CheckpointError(card_path, f"stage-1 classes must be {DB3_CLASSES}, the card says {card.classes}")
        if card.input_size != STAGE1_INPUT_PX:
            raise CheckpointError(card_path, f"stage-1 input is {STAGE1_INPUT_PX} px, the card says {card.input_size}")
        options = dict(card.architecture_options)
        try:
            names = stage1_network_options(card.architecture)
            network = build_stage1_network(card.architecture, **{k: v for k, v in options.items() if k in names})
            settings = {k: v for k, v in options.items() if k in CARD_CONFIG_KEYS} | overrides
            if isinstance(settings.get("proposals"), dict):
                settings["proposals"] = ProposalConfig(**settings["proposals"])
            config = Stage1Config(working_scale=float(card.working_scale or DEFAULT_STAGE1_SCALE), **settings)
        except (ValueError, TypeError) as e:
            raise CheckpointError(card_path, f"cannot build the stage-1 detector the card describes: {e}") from e
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()[0] if str(e) else "mismatch"
            detail = "; ".join(line.strip() for line in str(e).splitlines()[1:4])
            raise CheckpointError(
                weights_path, f"weights do not fit architecture {card.architecture}: {first} {detail}".strip()
            ) from e
        return cls(network.eval(), config, card.normalisation, device)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"a field must be an HxWx3 uint8 RGB image, got shape {rgb.shape} and dtype {rgb.dtype}")
    return rgb
