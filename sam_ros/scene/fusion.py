"""Masks + aligned depth -> 3D objects: robust centroid, axis-aligned and yaw-oriented boxes, coverage.

All masks of a frame are fused together: their points are gathered once, grouped by mask, and every
per-object statistic (median, MAD, quantiles, means, extents) is a segmented reduction over that one
list (one sort per quantity, not one per object), so the cost does not grow with a Python loop over
objects or pixels. ``object_points`` gathers those points (``ObjectPoints``, also published as a point
cloud) and ``estimate_objects`` reduces them; ``fuse_masks`` does both.

Outliers along depth are rejected with median/MAD: a mask that bleeds over an object's silhouette
picks up floor or wall pixels that lie far behind it, and stereo depth has flying pixels between the
two; the median tolerates up to half of such pixels and the MAD gate adapts to how deep the visible
surface is (a box seen corner-on spans tens of centimetres), where a fixed histogram split would need
a bin size per object.

Oriented boxes follow ``scene.boxes``: local x major horizontal, y minor horizontal, z up, ``obb_size``
along exactly those axes. The yaw is that of the smallest-area rectangle around the points seen from
above; a camera sees one or two faces of a box (a line or an L from above), whose principal axis lies
between the faces, while the tightest rectangle lines up with the faces themselves. The rectangle is
OpenCV's ``minAreaRect`` (rotating calipers on the convex hull) of a sample of each object's points.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..camera import PinholeCamera
from .boxes import box_rotations, reference_axes

MAD_TO_SIGMA = 1.4826
EXTENT_QUANTILE = 0.01
HULL_SAMPLE = 400     # points per object (about) searched for its orientation


@dataclass
class Object3DEstimate:
    """Geometry of one mask's visible surface and its place in the scene; zeros (never NaN) when not ``valid``."""

    valid: bool
    reason: str
    centroid: np.ndarray      # (3,)
    aabb_center: np.ndarray   # (3,)
    aabb_size: np.ndarray     # (3,)
    obb_center: np.ndarray    # (3,)
    obb_size: np.ndarray      # (3,) along the box's own x (major horizontal), y (minor horizontal), z (up)
    obb_yaw: float            # rotation of the box's x axis about ``up`` (see scene.boxes), radians
    point_count: int
    depth_coverage: float
    obb_rotation: np.ndarray = field(default_factory=lambda: np.eye(3))  # box axes (columns) in the frame
    kind: str = "object"      # object | structure (a mask lying on a floor, wall or table plane)
    structure: str = ""       # for structure: the plane's kind (floor | wall | table | other)
    plane: np.ndarray = field(default_factory=lambda: np.zeros(4))  # structure: (nx, ny, nz, d), n . p = d
    parent: int = -1          # index of the mask this one is a part of, -1 for a whole
    support: int = -1         # index of the mask it rests on, -1 when none (or a plane with no mask)
    support_kind: str = ""    # floor | table | other | object; '' when nothing was found beneath it
    bottom: float = 0.0       # lowest and highest point along up (1st/99th percentiles), metres
    top: float = 0.0

    @property
    def whole_object(self) -> bool:
        """Valid, an object (not structure) and no part of another: what supports and planes reason about."""
        return self.valid and self.kind == "object" and self.parent < 0


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


def erode(masks: np.ndarray, pixels: int) -> np.ndarray:
    """Binary erosion of (N, H, W) masks by a cross of radius ``pixels`` (edge pixels carry flying depth)."""
    out = masks.copy()
    for _ in range(max(pixels, 0)):
        inner = out.copy()
        inner[:, 1:, :] &= out[:, :-1, :]
        inner[:, :-1, :] &= out[:, 1:, :]
        inner[:, :, 1:] &= out[:, :, :-1]
        inner[:, :, :-1] &= out[:, :, 1:]
        inner[:, 0, :] = inner[:, -1, :] = False
        inner[:, :, 0] = inner[:, :, -1] = False
        out = inner
    return out


def as_numpy_masks(masks: torch.Tensor | np.ndarray) -> np.ndarray:
    masks = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got {tuple(masks.shape)}")
    return masks.astype(bool, copy=False)


@dataclass
class ObjectPoints:
    """The depth points each mask is made of (after the MAD gate, in the output frame), grouped by mask for
    segmented reductions: the estimates are reduced from them, and the point cloud output publishes them."""

    index: torch.Tensor     # (P,) int64 mask index of each point, in [0, N), ascending
    points: torch.Tensor    # (P, 3) float64 metres
    counts: torch.Tensor    # (N,) int64 points per mask
    coverage: torch.Tensor  # (N,) fraction of each mask's pixels with valid depth

    def __len__(self) -> int:
        return self.counts.shape[0]

    def valid(self, min_valid_points: int) -> torch.Tensor:
        """(N,) bool: masks with enough points to be an object (the one rule behind ``Object3DEstimate.valid``)."""
        return self.counts >= min_valid_points

    def select(self, keep: torch.Tensor | np.ndarray) -> ObjectPoints:
        """Only the points of masks where ``keep`` (N,) is True; mask indices, and so labels, are unchanged."""
        keep = torch.as_tensor(keep, dtype=torch.bool)
        if keep.shape != self.counts.shape:
            raise ValueError(f"keep must be one flag per mask {tuple(self.counts.shape)}, got {tuple(keep.shape)}")
        chosen = keep[self.index]
        return ObjectPoints(self.index[chosen], self.points[chosen], torch.where(keep, self.counts, 0), self.coverage)

    @classmethod
    def from_numpy(cls, index: np.ndarray, points: np.ndarray, n: int, coverage: np.ndarray) -> ObjectPoints:
        return cls(torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64)),
                   torch.from_numpy(np.ascontiguousarray(points, dtype=np.float64)),
                   torch.from_numpy(np.bincount(index, minlength=n).astype(np.int64)),
                   torch.from_numpy(np.asarray(coverage, dtype=np.float64)))


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
    """The inlier 3D points of every mask (N, H, W) at full resolution; arguments as ``fuse_masks``.

    Edge pixels carry flying depth, so masks are eroded by ``erosion_px`` where ``min_valid_points`` survive
    the erosion (small objects keep their full mask); points farther than ``mad_gate`` robust sigmas (at
    least ``min_gate_m``) from their mask's median depth are dropped.
    """
    masks = as_numpy_masks(masks)
    n, h, w = masks.shape
    check_sizes(masks.shape, depth_m.shape, camera)
    depth = np.ascontiguousarray(depth_m, dtype=np.float32)
    finite = np.isfinite(depth)
    full = masks & finite
    coverage = full.reshape(n, h * w).sum(1) / np.maximum(masks.reshape(n, h * w).sum(1), 1)
    eroded = erode(masks, erosion_px) & finite
    use_eroded = eroded.reshape(n, h * w).sum(1) >= min_valid_points
    selected = np.where(use_eroded[:, None, None], eroded, full)
    index, ys, xs = np.nonzero(selected)
    rays = rays if rays is not None else camera.rays()
    points = back_project(depth[ys, xs], rays[ys, xs], transform)
    keep = mad_inliers(index, depth[ys, xs].astype(np.float64), n, mad_gate, min_gate_m)
    return ObjectPoints.from_numpy(index[keep], points[keep], n, coverage)


def check_sizes(mask_shape: tuple, depth_shape: tuple, camera: PinholeCamera) -> None:
    h, w = mask_shape[1:]
    if tuple(depth_shape) != (h, w):
        raise ValueError(f"depth is {depth_shape[1]}x{depth_shape[0]} but masks are {w}x{h}: align depth to colour")
    if (camera.width, camera.height) != (w, h):
        raise ValueError(f"CameraInfo is {camera.width}x{camera.height} but the image is {w}x{h}")


def back_project(z: np.ndarray, rays: np.ndarray, transform: np.ndarray | None) -> np.ndarray:
    """(P, 3) points in the output frame from depths (P,) and normalised rays (P, 2)."""
    z = np.asarray(z, dtype=np.float64)
    if transform is None:
        return np.stack([rays[..., 0] * z, rays[..., 1] * z, z], axis=-1)
    transform = np.asarray(transform, dtype=np.float64)
    rotation = transform[:3, :3]  # broadcasts, not a matrix product: BLAS threads spin on a busy CPU
    # R (x z, y z, z) + t = z (x R0 + y R1 + R2) + t: the rotated ray, scaled by depth
    x, y = rays[..., 0:1], rays[..., 1:2]
    return z[..., None] * (x * rotation[:, 0] + y * rotation[:, 1] + rotation[:, 2]) + transform[:3, 3]


def mad_inliers(index: np.ndarray, z: np.ndarray, n: int, gate: float, min_gate: float) -> np.ndarray:
    """Points within ``gate`` robust sigmas (or ``min_gate`` metres) of their object's median depth."""
    median = segment_quantiles(index, z, n, [0.5])[:, 0]
    deviation = np.abs(z - median[index])
    mad = segment_quantiles(index, deviation, n, [0.5])[:, 0]
    limit = np.maximum(gate * MAD_TO_SIGMA * mad, min_gate)
    return deviation <= limit[index]


def segment_quantiles(index: np.ndarray, values: np.ndarray, n: int, qs: list[float]) -> np.ndarray:
    """(n, len(qs)) quantiles (nearest rank, towards the median) of ``values`` per segment id in [0, n); 0 for empty segments.

    One sort of all values by (segment, value): the key puts each segment in its own value range, and the
    value is read back from the sorted key (exact to ~1e-14 of the key's magnitude).
    """
    out = np.zeros((n, len(qs)))
    if values.size == 0:
        return out
    values = np.asarray(values, dtype=np.float64)
    low, span = values.min(), values.max() - values.min() + 1.0
    keys = np.sort(index * span + (values - low))  # a plain sort: far faster than an argsort
    counts = np.bincount(index, minlength=n)
    starts = np.cumsum(counts) - counts
    for k, q in enumerate(qs):  # upper quantiles mirror lower ones: the q and 1 - q ranks are symmetric
        last = np.maximum(counts - 1, 0)
        rank = (np.floor(last * q) if q <= 0.5 else last - np.floor(last * (1 - q))).astype(np.int64)
        pick = np.minimum(starts + rank, values.size - 1)
        out[:, k] = np.where(counts > 0, keys[pick] - np.arange(n) * span + low, 0.0)
    return out


def segment_extent(index: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment min and max of (P, D) values (0 for empty segments); ``index`` must be ascending."""
    d = values.shape[1]
    low = np.full((n, d), np.inf)
    high = np.full((n, d), -np.inf)
    counts = np.bincount(index, minlength=n)
    present = counts > 0
    if present.any():
        starts = (np.cumsum(counts) - counts)[present]
        low[present] = np.minimum.reduceat(values, starts, axis=0)
        high[present] = np.maximum.reduceat(values, starts, axis=0)
    return np.where(present[:, None], low, 0.0), np.where(present[:, None], high, 0.0)


def estimate_objects(points: ObjectPoints, *, min_valid_points: int = 30,
                     up: np.ndarray | None = None) -> list[Object3DEstimate]:
    """One ``Object3DEstimate`` per mask of ``points``; ``up`` as in ``fuse_masks``."""
    if len(points) == 0:
        return []
    up_vec = np.array([0.0, -1.0, 0.0]) if up is None else np.asarray(up, dtype=np.float64)
    return _estimates(points, min_valid_points, up_vec / np.linalg.norm(up_vec))


def _estimates(cloud: ObjectPoints, min_valid_points: int, up: np.ndarray) -> list[Object3DEstimate]:
    index, points = cloud.index.numpy(), cloud.points.numpy()
    counts, coverage = cloud.counts.numpy(), cloud.coverage.numpy()
    n = len(counts)
    valid = counts >= min_valid_points
    centroid = np.stack([np.bincount(index, points[:, k], minlength=n) for k in range(3)], 1).astype(np.float64)
    centroid /= np.maximum(counts, 1)[:, None]
    # Box extents from the 1st-99th percentiles: a handful of noisy points must not inflate a box.
    qs = [EXTENT_QUANTILE, 1 - EXTENT_QUANTILE]
    bounds = np.stack([segment_quantiles(index, points[:, k], n, qs) for k in range(3)], 1)  # (n, 3, 2)
    low, high = bounds[..., 0], bounds[..., 1]

    axis_a, axis_b = reference_axes(up)
    rel = points - centroid[index]
    a, b = rel @ axis_a, rel @ axis_b
    axis = np.flatnonzero(np.abs(up) == 1.0)
    vertical = (bounds[:, axis[0]] * up[axis[0]] if axis.size else segment_quantiles(index, points @ up, n, qs))
    vertical = np.sort(vertical, axis=1)  # up = -axis mirrors the quantiles (they are symmetric in rank)
    yaw = _min_area_yaw(index, a, b, n)
    c, s = np.cos(yaw)[index], np.sin(yaw)[index]
    low_h, high_h = segment_extent(index, np.stack([a * c + b * s, -a * s + b * c], 1), n)
    # x is the major axis: where the rectangle's second side is longer, turn the box by 90 degrees (the new
    # x is the old y, the new y the old -x).
    turn = (high_h[:, 0] - low_h[:, 0]) < (high_h[:, 1] - low_h[:, 1])
    yaw = np.where(turn, yaw + np.pi / 2, yaw)
    low_h, high_h = (np.where(turn[:, None], np.stack([low_h[:, 1], -high_h[:, 0]], 1), low_h),
                     np.where(turn[:, None], np.stack([high_h[:, 1], -low_h[:, 0]], 1), high_h))
    mid_h = (low_h + high_h) / 2
    size = np.concatenate([high_h - low_h, (vertical[:, 1] - vertical[:, 0])[:, None]], 1)

    rotations = box_rotations(up, yaw)
    out = []
    zeros = np.zeros(3)
    for i in range(n):  # assembling records only; every statistic above is computed for all objects at once
        if not valid[i]:
            out.append(Object3DEstimate(False, f"too little valid depth: {int(counts[i])} points "
                                        f"(need {min_valid_points}), coverage {float(coverage[i]):.0%}",
                                        zeros, zeros, zeros, zeros, zeros, 0.0, int(counts[i]), float(coverage[i])))
            continue
        rotation = rotations[i]
        height_mid = (vertical[i, 0] + vertical[i, 1]) / 2
        center = (centroid[i] + mid_h[i, 0] * rotation[:, 0] + mid_h[i, 1] * rotation[:, 1]
                  + (height_mid - centroid[i] @ up) * up)
        out.append(Object3DEstimate(
            True, "", centroid[i].copy(), (low[i] + high[i]) / 2, high[i] - low[i], center, size[i].copy(),
            float(yaw[i]), int(counts[i]), float(coverage[i]), obb_rotation=rotation,
            bottom=float(vertical[i, 0]), top=float(vertical[i, 1])))
    return out


def _min_area_yaw(index: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Per segment, the yaw in [0, 90) degrees of the smallest-area rectangle around its (a, b) points.

    OpenCV's rotating calipers on the convex hull; every k-th point of a large object is enough to find its
    orientation (its extents use all points)."""
    yaw = np.zeros(n)
    if index.size == 0:
        return yaw
    counts = np.bincount(index, minlength=n)
    rank = np.arange(index.size) - (np.cumsum(counts) - counts)[index]
    sample = rank % np.maximum(counts // HULL_SAMPLE, 1)[index] == 0
    index, plane = index[sample], np.stack([a[sample], b[sample]], 1).astype(np.float32)
    sampled = np.bincount(index, minlength=n)
    ends = np.cumsum(sampled)
    for i in np.nonzero(sampled >= 3)[0]:  # one library call per object; OpenCV's angle is in degrees
        yaw[i] = np.radians(cv2.minAreaRect(plane[ends[i] - sampled[i]:ends[i]])[2])
    return yaw % (np.pi / 2)
