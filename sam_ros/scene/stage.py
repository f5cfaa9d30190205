"""The scene stage: masks + aligned depth -> structure, objects (wholes and parts), 3D geometry, support.

planes -> refine -> hierarchy -> fusion -> relations, on a grid of every ``scene_stride``-th pixel
(2: a quarter of the pixels; boxes and centroids barely change, the cost drops fourfold). Each step
is a function of its own module; this one wires them and times them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..camera import PinholeCamera
from ..config import SamRosConfig
from ..masks import part_parents
from .fusion import (Object3DEstimate, ObjectPoints, as_numpy_masks, back_project, check_sizes, erode,
                     estimate_objects, mad_inliers)
from .planes import FLOOR, Plane, find_planes, mask_planes
from .refine import MaskEntries, Refinement, refine, refined_masks
from .relations import floating_tables, supports, table_legs

PLANE_GRID_PX = 8      # planes are fitted on every 8th pixel of the frame
PLANE_HYPOTHESES = 256
PLANE_SEED = 0         # MSAC is seeded: the same frame gives the same planes
MIN_PLANE_FRACTION = 0.02  # a plane holds at least 2% of the grid's valid points
MAD_GATE, MIN_GATE_M = 4.0, 0.02
STRUCTURE, OBJECT = "structure", "object"
GRAZING_CUT = 0.5      # refinement kept less than this share of a mask's depth: judge the mask whole too,
MIN_INCIDENCE = np.radians(10.0)  # as a plane that meets the camera's rays at this angle at least


@dataclass
class Scene:
    """One frame's scene: an estimate per mask (kind, parent, support, geometry), the planes and up."""

    objects: list[Object3DEstimate]
    masks: np.ndarray             # (N, H, W) bool: the refined masks (structure masks as they came)
    points: ObjectPoints          # the points of every mask (grid pixels, after refinement and the MAD gate)
    planes: list[Plane]
    up: np.ndarray                # unit vertical of the output frame (given, or estimated from the planes)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def published(self, fuse_parts: bool) -> np.ndarray:
        """(N,) bool: valid whole objects (and valid parts with ``fuse_parts``): what ~/objects and its cloud carry."""
        return np.array([o.valid and o.kind == OBJECT and (fuse_parts or o.parent < 0) for o in self.objects], bool)


def analyse_scene(masks, depth_m: np.ndarray, camera: PinholeCamera, prompts: np.ndarray, config: SamRosConfig, *,
                  transform: np.ndarray | None = None, up: np.ndarray | None = None,
                  rays: np.ndarray | None = None) -> Scene:
    """The scene of one frame: masks (N, H, W), depth in metres (NaN = invalid), prompts (N, 2) pixels (x, y).

    ``transform`` (4x4) maps the optical frame to the output frame, whose vertical is ``up`` (None: the
    optical frame, up estimated from the floor; see ``planes.find_planes``). ``rays`` may pass the cached
    ``camera.rays()``.
    """
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = (now - clock[0]) * 1000.0
        clock[0] = now

    masks = as_numpy_masks(masks)
    check_sizes(masks.shape, np.shape(depth_m), camera)
    s = config.scene_stride
    grid_masks = np.ascontiguousarray(masks[:, ::s, ::s])
    z = np.ascontiguousarray(depth_m[::s, ::s], dtype=np.float64)
    rays = (rays if rays is not None else camera.rays())[::s, ::s]
    points = back_project(z, rays, transform)
    camera_position = np.zeros(3) if transform is None else np.asarray(transform, dtype=np.float64)[:3, 3]
    noise = dict(sigma_at_1m=config.depth_sigma_at_1m, band_sigmas=config.plane_band_sigmas,
                 min_band=config.plane_min_band)
    min_points = config.min_valid_points  # points on the grid, as point_count reports them
    lap("scene_prepare_ms")

    g = max(1, round(PLANE_GRID_PX / s))
    planes, up_vec = find_planes(points[::g, ::g], z[::g, ::g], camera_position, up, min_extent=config.plane_min_extent,
                                 max_planes=config.max_planes, min_fraction=MIN_PLANE_FRACTION,
                                 hypotheses=PLANE_HYPOTHESES, seed=PLANE_SEED, **noise)
    lap("planes_ms")
    if len(masks) == 0:  # no mask survived the filters: the planes are all there is
        empty = ObjectPoints(torch.zeros(0, dtype=torch.int64), torch.zeros((0, 3), dtype=torch.float64),
                             torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64))
        return Scene([], masks, empty, planes, up_vec, timings)

    refined = refine(grid_masks, points, z, planes, np.asarray(prompts, dtype=np.float64).reshape(-1, 2) / s,
                     structure_fraction=config.structure_fraction, jump_ratio=config.depth_jump_ratio,
                     min_points=min_points, **noise)
    full_masks = refined_masks(masks, refined.removed, s)
    lap("refine_ms")

    # Containment is a ratio of areas: every other grid pixel in each direction measures it well enough.
    parents = part_parents(refined.keep[:, ::2, ::2], refined.structure.astype(np.int64), config.part_containment)
    lap("hierarchy_ms")

    cloud = _gather(refined.kept, refined.structure, refined.depth_coverage, z, points, config.erosion_px, s,
                    min_points)
    estimates = estimate_objects(cloud, min_valid_points=min_points, up=up_vec)
    _label(estimates, refined, parents, planes, config.fuse_parts)
    _planar_structure(estimates, cloud, planes, refined.plane, up_vec, camera_position, config, noise)
    for i in _grazing_structure(estimates, refined, z, points, planes, up_vec, camera_position, config, noise):
        full_masks[i] = masks[i]  # structure masks are published as they came
    _room_sized(estimates, config.max_object_size)
    lap("fusion_ms")

    plane_masks = _largest_structure_mask(estimates, refined.plane, len(planes), cloud.counts.numpy())
    tops = supports(estimates, planes, plane_masks, refined.plane, refined.keep, points, up_vec, camera_position,
                    tolerance=config.support_tolerance, **noise)
    if floating_tables(estimates, tops, cloud.index.numpy(), cloud.points.numpy(), refined.keep, points, z, planes,
                       plane_masks, refined.plane, up_vec, camera_position,
                       structure_fraction=config.structure_fraction, jump_ratio=config.depth_jump_ratio,
                       tolerance=config.support_tolerance, **noise):
        supports(estimates, planes, plane_masks, refined.plane, refined.keep, points, up_vec, camera_position,
                 tolerance=config.support_tolerance, **noise)
    table_legs(estimates, planes, up_vec, camera_position, tolerance=config.support_tolerance, **noise)
    lap("relations_ms")
    return Scene(estimates, full_masks, cloud, planes, up_vec, timings)


def _gather(kept: MaskEntries, structure: np.ndarray, coverage: np.ndarray, z: np.ndarray, points: np.ndarray,
            erosion_px: int, stride: int, min_points: int) -> ObjectPoints:
    """Points of the refined masks (eroded where enough survive: edges carry flying depth), MAD-gated in depth.

    Large structure masks (the floor and walls are most of the image) use every other grid point in
    each direction: their boxes need no more, and the per-point cost of the frame halves.
    """
    n, w = len(structure), z.shape[1]
    full = kept.select(np.isfinite(z).reshape(-1)[kept.pixel])
    rows, cols = np.divmod(full.pixel, w)
    large = structure & (full.count(n) >= 8 * min_points)
    selected = full = full.select(~large[full.index] | ((rows % 2 == 0) & (cols % 2 == 0)))
    if erosion_px >= stride:  # pixels -> grid steps
        dense = full.dense((n, *z.shape))
        eroded = erode(dense, erosion_px // stride)
        too_few = np.count_nonzero(eroded.reshape(n, -1), 1) < min_points
        eroded[too_few] = dense[too_few]  # small objects keep their edge pixels
        selected = MaskEntries.of(eroded)
    depth = z.reshape(-1)[selected.pixel]
    inlier = mad_inliers(selected.index, depth, n, MAD_GATE, MIN_GATE_M)
    return ObjectPoints.from_numpy(selected.index[inlier], points.reshape(-1, 3)[selected.pixel[inlier]], n, coverage)


def _label(estimates: list[Object3DEstimate], refined, parents: np.ndarray, planes: list[Plane],
           fuse_parts: bool) -> None:
    """Kind, plane and parent of each estimate; parts are not objects of their own unless ``fuse_parts``."""
    for i, estimate in enumerate(estimates):
        estimate.parent = int(parents[i])
        if refined.structure[i]:
            plane = planes[int(refined.plane[i])]
            estimate.kind, estimate.structure = STRUCTURE, plane.kind
            estimate.plane = np.array([*plane.normal, plane.offset])
        if estimate.parent >= 0 and estimate.kind == OBJECT and not fuse_parts and estimate.valid:
            estimate.valid = False
            estimate.reason = f"part of mask {estimate.parent + 1} (fuse_parts is off)"


def _planar_structure(estimates: list[Object3DEstimate], cloud: ObjectPoints, planes: list[Plane],
                      plane_of_mask: np.ndarray, up: np.ndarray, camera_position: np.ndarray, config: SamRosConfig,
                      noise: dict) -> None:
    """Whole object masks that are one large level or upright plane of their own become structure, and their
    planes join the scene's (in place)."""
    found = _own_planes(cloud.index.numpy(), cloud.points.numpy(), _whole_objects(estimates), planes, up,
                        camera_position, config, noise)
    _make_structure(estimates, planes, plane_of_mask, found)


def _grazing_structure(estimates: list[Object3DEstimate], refined: Refinement, z: np.ndarray, points: np.ndarray,
                       planes: list[Plane], up: np.ndarray, camera_position: np.ndarray, config: SamRosConfig,
                       noise: dict) -> list[int]:
    """Object masks that refinement cut to less than ``GRAZING_CUT`` of their depth, judged whole: a wall seen
    at a grazing angle has depth steps between neighbouring pixels as large as a discontinuity's, so its
    depth regions fragment. A mask whose own points are one large level or upright plane that the camera
    does not see edge-on becomes structure (in place). Returns those masks."""
    candidates = _whole_objects(estimates) & (refined.kept_depth < GRAZING_CUT)
    if not candidates.any():
        return []
    whole = refined.whole
    chosen = candidates[whole.index] & np.isfinite(z).reshape(-1)[whole.pixel]
    found = _own_planes(whole.index[chosen], points.reshape(-1, 3)[whole.pixel[chosen]], candidates, planes, up,
                        camera_position, config, noise)
    # A mask spread along the camera's rays (an object and the background behind it) fits a plane seen edge-on,
    # which depth cannot tell from anything: the plane must meet the rays at MIN_INCIDENCE at least.
    found = {i: p for i, p in found.items() if abs(p.normal @ camera_position - p.offset)
             >= np.sin(MIN_INCIDENCE) * np.linalg.norm(p.center - camera_position)}
    _make_structure(estimates, planes, refined.plane, found)
    return sorted(found)


def _room_sized(estimates: list[Object3DEstimate], max_size: float) -> None:
    """Objects larger than ``max_size`` on any side are masks of background that is not one plane (a wall and
    the floor before it): no robot acts on them as an object, so they are flagged not valid with the reason,
    as objects without depth are (``Scene.published`` and the markers leave them out)."""
    for estimate in estimates:
        if max_size > 0 and estimate.kind == OBJECT and estimate.valid and np.max(estimate.obb_size) > max_size:
            estimate.valid = False
            estimate.reason = f"{np.max(estimate.obb_size):.1f} m long, over max_object_size ({max_size} m)"


def _whole_objects(estimates: list[Object3DEstimate]) -> np.ndarray:
    """(N,) bool: valid object masks that are no part of another."""
    return np.array([o.whole_object for o in estimates], bool)


def _own_planes(index: np.ndarray, points: np.ndarray, candidates: np.ndarray, planes: list[Plane], up: np.ndarray,
                camera_position: np.ndarray, config: SamRosConfig, noise: dict) -> dict[int, Plane]:
    """``mask_planes`` of the candidate masks' points (P, 3), grouped by ``index``, against this frame's floor."""
    floor = next((p for p in planes if p.kind == FLOOR), None)
    return mask_planes(index, points, candidates, up, None if floor is None else float(floor.center @ up),
                       camera_position, min_extent=config.plane_min_extent, **noise)


def _make_structure(estimates: list[Object3DEstimate], planes: list[Plane], plane_of_mask: np.ndarray,
                    found: dict[int, Plane]) -> None:
    """Masks that are planes of their own become structure, and their planes join the scene's."""
    for i, plane in found.items():
        plane_of_mask[i] = len(planes)
        planes.append(plane)
        estimate = estimates[i]
        estimate.kind, estimate.structure = STRUCTURE, plane.kind
        estimate.plane = np.array([*plane.normal, plane.offset])


def _largest_structure_mask(estimates: list[Object3DEstimate], plane_of_mask: np.ndarray, n_planes: int,
                            counts: np.ndarray) -> list[int]:
    """Per plane, the index of the valid structure mask with the most points on it (-1: none)."""
    best = [-1] * n_planes
    for i, estimate in enumerate(estimates):
        k = int(plane_of_mask[i])
        if k >= 0 and estimate.valid and (best[k] < 0 or counts[i] > counts[best[k]]):
            best[k] = i
    return best
