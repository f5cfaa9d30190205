"""Masks + aligned depth -> 3D objects: robust centroid, axis-aligned and yaw-oriented boxes, coverage.

All masks of a frame are fused together: their pixels are gathered once and every per-object
statistic (median, MAD, means, extents) is a segmented reduction over that one list, so
the cost does not grow with a Python loop over objects or pixels. ``object_points`` gathers those points
(``ObjectPoints``, also published as a point cloud) and ``estimate_objects`` reduces them; ``fuse_masks``
does both.

Outliers along depth are rejected with median/MAD: a mask that bleeds over an object's silhouette
picks up floor or wall pixels that lie far behind it, and stereo depth has flying pixels between the
two; the median tolerates up to half of such pixels and the MAD gate adapts to how deep the visible
surface is (a box seen corner-on spans tens of centimetres), where a fixed histogram split would need
a bin size per object.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .camera import PinholeCamera

MAD_TO_SIGMA = 1.4826
EXTENT_QUANTILE = 0.01
YAW_STEPS = 90  # candidate yaws over a quarter turn (a rectangle repeats every 90 degrees): 1 degree apart


@dataclass
class Object3DEstimate:
    """Geometry of one mask's visible surface; all zeros (never NaN) when ``valid`` is False."""

    valid: bool
    reason: str
    centroid: np.ndarray      # (3,)
    aabb_center: np.ndarray   # (3,)
    aabb_size: np.ndarray     # (3,)
    obb_center: np.ndarray    # (3,)
    obb_size: np.ndarray      # (3,) along (horizontal major, vertical, horizontal minor)
    obb_yaw: float            # rotation of the major axis about ``up``, radians
    point_count: int
    depth_coverage: float


def depth_to_metres(depth: np.ndarray, scale: float = 0.001, min_depth: float = 0.1,
                    max_depth: float = 10.0) -> np.ndarray:
    """float32 metres with NaN where invalid: 0, NaN/inf, or outside [min_depth, max_depth].

    Integer depth (16UC1) is in driver units times ``scale`` (millimetres: 0.001); float depth (32FC1)
    is already metres. Mixing these up is the classic cause of boxes a thousand times too big.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth must be a non-empty HxW image, got shape {depth.shape}")
    if depth.dtype == np.uint16:
        metres = depth.astype(np.float32) * np.float32(scale)
    elif depth.dtype in (np.float32, np.float64):
        metres = depth.astype(np.float32)
    else:
        raise ValueError(f"depth must be uint16 (16UC1) or float32 metres (32FC1), got {depth.dtype}")
    valid = np.isfinite(metres) & (metres > 0) & (metres >= min_depth) & (metres <= max_depth)
    return np.where(valid, metres, np.float32(np.nan))


def erode(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary erosion of (N, H, W) masks by a square of radius ``pixels`` (edge pixels carry flying depth)."""
    if pixels <= 0 or masks.shape[0] == 0:
        return masks
    size = 2 * pixels + 1
    return ~F.max_pool2d((~masks).float().unsqueeze(1), size, stride=1, padding=pixels).squeeze(1).bool()


@dataclass
class ObjectPoints:
    """The depth points each mask is made of (after the MAD gate, in the output frame), flat for segmented
    reductions: the estimates are reduced from them, and the point cloud output publishes them as they are."""

    index: torch.Tensor     # (P,) int64 mask index of each point, in [0, N)
    points: torch.Tensor    # (P, 3) float64 metres
    counts: torch.Tensor    # (N,) int64 points per mask
    coverage: torch.Tensor  # (N,) fraction of each mask's pixels with valid depth

    def __len__(self) -> int:
        return self.counts.shape[0]

    def valid(self, min_valid_points: int) -> torch.Tensor:
        """(N,) bool: masks with enough points to be an object (the one rule behind ``Object3DEstimate.valid``)."""
        return self.counts >= min_valid_points

    def select(self, keep: torch.Tensor) -> ObjectPoints:
        """Only the points of masks where ``keep`` (N,) is True; mask indices, and so labels, are unchanged."""
        keep = torch.as_tensor(keep, dtype=torch.bool)
        if keep.shape != self.counts.shape:
            raise ValueError(f"keep must be one flag per mask {tuple(self.counts.shape)}, got {tuple(keep.shape)}")
        chosen = keep[self.index]
        return ObjectPoints(self.index[chosen], self.points[chosen], torch.where(keep, self.counts, 0), self.coverage)


def fuse_masks(masks: torch.Tensor | np.ndarray, depth_m: np.ndarray, camera: PinholeCamera, *, erosion_px: int = 2,
               min_valid_points: int = 30, mad_gate: float = 4.0, min_gate_m: float = 0.02,
               transform: np.ndarray | None = None, up: np.ndarray | None = None,
               rays: np.ndarray | None = None) -> list[Object3DEstimate]:
    """3D estimates of every mask (N, H, W) from depth in metres (NaN = invalid, see ``depth_to_metres``).

    ``transform`` (4x4, camera optical frame -> output frame) and ``up`` (unit vector in the output frame)
    define where boxes are expressed and what "vertical" is; by default the camera frame with up = -y
    (REP 103 optical frame of a level camera). ``rays`` may pass ``camera.rays()`` cached by the caller.
    """
    points = object_points(masks, depth_m, camera, erosion_px=erosion_px, min_valid_points=min_valid_points,
                           mad_gate=mad_gate, min_gate_m=min_gate_m, transform=transform, rays=rays)
    return estimate_objects(points, min_valid_points=min_valid_points, up=up)


def object_points(masks: torch.Tensor | np.ndarray, depth_m: np.ndarray, camera: PinholeCamera, *, erosion_px: int = 2,
                  min_valid_points: int = 30, mad_gate: float = 4.0, min_gate_m: float = 0.02,
                  transform: np.ndarray | None = None, rays: np.ndarray | None = None) -> ObjectPoints:
    """The inlier 3D points of every mask (N, H, W); arguments as ``fuse_masks``.

    Edge pixels carry flying depth, so masks are eroded by ``erosion_px`` where ``min_valid_points`` survive
    the erosion (small objects keep their full mask); points farther than ``mad_gate`` robust sigmas (at
    least ``min_gate_m``) from their mask's median depth are dropped.
    """
    masks = torch.as_tensor(np.asarray(masks) if isinstance(masks, np.ndarray) else masks).bool().cpu()
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got {tuple(masks.shape)}")
    n, h, w = masks.shape
    if depth_m.shape != (h, w):
        raise ValueError(f"depth is {depth_m.shape[1]}x{depth_m.shape[0]} but masks are {w}x{h}: align depth to colour")
    if (camera.width, camera.height) != (w, h):
        raise ValueError(f"CameraInfo is {camera.width}x{camera.height} but the image is {w}x{h}")
    depth = torch.from_numpy(np.ascontiguousarray(depth_m, dtype=np.float32))
    finite = torch.isfinite(depth)
    coverage = (masks & finite).flatten(1).sum(1) / masks.flatten(1).sum(1).clamp(min=1)
    # Eroded masks where enough valid depth survives the erosion, the full mask otherwise (small objects).
    eroded = erode(masks, erosion_px) & finite
    full = masks & finite
    use_eroded = eroded.flatten(1).sum(1) >= min_valid_points
    selected = torch.where(use_eroded[:, None, None], eroded, full)

    index, ys, xs = torch.nonzero(selected, as_tuple=True)
    z = depth[ys, xs].double()
    inlier = _mad_inliers(index, z, n, mad_gate, min_gate_m)
    index, ys, xs, z = index[inlier], ys[inlier], xs[inlier], z[inlier]
    rays = torch.from_numpy(rays if rays is not None else camera.rays()).double()
    points = torch.stack([rays[ys, xs, 0] * z, rays[ys, xs, 1] * z, z], dim=1)
    transform = np.eye(4) if transform is None else np.asarray(transform, dtype=np.float64)
    points = points @ torch.from_numpy(transform[:3, :3]).T + torch.from_numpy(transform[:3, 3])
    return ObjectPoints(index, points, torch.bincount(index, minlength=n), coverage)


def estimate_objects(points: ObjectPoints, *, min_valid_points: int = 30,
                     up: np.ndarray | None = None) -> list[Object3DEstimate]:
    """One ``Object3DEstimate`` per mask of ``points``; ``up`` as in ``fuse_masks``."""
    if len(points) == 0:
        return []
    up_vec = np.array([0.0, -1.0, 0.0]) if up is None else np.asarray(up, dtype=np.float64)
    return _estimates(points, min_valid_points, up_vec / np.linalg.norm(up_vec))


def _mad_inliers(index: torch.Tensor, z: torch.Tensor, n: int, gate: float, min_gate: float) -> torch.Tensor:
    """Points within ``gate`` robust sigmas (or ``min_gate`` metres) of their object's median depth."""
    median = _segment_median(index, z, n)
    deviation = (z - median[index]).abs()
    mad = _segment_median(index, deviation, n)
    limit = torch.clamp(gate * MAD_TO_SIGMA * mad, min=min_gate)
    return deviation <= limit[index]


def _segment_median(index: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """Lower median of ``values`` per segment id in [0, n); 0 for empty segments."""
    return _segment_quantile(index, values, n, 0.5)


def _segment_quantile(index: torch.Tensor, values: torch.Tensor, n: int, q: float) -> torch.Tensor:
    """The ``q`` quantile (nearest lower rank) of ``values`` per segment id in [0, n); 0 for empty segments."""
    if values.numel() == 0:
        return torch.zeros(n, dtype=values.dtype)
    order = torch.argsort(values, stable=True)
    order = order[torch.argsort(index[order], stable=True)]  # by segment, then by value
    counts = torch.bincount(index, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.floor((counts - 1).clamp(min=0).double() * q).long()
    pick = (starts + rank).clamp(max=values.numel() - 1)
    return torch.where(counts > 0, values[order][pick], torch.zeros((), dtype=values.dtype))


def _segment_extent(index: torch.Tensor, values: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-segment min and max of (P, D) values."""
    d = values.shape[1]
    low = torch.full((n, d), torch.inf, dtype=values.dtype).scatter_reduce(
        0, index[:, None].expand(-1, d), values, "amin", include_self=True)
    high = torch.full((n, d), -torch.inf, dtype=values.dtype).scatter_reduce(
        0, index[:, None].expand(-1, d), values, "amax", include_self=True)
    return low, high


def _estimates(cloud: ObjectPoints, min_valid_points: int, up: np.ndarray) -> list[Object3DEstimate]:
    index, points, counts, coverage = cloud.index, cloud.points, cloud.counts, cloud.coverage
    n, valid = len(cloud), cloud.valid(min_valid_points)
    safe = counts.clamp(min=1).double()[:, None]
    centroid = torch.zeros(n, 3, dtype=points.dtype).index_add_(0, index, points) / safe
    # Box extents from the 1st-99th percentiles: a handful of noisy points must not inflate a box.
    low = torch.stack([_segment_quantile(index, points[:, k], n, EXTENT_QUANTILE) for k in range(3)], 1)
    high = torch.stack([_segment_quantile(index, points[:, k], n, 1 - EXTENT_QUANTILE) for k in range(3)], 1)

    # Yaw-only box: the smallest-area rectangle around the points seen from above. A camera sees one
    # or two faces of a box (a line or an L from above), whose principal axis lies between the faces;
    # the tightest rectangle lines up with the faces themselves.
    up_t = torch.from_numpy(up)
    helper = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    if abs(float(helper @ up_t)) > 0.9:
        helper = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    axis_a = helper - (helper @ up_t) * up_t
    axis_a = axis_a / axis_a.norm()
    axis_b = torch.linalg.cross(up_t, axis_a)
    rel = points - centroid[index]
    a, b, v = (rel @ axis_a).float(), (rel @ axis_b).float(), rel @ up_t
    angles = torch.arange(YAW_STEPS, dtype=torch.float32) * (math.pi / 2 / YAW_STEPS)
    major_all = a[:, None] * torch.cos(angles) + b[:, None] * torch.sin(angles)  # (P, steps)
    minor_all = -a[:, None] * torch.sin(angles) + b[:, None] * torch.cos(angles)
    low_a, high_a = _segment_extent(index, major_all, n)
    low_b, high_b = _segment_extent(index, minor_all, n)
    best = ((high_a - low_a) * (high_b - low_b)).argmin(dim=1)
    yaw = angles[best].double()
    rows = torch.arange(n)
    low_v, high_v = _segment_extent(index, v[:, None], n)
    obb_low = torch.stack([low_a[rows, best].double(), low_v[:, 0], low_b[rows, best].double()], 1)
    obb_high = torch.stack([high_a[rows, best].double(), high_v[:, 0], high_b[rows, best].double()], 1)
    mid = (obb_low + obb_high) / 2
    yaw_c, yaw_s = torch.cos(yaw), torch.sin(yaw)
    major_dir = yaw_c[:, None] * axis_a + yaw_s[:, None] * axis_b
    minor_dir = -yaw_s[:, None] * axis_a + yaw_c[:, None] * axis_b
    obb_center = centroid + mid[:, 0:1] * major_dir + mid[:, 1:2] * up_t + mid[:, 2:3] * minor_dir

    out = []
    zeros = np.zeros(3)
    for i in range(n):  # assembling records only; every statistic above is computed for all objects at once
        if not bool(valid[i]):
            out.append(Object3DEstimate(False, f"too little valid depth: {int(counts[i])} points "
                                        f"(need {min_valid_points}), coverage {float(coverage[i]):.0%}",
                                        zeros, zeros, zeros, zeros, zeros, 0.0, int(counts[i]), float(coverage[i])))
            continue
        out.append(Object3DEstimate(
            True, "", centroid[i].numpy(), ((low[i] + high[i]) / 2).numpy(), (high[i] - low[i]).numpy(),
            obb_center[i].numpy(), (obb_high[i] - obb_low[i]).numpy(), float(yaw[i]), int(counts[i]),
            float(coverage[i])))
    return out
