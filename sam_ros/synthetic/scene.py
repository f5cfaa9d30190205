"""Scene descriptions with exact ground truth: shapes on a floor in front of a wall.

Coordinates are metres in a level frame with the camera at the origin: x right, y down, z forward
(the optical frame of a camera that is not pitched). The camera itself may be pitched down; see
``render``. Objects stand on the floor, so every object's pose is known exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

SHAPES = ("box", "sphere", "cylinder")
OBJECT_TEXTURES = ("astronaut", "chelsea", "coffee", "rocket", "hubble", "retina")
FLOOR_TEXTURES = ("grass", "gravel")
WALL_TEXTURES = ("brick",)


@dataclass(frozen=True)
class SceneObject:
    """A box (yaw about the vertical), sphere or vertical cylinder, centre in the level frame."""

    id: int
    shape: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]  # box: x, y, z extents; sphere: diameter x3; cylinder: 2r, height, 2r
    yaw: float = 0.0                   # about the vertical (-y) axis, radians; boxes only
    texture: str = "astronaut"
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    texture_offset: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[SceneObject, ...]
    camera_height: float = 1.0       # metres above the floor
    camera_pitch: float = 0.35       # radians, positive looks down
    wall_distance: float = 4.5       # metres, along the level z axis
    floor_texture: str = "gravel"
    wall_texture: str = "brick"
    floor_tint: tuple[float, float, float] = (0.9, 0.9, 0.9)
    wall_tint: tuple[float, float, float] = (0.9, 0.8, 0.7)
    light: tuple[float, float, float] = (-0.4, -1.0, -0.5)  # direction the light travels from, level frame
    extra: dict = field(default_factory=dict, compare=False)

    def moved(self, offsets: dict[int, tuple[float, float]], yaw_rates: dict[int, float] | None = None,
              dt: float = 1.0) -> "SceneSpec":
        """The same scene with objects slid along the floor by (dx, dz) * dt (for sequences)."""
        yaw_rates = yaw_rates or {}
        objects = []
        for obj in self.objects:
            dx, dz = offsets.get(obj.id, (0.0, 0.0))
            x, y, z = obj.center
            objects.append(replace(obj, center=(x + dx * dt, y, z + dz * dt), yaw=obj.yaw + yaw_rates.get(obj.id, 0.0) * dt))
        return replace(self, objects=tuple(objects))


def sample_scene(rng: np.random.Generator, n_objects: tuple[int, int] = (3, 6), depth_range=(1.0, 3.0),
                 camera_pitch=(0.2, 0.5), camera_height=(0.8, 1.3)) -> SceneSpec:
    """Random, non-overlapping objects standing on the floor between ``depth_range`` metres."""
    height = float(rng.uniform(*camera_height))
    pitch = float(rng.uniform(*camera_pitch))
    count = int(rng.integers(n_objects[0], n_objects[1] + 1))
    objects: list[SceneObject] = []
    placed: list[tuple[float, float, float]] = []  # x, z, footprint radius
    for _ in range(count * 20):
        if len(objects) == count:
            break
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        if shape == "box":
            size = tuple(float(s) for s in rng.uniform(0.18, 0.5, 3))
            radius = 0.5 * float(np.hypot(size[0], size[2]))
        elif shape == "sphere":
            d = float(rng.uniform(0.2, 0.45))
            size, radius = (d, d, d), d / 2
        else:
            d, h = float(rng.uniform(0.15, 0.35)), float(rng.uniform(0.25, 0.6))
            size, radius = (d, h, d), d / 2
        z = float(rng.uniform(*depth_range))
        # stay inside a cone a bit narrower than the camera's view
        x = float(rng.uniform(-0.45, 0.45) * z)
        if any(np.hypot(x - px, z - pz) < radius + pr + 0.08 for px, pz, pr in placed):
            continue
        placed.append((x, z, radius))
        center = (x, height - size[1] / 2, z)
        objects.append(SceneObject(
            id=len(objects) + 1, shape=shape, center=center, size=size,
            yaw=float(rng.uniform(-np.pi / 2, np.pi / 2)) if shape == "box" else 0.0,
            texture=OBJECT_TEXTURES[int(rng.integers(len(OBJECT_TEXTURES)))],
            tint=tuple(float(t) for t in rng.uniform(0.6, 1.2, 3)),
            texture_offset=tuple(float(t) for t in rng.uniform(0, 1, 2))))
    return SceneSpec(
        objects=tuple(objects), camera_height=height, camera_pitch=pitch,
        wall_distance=float(rng.uniform(3.8, 5.5)),
        floor_texture=FLOOR_TEXTURES[int(rng.integers(len(FLOOR_TEXTURES)))],
        wall_texture=WALL_TEXTURES[int(rng.integers(len(WALL_TEXTURES)))],
        floor_tint=tuple(float(t) for t in rng.uniform(0.5, 1.0, 3)),
        wall_tint=tuple(float(t) for t in rng.uniform(0.5, 1.0, 3)),
        light=(float(rng.uniform(-0.6, 0.6)), -1.0, float(rng.uniform(-0.8, -0.2))))
