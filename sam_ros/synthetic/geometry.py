"""Ray-primitive intersection, vectorised over rays: the one geometric kernel of the renderer.

Primitives are upright solids in their own frame (x, y down, z; centred on their bounding box):
boxes (plates too), ellipsoids (spheres too) and frustums (cylinders and cones too). Rays are
given per row as an origin and a direction, so the same code casts camera rays (origin 0) and
shadow rays (origin on a surface). A cheap bounding-sphere test first drops rays that cannot hit,
so a small object costs only for the rays near it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROUND_SHAPES = ("cylinder", "frustum", "cone")
BOX_SHAPES = ("box", "plate")
ELLIPSOID_SHAPES = ("sphere", "ellipsoid")


def yaw_rotation(yaw: float) -> np.ndarray:
    """Rotation about the level frame's y (vertical) axis."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


@dataclass(frozen=True)
class Solid:
    """One primitive placed in the level frame: ``shape`` with full ``size`` at ``center``, turned by ``yaw``.

    ``top_ratio`` is a frustum's top radius over its bottom radius (0: a cone, 1: a cylinder);
    its widest radius is size[0] / 2.
    """

    shape: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float = 0.0
    top_ratio: float = 1.0

    @property
    def bounding_radius(self) -> float:
        return 0.5 * float(np.linalg.norm(self.size))


def intersect(solid: Solid, origins: np.ndarray, directions: np.ndarray, rows: np.ndarray | None = None):
    """Nearest hit with t > 0 of each ray ``origins + t * directions`` (origins: (N, 3) or one (3,) point).

    Only ``rows`` (indices, default all) are tried. Returns (rows, t, normal, uv) for the rows that
    pass the bounding-sphere test (every other ray misses): t is inf where the ray misses; normal
    (M, 3) is the outward unit normal in the level frame; uv (M, 2) are surface texture coordinates
    in metres.
    """
    center = np.asarray(solid.center, dtype=np.float64)
    rows = np.arange(len(directions)) if rows is None else rows
    d = directions[rows]
    rel = (origins[rows] if origins.ndim == 2 else origins) - center
    # bounding sphere: the ray's closest approach to the centre must be within the radius
    radius = solid.bounding_radius * 1.001 + 1e-9
    dd = np.einsum("ij,ij->i", d, d)
    along = -(rel @ d.T if rel.ndim == 1 else np.einsum("ij,ij->i", rel, d))
    closest = (rel @ rel if rel.ndim == 1 else np.einsum("ij,ij->i", rel, rel)) - along * along / dd
    keep = np.flatnonzero((closest <= radius * radius) & (along + radius * np.sqrt(dd) > 0))
    near = rows[keep]
    if len(near) == 0:
        return near, np.zeros(0), np.zeros((0, 3)), np.zeros((0, 2))
    rel = rel[keep] if rel.ndim == 2 else np.broadcast_to(rel, (len(keep), 3))
    rotation = yaw_rotation(solid.yaw)
    local_o = rel @ rotation  # R^T applied to each row
    local_d = d[keep] @ rotation
    if solid.shape in BOX_SHAPES:
        hit_t, local_n, coords = _box(np.asarray(solid.size) / 2, local_o, local_d)
    elif solid.shape in ELLIPSOID_SHAPES:
        hit_t, local_n, coords = _ellipsoid(np.asarray(solid.size) / 2, local_o, local_d)
    elif solid.shape in ROUND_SHAPES:
        ratio = 0.0 if solid.shape == "cone" else 1.0 if solid.shape == "cylinder" else solid.top_ratio
        hit_t, local_n, coords = _frustum(solid.size[0] / 2, solid.size[1] / 2, ratio, local_o, local_d, center)
    else:
        raise ValueError(f"unknown shape {solid.shape!r}")
    return near, hit_t, local_n @ rotation.T, coords


def _box(half: np.ndarray, o: np.ndarray, d: np.ndarray):
    """Slab test in the box's frame; uv are the two in-face coordinates of the entry face."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    t_near = np.fmin(t1, t2)
    t_far = np.fmax(t1, t2)
    entry_axis = np.argmax(t_near, axis=1)
    t_min = t_near.max(axis=1)
    t_max = t_far.min(axis=1)
    t = np.where((t_max >= t_min) & (t_min > 0), t_min, np.inf)
    rows = np.arange(len(d))
    n = np.zeros_like(d)
    n[rows, entry_axis] = -np.sign(d[rows, entry_axis])
    p = o + d * np.where(np.isfinite(t), t, 0)[:, None]
    other = np.array([[1, 2], [0, 2], [0, 1]])[entry_axis]
    return t, n, np.stack([p[rows, other[:, 0]], p[rows, other[:, 1]]], axis=1)


def _ellipsoid(semi: np.ndarray, o: np.ndarray, d: np.ndarray):
    """Scale to the unit sphere, solve there; the normal is the scaled gradient."""
    os_, ds = o / semi, d / semi
    a = np.einsum("ij,ij->i", ds, ds)
    b = 2 * np.einsum("ij,ij->i", os_, ds)
    c = np.einsum("ij,ij->i", os_, os_) - 1.0
    disc = b * b - 4 * a * c
    t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    t = np.where(t > 0, t, np.inf)
    unit = os_ + ds * np.where(np.isfinite(t), t, 0)[:, None]  # on the unit sphere
    n = unit / semi
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    radius = float(np.mean(semi[[0, 2]]))
    return t, n, np.stack([np.arctan2(unit[:, 0], unit[:, 2]) * radius, unit[:, 1] * semi[1]], axis=1)


def _frustum(widest: float, half_h: float, ratio: float, o: np.ndarray, d: np.ndarray, center: np.ndarray):
    """Side x^2 + z^2 = r(y)^2 with r linear in y (y down: top at -half_h), plus the two caps.

    Texture coordinates are in the level frame (caps: x, z; side: arc length, height), as the
    first renderer drew cylinders.
    """
    r_bottom = widest if ratio <= 1 else widest / ratio
    r_top = r_bottom * ratio
    k = (r_bottom - r_top) / (2 * half_h)  # dr/dy
    m = r_top + k * half_h                   # r at y = 0
    ox, oy, oz = o[:, 0], o[:, 1], o[:, 2]
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    a = dx * dx + dz * dz - k * k * dy * dy
    b = 2 * (ox * dx + oz * dz - k * dy * (k * oy + m))
    c = ox * ox + oz * oz - (k * oy + m) ** 2
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        linear = np.abs(a) < 1e-12
        roots = np.stack([np.where(linear, -c / b, (-b - root) / (2 * a)),
                          np.where(linear, np.inf, (-b + root) / (2 * a))], axis=1)
    roots = np.where((disc >= 0)[:, None] | linear[:, None], roots, np.inf)
    with np.errstate(invalid="ignore"):
        y_at = oy[:, None] + roots * dy[:, None]
        valid = (roots > 0) & (np.abs(y_at) <= half_h) & (k * y_at + m >= 0)
    t_side = np.where(valid, roots, np.inf).min(axis=1)
    caps = []
    for y_cap, r_cap in ((-half_h, r_top), (half_h, r_bottom)):
        with np.errstate(divide="ignore", invalid="ignore"):
            t_cap = (y_cap - oy) / dy
            inside = (ox + t_cap * dx) ** 2 + (oz + t_cap * dz) ** 2 <= r_cap ** 2
        caps.append(np.where((t_cap > 0) & inside & (r_cap > 0), t_cap, np.inf))
    t = np.minimum(t_side, np.minimum(*caps))
    p = o + d * np.where(np.isfinite(t), t, 0)[:, None]
    n_side = np.stack([p[:, 0], -k * (k * p[:, 1] + m), p[:, 2]], axis=1)
    n_side /= np.maximum(np.linalg.norm(n_side, axis=1, keepdims=True), 1e-12)
    on_top, on_bottom = t == caps[0], (t == caps[1]) & (t != caps[0])
    n = np.where(on_top[:, None], [0.0, -1.0, 0.0], np.where(on_bottom[:, None], [0.0, 1.0, 0.0], n_side))
    side_uv = np.stack([np.arctan2(p[:, 0], p[:, 2]) * widest, p[:, 1] + center[1]], axis=1)
    cap = (on_top | on_bottom)[:, None]
    return t, n, np.where(cap, p[:, [0, 2]] + center[[0, 2]], side_uv)
