"""What rests on what: each object's support, a small 3D scene graph.

An object rests on the highest thing beneath it: of the horizontal structure planes under its
footprint (the floor, or a table top whose patch it stands over) and the objects whose footprints
it overlaps, the one with the highest top that is not above the object's bottom (within a
tolerance). Nothing floats, so a gap between the two is what the camera could not see (a cup seen
from straight above shows only its rim), not air. Bottoms and tops are the 1st/99th percentiles of
the visible points along up; the tolerance is the plane band at the object's distance (refinement
removed that much of its base) plus ``tolerance`` metres.
"""
from __future__ import annotations

import numpy as np

from .fusion import Object3DEstimate
from .planes import FLOOR, TABLE, Plane, level_plane, plane_band

MAX_TABLE_THICKNESS = 0.1  # m: a table top is a slab at most this thick
STEEP_VIEW_COS = np.cos(np.radians(30.0))  # seen within 30 degrees of vertical, sides are foreshortened to half or less


def supports(estimates: list[Object3DEstimate], planes: list[Plane], plane_masks: list[int], plane_of_mask: np.ndarray,
             masks: np.ndarray, grid: np.ndarray, up: np.ndarray, camera_position: np.ndarray, *, tolerance: float,
             sigma_at_1m: float, band_sigmas: float, min_band: float) -> dict[int, float]:
    """Set ``support`` / ``support_kind`` of every valid whole object in ``estimates`` (in place); return the
    height of each one's support's top (-inf where nothing was found beneath it).

    ``plane_masks[k]`` is the index of the largest structure mask on plane k (-1 if none), ``plane_of_mask``
    (N,) each mask's plane (-1 for objects): of a plane's masks, an object rests on the smallest whose box
    it stands over (a plate or a rug too thin to tell from the plane by depth), else on the largest.
    ``masks`` (N, h, w) and ``grid`` (h, w, 3) are the refined masks and points of the stage's grid (an
    object's top and footprint as a support are measured on its own pixels, see ``_own_supports``).
    """
    objects = [i for i, e in enumerate(estimates) if e.whole_object]
    own_support = _own_supports(estimates, objects, masks, grid, up)
    horizontal = [k for k, p in enumerate(planes) if p.kind in (FLOOR, TABLE)]
    tops = {}
    for i in objects:
        below = estimates[i]
        gate = _gate(below, camera_position, tolerance, sigma_at_1m, band_sigmas, min_band)
        # its footprint (the circle around its box) reaches the plane's visible patch: objects on a table hide
        # the part of it they stand on, and what stands behind them more
        reach = gate + float(np.hypot(*below.obb_size[:2])) / 2
        best_height, best_top, best = -np.inf, -np.inf, (-1, "")
        for k in horizontal:
            plane = planes[k]
            height = _plane_height_under(plane, below.centroid, up)
            under = below.centroid - (below.centroid @ up - height) * up
            if height <= below.bottom + gate and (plane.kind == FLOOR or plane.covers(under, reach)):
                if height > best_height:
                    # a plane seen from below is a slab's underside: its top is up to a slab's thickness higher
                    thickness = MAX_TABLE_THICKNESS if plane.normal @ up < 0 else 0.0
                    best_height, best_top = height, height + thickness
                    best = _surface_under(below, k, estimates, plane_of_mask, plane_masks[k]), plane.kind
        for j in objects:
            other = estimates[j]
            if j == i or other.centroid @ up >= below.centroid @ up:
                continue
            if not _overlaps(below, other, other.obb_size[:2] / 2):
                continue
            top, centre, half = own_support(j)
            if top <= below.bottom + gate and top > best_height and _overlaps(below, other, half, centre):
                best_height, best_top, best = top, top, (j, "object")
        below.support, below.support_kind = best
        tops[i] = best_top
    return tops


def floating_tables(estimates: list[Object3DEstimate], support_tops: dict[int, float], index: np.ndarray,
                    points: np.ndarray, masks: np.ndarray, grid: np.ndarray, z: np.ndarray, planes: list[Plane],
                    plane_masks: list[int], plane_of_mask: np.ndarray, up: np.ndarray, camera_position: np.ndarray, *,
                    structure_fraction: float, jump_ratio: float, tolerance: float, sigma_at_1m: float,
                    band_sigmas: float, min_band: float) -> bool:
    """Level slabs hanging above everything beneath them are table tops (in place).

    Nothing floats: an object's visible bottom may hang above its support only where the camera cannot
    see its lower part. A slab has none to hide: no thicker than a table top (``MAX_TABLE_THICKNESS``
    plus the plane band), with at least ``structure_fraction`` of its points (``points`` grouped by
    ``index``) in the band of one level plane, as any structure mask, and seen to overhang: free space right
    below its edge in the image (``_overhangs``; ``masks`` (N, h, w), the points ``grid`` (h, w, 3) and depth ``z``
    (h, w) are the stage's grid). One whose bottom is farther above the top of the highest thing beneath
    it than the band plus ``tolerance`` is a top on legs, too small or too near to be found as a plane of
    its own. Seen steeply (within 30 degrees of vertical) an object's sides are foreshortened to half
    their height or less and may not survive refinement (a cup seen from above shows only its rim), so
    such slabs stay objects. A table's plane joins ``planes``, its mask ``plane_masks`` and
    ``plane_of_mask``. Returns whether
    any was found (supports then need another pass).
    """
    found = False
    for i, top in support_tops.items():
        slab = estimates[i]
        gate = _gate(slab, camera_position, tolerance, sigma_at_1m, band_sigmas, min_band)
        if slab.bottom - top <= gate or slab.top - slab.bottom > MAX_TABLE_THICKNESS + gate:
            continue
        ray = slab.centroid - camera_position
        if abs(ray @ up) >= STEEP_VIEW_COS * np.linalg.norm(ray):
            continue
        own = points[index == i]
        heights = own @ up
        level = float(np.median(heights))
        band = plane_band(np.linalg.norm(own - camera_position, axis=1), sigma_at_1m, band_sigmas, min_band)
        if np.mean(np.abs(heights - level) <= band) < structure_fraction:
            continue
        columns = np.nonzero(masks[i].any(0))[0]
        span = slice(columns[0], columns[-1] + 1)  # the image columns the slab spans
        with np.errstate(invalid="ignore"):
            heights_below = grid[:, span] @ up
            surface = masks[i][:, span] & (np.abs(heights_below - level) <=
                                           plane_band(z[:, span], sigma_at_1m, band_sigmas, min_band))
        if not _overhangs(surface, z[:, span], heights_below, MAX_TABLE_THICKNESS + gate, jump_ratio):
            continue
        plane = level_plane(own, up, level, camera_position, TABLE)
        slab.kind, slab.structure = "structure", TABLE
        slab.plane = np.array([*plane.normal, plane.offset])
        slab.support, slab.support_kind = -1, ""
        plane_of_mask[i] = len(planes)
        planes.append(plane)
        plane_masks.append(i)
        found = True
    return found


def _overhangs(surface: np.ndarray, z: np.ndarray, heights: np.ndarray, max_drop: float, jump_ratio: float) -> bool:
    """Whether free space lies beneath a slab's ``surface`` (h, w). Walking down each column from the surface's
    lower edge in the image (image rows taken as the way down) across continuous depth (no jump of more than
    ``jump_ratio`` of the depth, as refinement's; gaps without depth bridged), more columns must reach a jump
    to something farther (the floor behind, under an overhang) within ``max_drop`` metres of ``heights``
    below the edge than reach a jump to something nearer (an occluder hiding a lower part), continue
    farther down (a body of its own: the side of a box whose top alone was segmented) or leave the image
    (a part out of view)."""
    h = surface.shape[0]
    columns = np.nonzero(surface.any(0))[0]
    edge = h - 1 - np.argmax(surface[::-1, columns], axis=0)
    rows = np.arange(h)[:, None]
    depth, height = z[:, columns], heights[:, columns]
    valid = np.isfinite(depth) & (rows >= edge)
    last = np.maximum.accumulate(np.where(valid, rows, -1), axis=0)   # the last valid row at or above each row
    cols = np.arange(columns.size)
    filled = np.where(last >= 0, depth[last.clip(0), cols], np.nan)
    with np.errstate(invalid="ignore"):
        jump = valid[1:] & (np.abs(depth[1:] - filled[:-1]) > jump_ratio * filled[:-1])  # row r+1 leaves the run
    jump &= rows[:-1] >= edge
    has_jump = jump.any(0)
    at = np.argmax(jump, axis=0)                                      # the run's last row is last[at]
    before = last[at, cols].clip(0)
    drop = height[edge, cols] - height[before, cols]
    within = has_jump & (drop <= max_drop)
    farther = within & (depth[(at + 1).clip(max=h - 1), cols] > filled[at, cols])
    return int(np.count_nonzero(farther)) > columns.size - int(np.count_nonzero(farther))


def _gate(estimate: Object3DEstimate, camera_position: np.ndarray, tolerance: float, sigma_at_1m: float,
          band_sigmas: float, min_band: float) -> float:
    """How far (m) an object's visible bottom may lie from what it rests on: the plane band at its distance
    (refinement removed that much of its base) plus ``tolerance``."""
    distance = float(np.linalg.norm(estimate.centroid - camera_position))
    return float(plane_band(np.array(distance), sigma_at_1m, band_sigmas, min_band)) + tolerance


def _surface_under(below: Object3DEstimate, plane: int, estimates: list[Object3DEstimate], plane_of_mask: np.ndarray,
                   largest: int) -> int:
    """The smallest valid structure mask on ``plane`` whose box the centre of ``below`` lies over, else ``largest``."""
    def over(surface: Object3DEstimate) -> bool:
        local = (below.obb_center - surface.obb_center) @ surface.obb_rotation[:, :2]
        return bool((np.abs(local) <= surface.obb_size[:2] / 2).all())

    under = [j for j in np.nonzero(plane_of_mask == plane)[0] if estimates[j].valid and over(estimates[j])]
    return int(min(under, key=lambda j: np.prod(estimates[j].obb_size[:2]))) if under else largest


def _own_supports(estimates: list[Object3DEstimate], objects: list[int], masks: np.ndarray, grid: np.ndarray,
              up: np.ndarray):
    """Per object (on demand), its top (99th percentile along up, as fusion's) and its footprint (1st-99th
    percentiles along its box's x and y: centre offset and half sizes) measured on the pixels that no other
    whole object's mask claims. A mask that bleeds onto what stands on it would otherwise reach up its
    foot and hide the contact, and one that bleeds onto what stands behind it would reach under it.
    Objects with fewer than 10 such points keep their fused box."""
    cache: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}

    def own(j: int) -> tuple[float, np.ndarray, np.ndarray]:
        if j not in cache:
            estimate = estimates[j]
            rows, cols = np.nonzero(masks[j])
            alone = np.count_nonzero(masks[:, rows, cols][objects], axis=0) == 1
            points = grid[rows[alone], cols[alone]]
            points = points[np.isfinite(points).all(1)]
            if len(points) < 10:
                cache[j] = estimate.top, np.zeros(2), estimate.obb_size[:2] / 2
            else:
                local = (points - estimate.obb_center) @ estimate.obb_rotation[:, :2]
                low, high = np.percentile(local, 1, axis=0), np.percentile(local, 99, axis=0)
                cache[j] = float(np.percentile(points @ up, 99)), (low + high) / 2, (high - low) / 2
        return cache[j]

    return own


def _plane_height_under(plane: Plane, point: np.ndarray, up: np.ndarray) -> float:
    """Height along up of the plane on the vertical line through ``point``."""
    along = plane.normal @ up
    if abs(along) < 1e-6:
        return -np.inf
    t = (plane.normal @ point - plane.offset) / along
    return float(point @ up - t)


def _overlaps(upper: Object3DEstimate, lower: Object3DEstimate, half: np.ndarray,
              centre: float | np.ndarray = 0.0) -> bool:
    """Whether the upper box's footprint centre lies over the lower box's footprint: ``half`` sizes about
    ``centre`` along the lower box's x and y, grown by a quarter of the upper's smaller side (the lower
    one's far half may be hidden)."""
    local = (upper.obb_center - lower.obb_center) @ lower.obb_rotation[:, :2] - centre
    margin = upper.obb_size[:2].min() / 4
    return bool((np.abs(local) <= half + margin).all())


def table_legs(estimates: list[Object3DEstimate], planes: list[Plane], up: np.ndarray, camera_position: np.ndarray, *,
               tolerance: float, sigma_at_1m: float, band_sigmas: float, min_band: float) -> None:
    """Objects standing on the floor under a table top and reaching up to its underside are its legs:
    structure of the table's class and plane (in place)."""
    tables = [p for p in planes if p.kind == TABLE]
    for estimate in estimates:
        if not (estimate.valid and estimate.kind == "object" and estimate.support_kind == FLOOR and tables):
            continue
        gate = _gate(estimate, camera_position, tolerance, sigma_at_1m, band_sigmas, min_band)
        for table in tables:
            height = _plane_height_under(table, estimate.centroid, up)
            under = estimate.centroid - (estimate.centroid @ up - height) * up
            if height - MAX_TABLE_THICKNESS - gate <= estimate.top <= height + gate and table.covers(under, gate):
                estimate.kind, estimate.structure = "structure", table.kind
                estimate.plane = np.array([*table.normal, table.offset])
                estimate.support, estimate.support_kind = -1, ""
                break
