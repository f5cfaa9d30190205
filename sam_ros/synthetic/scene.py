"""Scene descriptions with exact ground truth: shapes on a floor, on tables or on each other, in a room.

Coordinates are metres in a level frame with the camera at the origin: x right, y down, z forward
(the optical frame of a camera that is neither pitched nor rolled). The camera itself may be pitched
and rolled; see ``render``. A sequence may move the camera: it then stands at ``camera_position``
(x, z) and is turned by ``camera_yaw``, both 0 otherwise; ground truth stays in the camera's frame.
Every object rests on something (``support``: the floor, a table top or another object), so every
object's pose is known exactly.

Ids: objects are numbered 1..999; structures (floor, walls, table tops and legs) from
``FLOOR_ID`` = 1000 up. ``sample_scene(rng)`` draws the first renderer's scenes ("classic": the
floor, one wall, boxes/spheres/cylinders); ``sample_scene(rng, style="rich")`` draws the richer
ones of ``rich.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

SHAPES = ("box", "sphere", "cylinder")
FLOOR_ID = 1000           # the floor's id; walls and tables follow it
STRUCTURE_KINDS = ("floor", "wall", "table_top", "table_leg")


@dataclass(frozen=True)
class Material:
    """How a surface is coloured: a photo texture (cropped, scaled, turned, tinted) or a plain colour."""

    texture: str = ""                             # a name in textures/; "" = plain colour
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gain; a plain surface's colour (0-1)
    offset: tuple[float, float] = (0.0, 0.0)      # texture shift, fractions of the texture
    scale: float = 1.0                            # texels per metre, relative to the renderer's default
    rotation: float = 0.0                         # texture rotation on the surface, radians
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
    support: int = FLOOR_ID            # id of what it rests on: the floor, a table top or an object
    top_ratio: float = 1.0             # frustums: top radius / bottom radius (0 a cone, 1 a cylinder)
    texture_scale: float = 1.0
    texture_rotation: float = 0.0

    @property
    def material(self) -> Material:
        return Material(self.texture, self.tint, self.texture_offset, self.texture_scale, self.texture_rotation)

    @property
    def top(self) -> float:
        """Level-frame y of its top (y points down)."""
        return self.center[1] - self.size[1] / 2


@dataclass(frozen=True)
class Wall:
    """A vertical plane at ``distance`` from the camera; its outward horizontal direction is ``angle``
    (radians from the level z axis towards x), so 0 is a wall straight ahead."""

    id: int
    angle: float
    distance: float
    material: Material = Material("brick", (0.9, 0.8, 0.7))

    @property
    def outward(self) -> np.ndarray:
        return np.array([np.sin(self.angle), 0.0, np.cos(self.angle)])


@dataclass(frozen=True)
class Table:
    """A top slab on four legs standing on the floor. The top's id is ``id``; legs are id+1..id+4."""

    id: int
    center: tuple[float, float]       # x, z on the floor (level frame)
    top_size: tuple[float, float]     # extents along the table's own x and z
    height: float                     # top surface above the floor
    yaw: float = 0.0
    material: Material = Material()
    leg_material: Material = Material()
    thickness: float = 0.03
    leg_width: float = 0.045

    @property
    def leg_ids(self) -> tuple[int, ...]:
        return tuple(self.id + k for k in range(1, 5))

    def top_y(self, camera_height: float) -> float:
        """Level-frame y of the top surface."""
        return camera_height - self.height

    def parts(self, camera_height: float) -> list[tuple[int, str, tuple, tuple]]:
        """(id, kind, centre, size) of the top and the legs, in the level frame (all turned by ``yaw``)."""
        top_y = self.top_y(camera_height)
        x, z = self.center
        sx, sz = self.top_size
        parts = [(self.id, "table_top", (x, top_y + self.thickness / 2, z), (sx, self.thickness, sz))]
        leg_h = self.height - self.thickness
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        inset_x, inset_z = sx / 2 - self.leg_width, sz / 2 - self.leg_width
        for leg_id, (lx, lz) in zip(self.leg_ids, ((-1, -1), (1, -1), (-1, 1), (1, 1))):
            ox, oz = lx * inset_x, lz * inset_z
            # local -> level with yaw_rotation: x' = c x + s z, z' = -s x + c z
            parts.append((leg_id, "table_leg", (x + c * ox + s * oz, camera_height - leg_h / 2, z - s * ox + c * oz),
                          (self.leg_width, leg_h, self.leg_width)))
        return parts


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
    light: tuple[float, float, float] = (-0.4, -1.0, -0.5)  # direction towards the light, level frame
    extra: dict = field(default_factory=dict, compare=False)
    camera_roll: float = 0.0         # radians about the optical axis
    walls: tuple[Wall, ...] = ()     # empty: one wall straight ahead at wall_distance (wall_texture, wall_tint)
    tables: tuple[Table, ...] = ()
    floor_material: Material | None = None  # None: floor_texture, floor_tint
    shadows: bool = False            # cast shadows from objects and tables
    ambient: float = 0.35            # share of light that reaches shadowed and averted surfaces
    light_colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bilinear: bool = False           # mip-mapped bilinear texture lookup (the first renderer used nearest texels)
    camera_position: tuple[float, float] = (0.0, 0.0)  # x, z in the level frame (sequences move it)
    camera_yaw: float = 0.0          # radians about the vertical, from z towards x

    def wall_list(self) -> tuple[Wall, ...]:
        return self.walls or (Wall(FLOOR_ID + 1, 0.0, self.wall_distance, Material(self.wall_texture, self.wall_tint)),)

    def floor(self) -> Material:
        return self.floor_material or Material(self.floor_texture, self.floor_tint)

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


def sample_scene(rng: np.random.Generator, n_objects: tuple[int, int] | None = None, depth_range=(1.0, 3.0),
                 camera_pitch=(0.2, 0.5), camera_height=(0.8, 1.3), style: str = "classic", **rich) -> SceneSpec:
    """Random, non-overlapping objects standing on the floor between ``depth_range`` metres.

    Classic keywords ``n_small`` (a count range) and ``small_area_px`` add small items
    (``small_items.py``), drawn after the rest so that the scene is otherwise that of the same seed.

    ``style="rich"`` draws from ``rich.sample_rich_scene`` instead (keyword arguments go to it;
    ``n_objects`` is passed on when given, the classic ranges are not).
    """
    if style == "rich":
        from .rich import sample_rich_scene
        return sample_rich_scene(rng, **rich) if n_objects is None else sample_rich_scene(rng, n_objects=n_objects, **rich)
    small = {name: rich.pop(name) for name in ("n_small", "small_area_px") if name in rich}
    if style != "classic" or rich:
        raise ValueError(f"unknown style {style!r} or arguments {sorted(rich)} for the classic style")
    n_objects = n_objects or (3, 6)
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
    spec = SceneSpec(
        objects=tuple(objects), camera_height=height, camera_pitch=pitch,
        wall_distance=float(rng.uniform(3.8, 5.5)),
        floor_texture=FLOOR_TEXTURES[int(rng.integers(len(FLOOR_TEXTURES)))],
        wall_texture=WALL_TEXTURES[int(rng.integers(len(WALL_TEXTURES)))],
        floor_tint=tuple(float(t) for t in rng.uniform(0.5, 1.0, 3)),
        wall_tint=tuple(float(t) for t in rng.uniform(0.5, 1.0, 3)),
        light=(float(rng.uniform(-0.6, 0.6)), -1.0, float(rng.uniform(-0.8, -0.2))))
    if not small:
        return spec
    from .small_items import add_small_items
    n_small = small.get("n_small", (0, 0))
    return add_small_items(spec, rng, int(rng.integers(n_small[0], n_small[1] + 1)),
                           small.get("small_area_px", (100.0, 1000.0)), depth_range)
