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
from .planes import FLOOR, TABLE, Plane, plane_band


def supports(estimates: list[Object3DEstimate], planes: list[Plane], plane_masks: list[int], up: np.ndarray,
             camera_position: np.ndarray, *, tolerance: float, sigma_at_1m: float, band_sigmas: float,
             min_band: float) -> None:
    """Set ``support`` / ``support_kind`` of every valid whole object in ``estimates`` (in place).

    ``plane_masks[k]`` is the index of the largest structure mask on plane k (-1 if none).
    """
    objects = [i for i, e in enumerate(estimates) if e.valid and e.kind == "object" and e.parent < 0]
    horizontal = [k for k, p in enumerate(planes) if p.kind in (FLOOR, TABLE)]
    for i in objects:
        below = estimates[i]
        distance = float(np.linalg.norm(below.centroid - camera_position))
        gate = float(plane_band(np.array(distance), sigma_at_1m, band_sigmas, min_band)) + tolerance
        best_height, best = -np.inf, (-1, "")
        for k in horizontal:
            plane = planes[k]
            height = _plane_height_under(plane, below.centroid, up)
            under = below.centroid - (below.centroid @ up - height) * up
            if height <= below.bottom + gate and (plane.kind == FLOOR or plane.covers(under, gate)):
                if height > best_height:
                    best_height, best = height, (plane_masks[k], plane.kind)
        for j in objects:
            other = estimates[j]
            if j == i or other.centroid @ up >= below.centroid @ up:
                continue
            if other.top <= below.bottom + gate and _overlaps(below, other, up) and other.top > best_height:
                best_height, best = other.top, (j, "object")
        below.support, below.support_kind = best


def _plane_height_under(plane: Plane, point: np.ndarray, up: np.ndarray) -> float:
    """Height along up of the plane on the vertical line through ``point``."""
    along = plane.normal @ up
    if abs(along) < 1e-6:
        return -np.inf
    t = (plane.normal @ point - plane.offset) / along
    return float(point @ up - t)


def _overlaps(upper: Object3DEstimate, lower: Object3DEstimate, up: np.ndarray) -> bool:
    """Whether the upper box's footprint centre lies over the lower box's footprint (grown by a quarter of the
    upper's smaller side: the lower one's far half may be hidden)."""
    offset = upper.obb_center - lower.obb_center
    local = np.abs(offset @ lower.obb_rotation[:, :2])
    margin = upper.obb_size[:2].min() / 4
    return bool((local <= lower.obb_size[:2] / 2 + margin).all())


def table_legs(estimates: list[Object3DEstimate], planes: list[Plane], up: np.ndarray, camera_position: np.ndarray, *,
               tolerance: float, sigma_at_1m: float, band_sigmas: float, min_band: float,
               max_thickness: float = 0.1) -> None:
    """Objects standing on the floor under a table top and reaching up to its underside are its legs:
    structure of the table's class and plane (in place)."""
    tables = [p for p in planes if p.kind == TABLE]
    for estimate in estimates:
        if not (estimate.valid and estimate.kind == "object" and estimate.support_kind == FLOOR and tables):
            continue
        distance = float(np.linalg.norm(estimate.centroid - camera_position))
        gate = float(plane_band(np.array(distance), sigma_at_1m, band_sigmas, min_band)) + tolerance
        for table in tables:
            height = _plane_height_under(table, estimate.centroid, up)
            under = estimate.centroid - (estimate.centroid @ up - height) * up
            if height - max_thickness - gate <= estimate.top <= height + gate and table.covers(under, gate):
                estimate.kind, estimate.structure = "structure", table.kind
                estimate.plane = np.array([*table.normal, table.offset])
                estimate.support, estimate.support_kind = -1, ""
                break
