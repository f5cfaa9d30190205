"""Small items for classic scenes: boxes, spheres and cylinders sized to cover ~100-1000 pixels.

A far bolt or cup is what a coarse prompt grid steps over, so benchmarks of crops and adaptive
density need such items in scenes the model otherwise handles. They are drawn after everything else
of a classic scene (same seed, same room and large objects, plus the items), stand on the floor,
never overlap another footprint and are placed only where the camera sees their centre.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .geometry import Solid, intersect
from .render import Intrinsics, camera_rotation
from .scene import SHAPES, OBJECT_TEXTURES, SceneObject, SceneSpec

VIEW_MARGIN = 0.95   # the centre must lie within this share of the image's half-extents
GAP_M = 0.03         # free floor between an item's footprint and any other


def add_small_items(spec: SceneSpec, rng: np.random.Generator, count: int, area_px=(100.0, 1000.0),
                    depth_range=(1.0, 3.0), intrinsics: Intrinsics | None = None) -> SceneSpec:
    """``spec`` plus up to ``count`` small items whose projected area is log-uniform in ``area_px`` at
    ``intrinsics`` (default 640x480); their ids are in ``extra["small"]``."""
    intrinsics = intrinsics or Intrinsics.default()
    to_level = camera_rotation(spec)
    objects = list(spec.objects)
    small_ids = []
    for _ in range(30 * count):
        if len(small_ids) == count:
            break
        item = _draw(rng, len(objects) + 1, spec.camera_height, to_level, area_px, depth_range, intrinsics.fx)
        if _overlaps(item, objects) or not _in_sight(item, objects, to_level, intrinsics):
            continue
        objects.append(item)
        small_ids.append(item.id)
    return replace(spec, objects=tuple(objects), extra={**spec.extra, "small": tuple(small_ids)})


def _draw(rng, object_id, camera_height, to_level, area_px, depth_range, focal_px) -> SceneObject:
    """A classic shape on the floor whose side is sqrt(area) pixels at its distance from the camera."""
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    z = float(rng.uniform(*depth_range))
    x = float(rng.uniform(-0.45, 0.45) * z)
    depth = float((to_level.T @ np.array([x, camera_height, z]))[2])
    side = float(np.sqrt(np.exp(rng.uniform(*np.log(area_px)))) * max(depth, 0.3) / focal_px)
    if shape == "box":
        size = (side * rng.uniform(0.7, 1.3), side * rng.uniform(0.5, 1.2), side * rng.uniform(0.7, 1.3))
    elif shape == "sphere":
        size = (side, side, side)
    else:
        d = side * rng.uniform(0.7, 1.1)
        size = (d, side * rng.uniform(0.7, 1.3), d)
    size = tuple(float(s) for s in size)
    return SceneObject(
        id=object_id, shape=shape, center=(x, camera_height - size[1] / 2, z), size=size,
        yaw=float(rng.uniform(-np.pi / 2, np.pi / 2)) if shape == "box" else 0.0,
        texture=OBJECT_TEXTURES[int(rng.integers(len(OBJECT_TEXTURES)))],
        tint=tuple(float(t) for t in rng.uniform(0.6, 1.2, 3)),
        texture_offset=tuple(float(t) for t in rng.uniform(0, 1, 2)))


def _radius(obj: SceneObject) -> float:
    return 0.5 * float(np.hypot(obj.size[0], obj.size[2]))


def _overlaps(item: SceneObject, objects) -> bool:
    return any(np.hypot(item.center[0] - o.center[0], item.center[2] - o.center[2]) < _radius(item) + _radius(o) + GAP_M
               for o in objects)


def _in_sight(item: SceneObject, objects, to_level, intrinsics: Intrinsics) -> bool:
    """Whether the item's centre projects inside the image and no object stands between it and the camera."""
    centre = np.asarray(item.center)
    x, y, z = to_level.T @ centre
    u, v = intrinsics.fx * x / max(z, 1e-9), intrinsics.fy * y / max(z, 1e-9)
    if z <= 0 or abs(u) > VIEW_MARGIN * intrinsics.cx or abs(v) > VIEW_MARGIN * intrinsics.cy:
        return False
    ray = centre[None, :]  # the ray parameter is 1 at the centre
    for obj in objects:
        _, t, _, _ = intersect(Solid(obj.shape, obj.center, obj.size, obj.yaw, obj.top_ratio), np.zeros(3), ray)
        if (t < 1.0).any():
            return False
    return True
