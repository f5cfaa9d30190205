"""Rich random scenes: a textured room, tables, stacked, touching and small objects, a varied camera.

``sample_rich_scene(rng)`` draws a ``SceneSpec`` that ``render`` turns into colour, depth and exact
ground truth. What varies, and why (a model trained on one look learns that look):
- surfaces: photo textures (cropped, scaled, turned, tinted) or plain colours, on floor, walls,
  tables and objects alike, so texture edges are not object edges;
- light: a directional light from a random direction with cast shadows and a random ambient share,
  so shadow edges are not object edges either;
- geometry: boxes, thin plates (lying or standing), spheres, ellipsoids, cylinders, frustums and
  cones; on the floor, on tables, stacked on each other, touching (footprints bisected to contact);
- small items with a projected area of about ``small_area_px`` pixels;
- camera height, pitch and roll, room orientation and size.
Every object rests on its ``support`` (floor, table top or object) exactly; footprints never overlap.
Photometric effects (blur, noise, JPEG, exposure) are separate: see ``photometric.py``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .geometry import Solid, intersect
from .render import Intrinsics, camera_rotation
from .scene import FLOOR_ID, Material, SceneObject, SceneSpec, Table, Wall

TEXTURES = ("astronaut", "chelsea", "coffee", "rocket", "hubble", "retina", "brick", "grass", "gravel", "camera",
            "coins", "text", "ihc", "clock", "cell", "checkerboard", "astronaut_large",
            "hubble_large", "brick_large")
REGULAR_SHAPES = ("box", "box", "plate", "sphere", "ellipsoid", "cylinder", "cylinder", "frustum", "cone")
SMALL_SHAPES = ("box", "cylinder", "sphere", "frustum", "plate")
TABLE_ID_STEP = 5          # a table uses its id and four leg ids
FIRST_TABLE_ID = FLOOR_ID + 10
MIN_FLOOR_DISTANCE = 0.6   # metres from the camera to anything standing on the floor
ROOM_SCALE = (0.15, 1.2)   # texture scales of floors and walls
ROUND_SIDES = 12           # polygon used for round footprints (circumscribed, so never too small)


def sample_rich_scene(rng: np.random.Generator, n_objects: tuple[int, int] = (3, 9),
                      n_small: tuple[int, int] = (0, 4), n_tables: tuple[int, int] = (0, 2),
                      stack_prob: float = 0.2, touch_prob: float = 0.3, table_prob: float = 0.4,
                      camera_height: tuple[float, float] = (0.5, 1.7),
                      camera_pitch_deg: tuple[float, float] = (10.0, 45.0),
                      camera_roll_deg: tuple[float, float] = (-10.0, 10.0), plain_prob: float = 0.3,
                      small_area_px: tuple[float, float] = (100.0, 1000.0), intrinsics: Intrinsics | None = None,
                      max_distance: float = 6.0, shadows: bool = True) -> SceneSpec:
    """A random room scene; ``n_objects`` regular objects plus ``n_small`` small ones (ranges, inclusive;
    the small ones' ids are in ``spec.extra["small"]``, and each was placed where the camera sees it).

    ``table_prob`` and ``stack_prob`` are the chances that an object is put on a table (when there
    is one) or on a flat-topped object instead of the floor; ``touch_prob`` that it is pushed
    against a neighbour on the same support. Objects stand where pixels of ``intrinsics`` (default
    640x480) look, and small items' sizes are chosen for ``small_area_px`` pixels in that image.
    """
    height = float(rng.uniform(*camera_height))
    base = SceneSpec((), camera_height=height, camera_pitch=float(np.radians(rng.uniform(*camera_pitch_deg))),
                     camera_roll=float(np.radians(rng.uniform(*camera_roll_deg))))
    walls = _sample_walls(rng, plain_prob)
    placer = _Placer(rng, base, walls, intrinsics or Intrinsics.default(), max_distance, plain_prob)
    tables = []
    for index in range(int(rng.integers(n_tables[0], n_tables[1] + 1))):
        table = placer.table(FIRST_TABLE_ID + TABLE_ID_STEP * index)
        if table is not None:
            tables.append(table)
    sizes = ["regular"] * int(rng.integers(n_objects[0], n_objects[1] + 1))
    sizes += ["small"] * int(rng.integers(n_small[0], n_small[1] + 1))  # last, so nothing hides them later
    objects: list[SceneObject] = []
    small_ids = []
    for kind in sizes:
        obj = placer.object(len(objects) + 1, kind, objects, tables, stack_prob, touch_prob, table_prob,
                            small_area_px)
        if obj is not None:
            objects.append(obj)
            if kind == "small":
                small_ids.append(obj.id)
    light_elevation = rng.uniform(np.radians(25), np.radians(80))
    light_azimuth = rng.uniform(-np.pi, np.pi)
    light = (float(np.cos(light_elevation) * np.sin(light_azimuth)), float(-np.sin(light_elevation)),
             float(np.cos(light_elevation) * np.cos(light_azimuth)))
    warmth = rng.uniform(-0.12, 0.12)
    floor = sample_material(rng, plain_prob, ROOM_SCALE)
    return SceneSpec(
        objects=tuple(objects), camera_height=height, camera_pitch=base.camera_pitch,
        wall_distance=walls[0].distance, floor_texture=floor.texture, wall_texture=walls[0].material.texture,
        light=light, camera_roll=base.camera_roll, walls=walls, tables=tuple(tables), floor_material=floor,
        shadows=shadows, ambient=float(rng.uniform(0.2, 0.55)),
        light_colour=(float(1 + warmth), 1.0, float(1 - warmth)), bilinear=True, extra={"small": tuple(small_ids)})


def sample_material(rng: np.random.Generator, plain_prob: float, scale: tuple[float, float] = (0.35, 2.5)) -> Material:
    """A plain colour, or a photo texture cropped (offset), scaled (log-uniform in ``scale``), turned and
    colour-jittered. Rooms use coarser scales than objects, so a floor repeats its photo less."""
    if rng.random() < plain_prob:
        return Material("", tuple(float(c) for c in rng.uniform(0.08, 0.95, 3)))
    gain = rng.uniform(0.6, 1.25)
    return Material(TEXTURES[int(rng.integers(len(TEXTURES)))],
                    tuple(float(c) for c in gain * rng.uniform(0.7, 1.3, 3)),
                    tuple(float(o) for o in rng.uniform(0, 1, 2)), float(np.exp(rng.uniform(*np.log(scale)))),
                    float(rng.uniform(-np.pi, np.pi)))


def _sample_walls(rng: np.random.Generator, plain_prob: float) -> tuple[Wall, ...]:
    """Back, left and right walls of a room turned by up to ~30 degrees; often one material for all."""
    yaw = float(rng.uniform(-0.5, 0.5))
    shared = sample_material(rng, plain_prob, ROOM_SCALE)
    materials = [shared if rng.random() < 0.6 else sample_material(rng, plain_prob, ROOM_SCALE) for _ in range(3)]
    return (Wall(FLOOR_ID + 1, yaw, float(rng.uniform(3.0, 7.0)), materials[0]),
            Wall(FLOOR_ID + 2, yaw - np.pi / 2, float(rng.uniform(1.2, 4.0)), materials[1]),
            Wall(FLOOR_ID + 3, yaw + np.pi / 2, float(rng.uniform(1.2, 4.0)), materials[2]))


def footprint(shape: str, center_xz, size, yaw: float) -> np.ndarray:
    """Convex polygon (K, 2) covering a solid's footprint on its support, level-frame x and z."""
    if shape in ("box", "plate"):
        local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [size[0] / 2, size[2] / 2]
    else:
        angles = np.arange(ROUND_SIDES) * 2 * np.pi / ROUND_SIDES
        local = np.stack([np.cos(angles) * size[0] / 2, np.sin(angles) * size[2] / 2], 1) / np.cos(np.pi / ROUND_SIDES)
    c, s = np.cos(yaw), np.sin(yaw)
    # yaw_rotation: x' = c x + s z, z' = -s x + c z
    return np.stack([c * local[:, 0] + s * local[:, 1], -s * local[:, 0] + c * local[:, 1]], 1) + np.asarray(center_xz)


def polygons_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test for two convex polygons; touching counts as not overlapping."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        axes = np.stack([-edges[:, 1], edges[:, 0]], 1)
        pa, pb = a @ axes.T, b @ axes.T
        if ((pa.max(0) <= pb.min(0) + 1e-9) | (pb.max(0) <= pa.min(0) + 1e-9)).any():
            return False
    return True


class _Placer:
    """Draws tables and objects at free, visible places on their supports."""

    def __init__(self, rng, base: SceneSpec, walls, intrinsics: Intrinsics, max_distance: float, plain_prob: float):
        self.rng, self.walls, self.max_distance, self.plain_prob = rng, walls, max_distance, plain_prob
        self.focal_px = intrinsics.fx
        # the normalised image coordinates of the view, less a 5% margin
        self.view = (-intrinsics.cx / intrinsics.fx * 0.95, (intrinsics.width - 1 - intrinsics.cx) / intrinsics.fx * 0.95,
                     -intrinsics.cy / intrinsics.fy * 0.95, (intrinsics.height - 1 - intrinsics.cy) / intrinsics.fy * 0.95)
        self.height = base.camera_height
        self.to_level = camera_rotation(base)
        self.floor_taken: list[np.ndarray] = []   # footprints on the floor (objects and tables)
        self.taken: dict[int, list[np.ndarray]] = {}  # support id -> footprints on it
        self.support_tops: dict[int, np.ndarray] = {}  # table or object id -> its top's footprint

    def visible_floor_point(self) -> np.ndarray | None:
        """Where the ray through a random pixel meets the floor (level x, z), if in range."""
        x0, x1, y0, y1 = self.view
        ray = self.to_level @ np.array([self.rng.uniform(x0, x1), self.rng.uniform(y0, y1), 1.0])
        if ray[1] <= 1e-6:
            return None
        point = ray * self.height / ray[1]
        if not MIN_FLOOR_DISTANCE <= np.hypot(point[0], point[2]) <= self.max_distance:
            return None
        return point[[0, 2]]

    def inside_room(self, poly: np.ndarray, margin: float = 0.02) -> bool:
        return all((poly @ wall.outward[[0, 2]] < wall.distance - margin).all() for wall in self.walls) and \
            np.hypot(*poly.T).min() > MIN_FLOOR_DISTANCE / 2

    def table(self, table_id: int) -> Table | None:
        for _ in range(20):
            point = self.visible_floor_point()
            if point is None:
                continue
            size = (float(self.rng.uniform(0.6, 1.5)), float(self.rng.uniform(0.45, 0.9)))
            yaw = float(self.rng.uniform(-np.pi / 2, np.pi / 2))
            poly = footprint("box", point, (size[0], 0, size[1]), yaw)
            if not self.inside_room(poly) or any(polygons_overlap(poly, other) for other in self.floor_taken):
                continue
            self.floor_taken.append(poly)
            return Table(table_id, (float(point[0]), float(point[1])), size, float(self.rng.uniform(0.4, 0.8)), yaw,
                         sample_material(self.rng, self.plain_prob), sample_material(self.rng, self.plain_prob),
                         thickness=float(self.rng.uniform(0.02, 0.05)), leg_width=float(self.rng.uniform(0.03, 0.06)))
        return None

    def object(self, object_id: int, kind: str, objects, tables, stack_prob, touch_prob, table_prob,
               small_area_px) -> SceneObject | None:
        for _ in range(30):
            roll = self.rng.random()
            stackable = [o for o in objects if _can_carry(o)]
            if roll < stack_prob and stackable:
                support = stackable[int(self.rng.integers(len(stackable)))]
                placed = self._on_object(object_id, kind, support, small_area_px)
            elif roll < stack_prob + table_prob and tables:
                placed = self._on_table(object_id, kind, tables[int(self.rng.integers(len(tables)))], small_area_px)
            else:
                placed = self._on_floor(object_id, kind, small_area_px)
            if placed is None:
                continue
            if self.rng.random() < touch_prob:
                placed = self._pushed_to_neighbour(placed, objects) or placed
            if kind == "small" and not self._in_sight(placed, objects, tables):
                continue
            if self._free(placed):
                self.taken.setdefault(placed.support, []).append(self._poly(placed))
                if placed.support == FLOOR_ID:
                    self.floor_taken.append(self._poly(placed))
                return placed
        return None

    def _in_sight(self, obj: SceneObject, objects, tables) -> bool:
        """Whether the camera sees the object's centre: inside the view and not behind a solid placed so far."""
        centre = np.asarray(obj.center)
        camera = self.to_level.T @ centre
        x0, x1, y0, y1 = self.view
        if camera[2] <= 0 or not (x0 <= camera[0] / camera[2] <= x1 and y0 <= camera[1] / camera[2] <= y1):
            return False
        solids = [Solid(o.shape, o.center, o.size, o.yaw, o.top_ratio) for o in objects]
        solids += [Solid("box", c, size, t.yaw) for t in tables for _, _, c, size in t.parts(self.height)]
        ray = centre[None, :]  # the ray parameter is 1 at the centre
        for solid in solids:
            _, t, _, _ = intersect(solid, np.zeros(3), ray)
            if (t < 1.0).any():
                return False
        return True

    def _poly(self, obj: SceneObject) -> np.ndarray:
        return footprint(obj.shape, (obj.center[0], obj.center[2]), obj.size, obj.yaw)

    def _free(self, obj: SceneObject) -> bool:
        poly = self._poly(obj)
        others = self.floor_taken if obj.support == FLOOR_ID else self.taken.get(obj.support, [])
        if any(polygons_overlap(poly, other) for other in others):
            return False
        if obj.support == FLOOR_ID:
            return self.inside_room(poly)
        return _contains(self.support_tops[obj.support], poly)

    def _new(self, object_id, kind, shape_center_xz, top_y, support_id, max_footprint, small_area_px):
        """An object of a random shape and size standing at ``shape_center_xz`` on a surface at ``top_y``."""
        rng = self.rng
        if kind == "small":
            shape = SMALL_SHAPES[int(rng.integers(len(SMALL_SHAPES)))]
            point = self.to_level.T @ np.array([shape_center_xz[0], top_y, shape_center_xz[1]])
            area = np.exp(rng.uniform(*np.log(small_area_px)))
            side = float(np.sqrt(area) * max(point[2], 0.3) / self.focal_px)
            width, depth_, tall = side * rng.uniform(0.7, 1.3), side * rng.uniform(0.7, 1.3), side * rng.uniform(0.4, 1.3)
        else:
            shape = REGULAR_SHAPES[int(rng.integers(len(REGULAR_SHAPES)))]
            width, depth_, tall = rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.5), rng.uniform(0.08, 0.6)
        width, depth_ = min(width, max_footprint), min(depth_, max_footprint)
        top_ratio = 1.0
        if shape == "plate":
            thin = rng.uniform(0.008, 0.03)
            if rng.random() < 0.5 or kind == "small":
                tall = thin                      # lying flat
            else:
                depth_, tall = thin, max(tall, 0.15)   # standing on an edge
        elif shape == "sphere":
            width = depth_ = tall = min(width, depth_)
        elif shape == "ellipsoid":
            tall = min(tall, 1.5 * max(width, depth_))
        elif shape in ("cylinder", "frustum", "cone"):
            width = depth_ = min(width, depth_)
            if shape == "frustum":
                top_ratio = float(rng.uniform(0.3, 1.4))
            elif shape == "cone":
                top_ratio = 0.0
        size = (float(width), float(tall), float(depth_))
        yaw = float(rng.uniform(-np.pi, np.pi)) if shape in ("box", "plate", "ellipsoid") else 0.0
        material = sample_material(rng, self.plain_prob)
        center = (float(shape_center_xz[0]), float(top_y - tall / 2), float(shape_center_xz[1]))
        return SceneObject(object_id, shape, center, size, yaw, material.texture, material.tint, material.offset,
                           support=support_id, top_ratio=top_ratio, texture_scale=material.scale,
                           texture_rotation=material.rotation)

    def _on_floor(self, object_id, kind, small_area_px):
        point = self.visible_floor_point()
        if point is None:
            return None
        return self._new(object_id, kind, point, self.height, FLOOR_ID, 0.6, small_area_px)

    def _on_table(self, object_id, kind, table: Table, small_area_px):
        sx, sz = table.top_size
        local = self.rng.uniform(-0.5, 0.5, 2) * [sx, sz]
        c, s = np.cos(table.yaw), np.sin(table.yaw)
        point = np.array([table.center[0] + c * local[0] + s * local[1], table.center[1] - s * local[0] + c * local[1]])
        self.support_tops[table.id] = footprint("box", table.center, (sx, 0, sz), table.yaw)
        return self._new(object_id, kind, point, table.top_y(self.height), table.id, 0.6 * min(sx, sz), small_area_px)

    def _on_object(self, object_id, kind, support: SceneObject, small_area_px):
        width = min(support.size[0], support.size[2])
        offset = self.rng.uniform(-0.25, 0.25, 2) * width
        point = np.array([support.center[0], support.center[2]]) + offset
        self.support_tops[support.id] = self._poly(support)
        return self._new(object_id, kind, point, support.top, support.id, 0.8 * width, small_area_px)

    def _pushed_to_neighbour(self, obj: SceneObject, objects) -> SceneObject | None:
        """The object moved along a random direction until its footprint just touches a neighbour's."""
        neighbours = [o for o in objects if o.support == obj.support]
        if not neighbours:
            return None
        other = neighbours[int(self.rng.integers(len(neighbours)))]
        direction = self.rng.uniform(-np.pi, np.pi)
        unit = np.array([np.cos(direction), np.sin(direction)])
        anchor = np.array([other.center[0], other.center[2]])
        other_poly = self._poly(other)
        low, high = 0.0, float(np.hypot(*other.size[::2]) + np.hypot(*obj.size[::2]))
        for _ in range(20):
            mid = (low + high) / 2
            poly = footprint(obj.shape, anchor + mid * unit, obj.size, obj.yaw)
            low, high = (mid, high) if polygons_overlap(poly, other_poly) else (low, mid)
        x, z = anchor + (high + self.rng.uniform(0.0, 0.004)) * unit
        return replace(obj, center=(float(x), obj.center[1], float(z)))


def _can_carry(obj: SceneObject) -> bool:
    """Flat, level tops wide enough to stack on: boxes, cylinders and plates lying flat."""
    flat = obj.shape in ("box", "cylinder") or (obj.shape == "plate" and obj.size[1] < obj.size[2])
    return flat and min(obj.size[0], obj.size[2]) >= 0.12


def _contains(outer: np.ndarray, inner: np.ndarray) -> bool:
    """Whether convex polygon ``outer`` (counter-clockwise or not) contains every vertex of ``inner``."""
    edges = np.roll(outer, -1, axis=0) - outer
    rel = inner[:, None, :] - outer[None, :, :]
    cross = edges[None, :, 0] * rel[:, :, 1] - edges[None, :, 1] * rel[:, :, 0]
    return bool((cross >= -1e-9).all() or (cross <= 1e-9).all())
