"""Dominant planes of a depth image (floor, walls, table tops): the structure objects stand on.

Planes are found by MSAC on a coarse grid of the depth points: each round scores a batch of seeded
hypotheses at once (three points drawn close together in the image, so that they tend to lie on
one surface), keeps the best, refits it by least squares on its inliers and removes them. A point
is an inlier when it lies within ``band_sigmas`` depth-noise sigmas of the plane, sigma = k z^2
(structured light and stereo), so far surfaces get the wider band their noise needs. Only planes
whose largest connected patch is at least ``min_extent`` metres long are kept: box faces are not
structure, floors, walls and table tops are.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FLOOR, WALL, TABLE, OTHER = "floor", "wall", "table", "other"
HORIZONTAL_COS = np.cos(np.radians(20.0))  # a plane within 20 degrees of level is horizontal
VERTICAL_SIN = np.sin(np.radians(20.0))    # ... within 20 degrees of upright is a wall
UP_HINT_COS = np.cos(np.radians(60.0))     # optical frame: the floor's normal is within 60 degrees of -y
SAMPLE_WINDOW = 6                          # grid cells: the other two points of a hypothesis lie this close
SCORE_POINTS = 512                         # hypotheses are scored on at most this many points
EXTRA_ROUNDS = 3                           # MSAC rounds allowed to find a plane that is not kept (a box face)
SLAB_RMS = 0.5                             # inliers' RMS distance in bands: ~1/band_sigmas on a plane, 0.58 in a slab
EDGE_ON_M = 0.1                            # a plane passing this close to the camera is seen edge-on


@dataclass(frozen=True)
class Plane:
    """n . p = offset for points p on the plane; n is a unit vector facing the camera."""

    normal: np.ndarray     # (3,)
    offset: float
    kind: str              # floor | wall | table (horizontal, above the floor) | other
    inliers: int           # grid points within its band
    extent: float          # long side (m) of its largest connected patch
    center: np.ndarray     # (3,) centre of that patch
    axes: np.ndarray       # (2, 3) in-plane directions of the patch's long and short sides
    half_sizes: np.ndarray  # (2,) half extents of the patch along ``axes`` (m)

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance of (..., 3) points, positive on the camera's side."""
        return points @ self.normal - self.offset

    def covers(self, points: np.ndarray, margin: float) -> np.ndarray:
        """Whether (..., 3) points project inside the plane's patch (grown by ``margin`` metres)."""
        local = np.abs((points - self.center) @ self.axes.T)
        return (local <= self.half_sizes + margin).all(axis=-1)


def depth_sigma(z: np.ndarray, sigma_at_1m: float) -> np.ndarray:
    """Depth noise of a triangulating sensor: grows with z^2."""
    return sigma_at_1m * np.square(z)


def plane_band(z: np.ndarray, sigma_at_1m: float, band_sigmas: float, min_band: float) -> np.ndarray:
    """Half-width of the band around a plane within which a point at depth z lies on it."""
    return np.maximum(band_sigmas * depth_sigma(z, sigma_at_1m), min_band)


def find_planes(points: np.ndarray, z: np.ndarray, camera_position: np.ndarray, up: np.ndarray | None, *,
                sigma_at_1m: float, band_sigmas: float, min_band: float, min_extent: float, max_planes: int,
                min_fraction: float, hypotheses: int, seed: int) -> tuple[list[Plane], np.ndarray]:
    """Planes of a (h, w, 3) grid of points (NaN = no depth) with depth ``z`` (h, w), and the up vector.

    ``up`` is the frame's vertical (REP 103 target frames: z); None (the optical frame) means it is
    estimated: the normal of the largest plane within 60 degrees of the camera's -y, or -y itself.
    Returns the planes, largest support first, with their kind, and the up vector used.
    """
    h, w = z.shape
    valid = np.isfinite(z) & np.isfinite(points).all(-1)
    rows, cols = np.nonzero(valid)
    xyz = points[rows, cols].astype(np.float64)
    band = plane_band(z[rows, cols].astype(np.float64), sigma_at_1m, band_sigmas, min_band)
    rng = np.random.default_rng(seed)
    remaining = np.ones(len(xyz), bool)
    lookup = np.full((h, w), -1, np.int64)
    lookup[rows, cols] = np.arange(len(xyz))
    min_points = max(int(min_fraction * len(xyz)), 10)
    found = []
    for _ in range(max_planes + EXTRA_ROUNDS):  # rounds whose plane is too small are not kept
        if len(found) == max_planes or remaining.sum() < min_points:
            break
        fit = _best_plane(xyz, band, remaining, lookup, rows, cols, rng, hypotheses)
        if fit is None:
            break
        normal, offset = fit
        inlier = remaining & (np.abs(xyz @ normal - offset) <= band)
        # Only the plane's largest connected patch is taken out: elsewhere its band merely crosses other
        # surfaces (far ones have wide bands), whose points later rounds still need.
        patch = _largest_patch(inlier, rows, cols, (h, w))
        remaining &= ~patch
        if patch.sum() < min_points or _interior(patch, rows, cols, (h, w)) < min_points // 2:
            continue  # a box face, coincidences, or a plane seen edge-on: a far wall may still follow
        if np.sqrt(np.mean(np.square((xyz[patch] @ normal - offset) / band[patch]))) > SLAB_RMS:
            continue  # residuals spread evenly over the band: a slab cut through far surfaces, not a plane
        if abs(normal @ camera_position - offset) < EDGE_ON_M:
            continue  # the camera lies in the plane: every ray grazes it, depth cannot tell it from anything
        if normal @ camera_position - offset < 0:  # face the camera
            normal, offset = -normal, -offset
        center, axes, half = _patch_box(xyz[patch], normal)
        if any(normal @ f[0] > HORIZONTAL_COS and abs(f[0] @ center - f[1]) <= np.median(band[patch]) for f in found):
            continue  # another piece of a plane already found (a floor seen between table legs, far away)
        if 2 * half[0] >= min_extent:
            found.append((normal, float(offset), int(inlier.sum()), float(2 * half[0]), center, axes, half))
    up = _up_vector(found, up)
    return _classify(found, up), up


def _best_plane(xyz, band, remaining, lookup, rows, cols, rng, hypotheses):
    """The MSAC winner among ``hypotheses`` local three-point samples of the remaining points, refit."""
    pool = np.nonzero(remaining)[0]
    seeds = pool[rng.integers(len(pool), size=hypotheses)]
    offsets = rng.integers(-SAMPLE_WINDOW, SAMPLE_WINDOW + 1, size=(hypotheses, 2, 2))
    r = np.clip(rows[seeds][:, None] + offsets[..., 0], 0, lookup.shape[0] - 1)
    c = np.clip(cols[seeds][:, None] + offsets[..., 1], 0, lookup.shape[1] - 1)
    partners = lookup[r, c]
    ok = (partners >= 0).all(1)
    ok[ok] &= remaining[partners[ok]].all(1)
    if not ok.any():
        return None
    a, b, c3 = xyz[seeds[ok]], xyz[partners[ok, 0]], xyz[partners[ok, 1]]
    u, v = b - a, c3 - a  # the cross product written out: np.cross costs more than its arithmetic here
    normals = np.stack([u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1], u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2],
                        u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]], 1)
    norm = np.linalg.norm(normals, axis=1)
    good = norm > 1e-9
    if not good.any():
        return None
    normals = normals[good] / norm[good, None]
    offsets_h = np.einsum("ij,ij->i", normals, a[good])
    score_pool = pool if len(pool) <= SCORE_POINTS else rng.choice(pool, SCORE_POINTS, replace=False)
    scored = xyz[score_pool].astype(np.float32)  # (P, H) distances as three broadcasts: no BLAS threads to spin
    along = normals.astype(np.float32).T
    residual = np.abs(scored[:, 0:1] * along[0] + scored[:, 1:2] * along[1] + scored[:, 2:3] * along[2]
                      - offsets_h.astype(np.float32)) / band[score_pool, None].astype(np.float32)
    cost = np.minimum(residual, 1.0).__pow__(2).sum(0)  # MSAC: inliers cost their residual, outliers 1
    best = int(cost.argmin())
    normal, offset = normals[best], float(offsets_h[best])
    for _ in range(2):  # least-squares refit on the inliers, each weighted by 1 / its noise variance
        inlier = remaining & (np.abs(xyz @ normal - offset) <= band)
        if inlier.sum() < 3:
            break
        pts, weight = xyz[inlier], 1.0 / np.square(band[inlier])
        centre = weight @ pts / weight.sum()
        rel = pts - centre
        _, vectors = np.linalg.eigh(((rel * weight[:, None])[:, :, None] * rel[:, None, :]).sum(0))
        normal = vectors[:, 0]
        offset = float(normal @ centre)
    return normal, offset


def _largest_patch(inlier, rows, cols, shape) -> np.ndarray:
    """The inliers in the largest 8-connected patch of the grid (a plane's other inliers are coincidences)."""
    image = np.zeros(shape, bool)
    image[rows[inlier], cols[inlier]] = True
    labels, count = ndimage.label(image, structure=np.ones((3, 3), bool))
    if count == 0:
        return np.zeros_like(inlier)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return inlier & (labels[rows, cols] == sizes.argmax())


def _interior(patch, rows, cols, shape) -> int:
    """Grid points of the patch whose four neighbours are in it too: a surface has an inside, a line does not."""
    image = np.zeros(shape, bool)
    image[rows[patch], cols[patch]] = True
    return int(ndimage.binary_erosion(image, structure=ndimage.generate_binary_structure(2, 1)).sum())


def _patch_box(points: np.ndarray, normal: np.ndarray):
    """Centre, in-plane long/short axes and half extents (2nd-98th percentiles) of a planar patch."""
    centre = points.mean(0)
    rel = points - centre
    rel_in_plane = rel - np.outer(rel @ normal, normal)
    _, vectors = np.linalg.eigh(np.cov(rel_in_plane.T) + 1e-12 * np.eye(3))
    axes = np.stack([vectors[:, 2], vectors[:, 1]])  # largest variance first; vectors[:, 0] is the normal
    coords = np.einsum("pi,ki->pk", rel, axes)
    low, high = np.percentile(coords, [2, 98], axis=0)
    centre = centre + ((low + high) / 2) @ axes
    return centre, axes, (high - low) / 2


def _up_vector(found, up) -> np.ndarray:
    if up is not None:
        return np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    hint = np.array([0.0, -1.0, 0.0])
    candidates = [f for f in found if f[0] @ hint >= UP_HINT_COS]
    return max(candidates, key=lambda f: f[2])[0] if candidates else hint


def _classify(found, up: np.ndarray) -> list[Plane]:
    """Floor: the lowest horizontal plane seen from above; other horizontal ones are tables (seen from below:
    a table top's underside, when the camera is lower than the table); upright ones walls."""
    heights = [f[4] @ up for f in found]
    horizontal = [i for i, f in enumerate(found) if abs(f[0] @ up) >= HORIZONTAL_COS]
    from_above = [i for i in horizontal if found[i][0] @ up > 0]
    floor = min(from_above, key=lambda i: heights[i]) if from_above else None
    planes = []
    for i, (normal, offset, inliers, extent, center, axes, half) in enumerate(found):
        kind = (FLOOR if i == floor else TABLE if i in horizontal else
                WALL if abs(normal @ up) <= VERTICAL_SIN else OTHER)
        planes.append(Plane(normal, offset, kind, inliers, extent, center, axes, half))
    return planes


def mask_planes(index: np.ndarray, points: np.ndarray, candidates: np.ndarray, up: np.ndarray, floor_height: float | None,
                camera_position: np.ndarray, *, sigma_at_1m: float, band_sigmas: float, min_band: float,
                min_extent: float) -> dict[int, Plane]:
    """Masks (of ``candidates``, (N,) bool) whose own points form one large level or upright plane: structure
    too small in the image to win an MSAC round (a far table top, a strip of wall behind objects).

    Three normals are tried per mask: its best-fit plane's, up (level) and the horizontal direction of least
    spread (upright). The mask is a plane when its points' RMS distance from a level or upright one is
    within half the plane band at its depth; when several are, the one the depth noise explains best.
    The constrained normals matter where a free fit is ill-posed: a strip of wall only a few noise sigmas
    high. The plane's patch must be at least ``min_extent`` long. Points (P, 3) are grouped by ``index``
    (ascending).
    """
    n = len(candidates)
    keep = candidates[index]
    index, points = index[keep], points[keep]
    counts = np.bincount(index, minlength=n)
    chosen = candidates & (counts >= 10)
    if not chosen.any():
        return {}
    weights = counts[:, None].clip(min=1)
    mean = np.stack([np.bincount(index, points[:, k], minlength=n) for k in range(3)], 1) / weights
    rel = points - mean[index]
    cov = np.stack([np.stack([np.bincount(index, rel[:, a] * rel[:, b], minlength=n) for b in range(3)], 1)
                    for a in range(3)], 1) / weights[:, :, None]
    normals = _candidate_normals(cov, up)                                # (N, 3 candidates, 3)
    rms = np.sqrt(np.maximum(np.einsum("nci,nij,ncj->nc", normals, cov, normals), 0.0))
    structural = np.abs(np.einsum("nci,i->nc", normals, up))
    band = plane_band(np.linalg.norm(mean - camera_position, axis=1), sigma_at_1m, band_sigmas, min_band)
    level_or_upright = (structural >= HORIZONTAL_COS) | (structural <= VERTICAL_SIN)
    fits = chosen[:, None] & (rms <= band[:, None] / 2) & level_or_upright
    choice = np.where(fits.any(1), np.where(fits, rms, np.inf).argmin(1), -1)
    ambiguous = fits.sum(1) > 1
    if ambiguous.any():
        choice[ambiguous] = _best_explained(index, points - camera_position, rel, normals, fits, ambiguous,
                                            sigma_at_1m, band_sigmas, min_band)
    out = {}
    for i in np.nonzero(choice >= 0)[0]:
        normal = normals[i, choice[i]]
        upright = abs(normal @ up) <= VERTICAL_SIN
        offset = float(normal @ mean[i])
        if normal @ camera_position - offset < 0:
            normal, offset = -normal, -offset
        center, axes, half = _patch_box(points[index == i], normal)
        if 2 * half[0] < min_extent:
            continue
        height = float(center @ up)
        kind = (WALL if upright else FLOOR if floor_height is None or abs(height - floor_height) <= band[i] else TABLE)
        out[int(i)] = Plane(normal, offset, kind, int(counts[i]), float(2 * half[0]), center, axes, half)
    return out


def level_plane(points: np.ndarray, up: np.ndarray, height: float, camera_position: np.ndarray, kind: str) -> Plane:
    """The level plane at ``height`` along up through (P, 3) points, facing the camera, with their patch."""
    normal, offset = np.asarray(up, dtype=np.float64), float(height)
    if normal @ camera_position - offset < 0:
        normal, offset = -normal, -offset
    center, axes, half = _patch_box(points, normal)
    center = center - (center @ normal - offset) * normal
    return Plane(normal, offset, kind, len(points), float(2 * half[0]), center, axes, half)


def _best_explained(index, rays, rel, normals, fits, ambiguous, sigma_at_1m, band_sigmas, min_band) -> np.ndarray:
    """Per ambiguous mask, which fitting normal its residuals are best explained by depth noise. Noise moves a
    point along its ray, so its distance from a plane changes by sigma(z) |n . ray direction| (the range
    stands in for z): a far wall strip is upright although it is as low as the noise is large, because
    the noise moved its points sideways, not up and down."""
    n = len(fits)
    take = ambiguous[index]
    index, rays, rel = index[take], rays[take], rel[take]
    distance = np.linalg.norm(rays, axis=1)
    along = np.abs(np.einsum("pi,pci->pc", rays / distance[:, None], normals[index]))
    sigma = np.maximum(depth_sigma(distance, sigma_at_1m)[:, None] * along, min_band / band_sigmas)
    ratio = np.square(np.einsum("pi,pci->pc", rel, normals[index]) / sigma)
    explained = np.stack([np.bincount(index, ratio[:, c], minlength=n) for c in range(normals.shape[1])], 1)
    return np.where(fits, explained, np.inf)[ambiguous].argmin(1)


def _candidate_normals(cov: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(N, 3, 3): per (N, 3, 3) covariance, its least-spread direction, up, and its least-spread horizontal one."""
    _, vectors = np.linalg.eigh(cov)
    free = vectors[:, :, 0]
    e1 = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 1.0, 0])
    e1 /= np.linalg.norm(e1)
    basis = np.stack([e1, np.cross(up, e1)])                          # (2, 3) horizontal directions
    flat = np.einsum("ai,nij,bj->nab", basis, cov, basis)             # (N, 2, 2) horizontal covariance
    _, horizontal = np.linalg.eigh(flat)
    upright = np.einsum("na,ai->ni", horizontal[:, :, 0], basis)
    return np.stack([free, np.broadcast_to(up, free.shape), upright], 1)
