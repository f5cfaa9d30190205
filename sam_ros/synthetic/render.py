"""A vectorised numpy ray caster for ``SceneSpec``: colour, metric depth, exact instance masks, shadows.

Every pixel's ray is intersected with the floor, the walls and every solid near it at once; the
nearest hit wins. Rays are parameterised so that the ray parameter IS the depth (camera z), so depth
is exact, not estimated. With ``spec.shadows`` each lit surface point casts one ray towards the
(directional) light; it is in shadow when an object or a table blocks that ray.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from .geometry import Solid, intersect, yaw_rotation
from .scene import FLOOR_ID, Material, SceneSpec

TEXTURE_DIR = Path(__file__).resolve().parent / "textures"
TEXELS_PER_METRE = 320.0
CAMERA_FRAME = "camera_color_optical_frame"
SURFACE_CODES = {"object": 0, "floor": 1, "wall": 2, "table_top": 3, "table_leg": 3}
SHADOW_BIAS = 1e-4  # metres along the normal, so a surface does not shadow itself


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics as sensor_msgs/CameraInfo carries them (no distortion)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    frame_id: str = CAMERA_FRAME

    @property
    def K(self) -> np.ndarray:  # noqa: N802 (the ROS field name)
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @classmethod
    def default(cls, width: int = 640, height: int = 480) -> "Intrinsics":
        """About a RealSense D435 colour camera (69 degrees horizontal field of view)."""
        f = 0.96 * width
        return cls(width, height, f, f, (width - 1) / 2, (height - 1) / 2)


@dataclass(frozen=True)
class ObjectTruth:
    """Ground truth of one object, in the camera optical frame (REP 103: x right, y down, z forward)."""

    id: int
    shape: str
    center: np.ndarray   # (3,) metres
    size: np.ndarray     # (3,) extents along the object's own axes (x, vertical, z), metres
    yaw: float           # rotation about the level frame's vertical axis, radians
    rotation: np.ndarray  # (3, 3) object axes -> camera optical frame
    support: int = FLOOR_ID  # what it rests on: the floor's, a table top's or another object's id
    top_ratio: float = 1.0   # frustums: top radius / bottom radius


@dataclass(frozen=True)
class StructureTruth:
    """A floor, wall, table top or table leg, in the camera optical frame.

    Planar surfaces (floor, walls, the top face of a table top) have ``normal`` (unit, towards the
    side the camera sees) and ``offset`` with normal . p + offset = 0 on the plane; offset is the
    camera's distance from the plane, negative when the camera is below a table top. Table parts
    also have a box pose (centre, size along their own x/vertical/z, rotation); legs have no plane.
    """

    id: int
    kind: str                         # floor, wall, table_top, table_leg
    normal: np.ndarray | None = None
    offset: float | None = None
    parent: int | None = None         # a leg's table top
    center: np.ndarray | None = None
    size: np.ndarray | None = None
    rotation: np.ndarray | None = None


@dataclass
class RenderedScene:
    rgb: np.ndarray        # (H, W, 3) uint8
    depth: np.ndarray      # (H, W) float32 metres, exact
    labels: np.ndarray     # (H, W) int32: object id, 0 = structure (floor, wall, table)
    surfaces: np.ndarray   # (H, W) uint8: 0 object, 1 floor, 2 wall, 3 table (top or leg)
    intrinsics: Intrinsics
    objects: list[ObjectTruth]
    spec: SceneSpec
    instances: np.ndarray | None = None  # (H, W) int32: object ids and structure ids (>= FLOOR_ID) alike
    structures: list[StructureTruth] = field(default_factory=list)
    shadowed: np.ndarray | None = None   # (H, W) bool: the light is blocked (only with spec.shadows)
    camera_rotation: np.ndarray | None = None  # (3, 3) camera optical frame -> the scene's level frame

    def masks(self) -> tuple[np.ndarray, list[int]]:
        """(N, H, W) bool instance masks of the objects that are visible, and their ids."""
        ids = [o.id for o in self.objects if (self.labels == o.id).any()]
        return np.stack([self.labels == i for i in ids]) if ids else np.zeros((0, *self.labels.shape), bool), ids


def pitch_rotation(pitch: float) -> np.ndarray:
    """Camera optical frame -> level frame, for a camera pitched down by ``pitch``."""
    c, s = np.cos(pitch), np.sin(pitch)
    return np.array([[1, 0, 0], [0, c, s], [0, -s, c]])


def roll_rotation(roll: float) -> np.ndarray:
    """Rotation about the optical (z) axis."""
    c, s = np.cos(roll), np.sin(roll)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def camera_rotation(spec: SceneSpec) -> np.ndarray:
    """Camera optical frame -> the scene's level frame: rolled about the optical axis, pitched down,
    then turned by the camera's yaw (about the vertical)."""
    rotation = pitch_rotation(spec.camera_pitch)
    if spec.camera_roll != 0.0:
        rotation = rotation @ roll_rotation(spec.camera_roll)
    if spec.camera_yaw != 0.0:
        rotation = yaw_rotation(spec.camera_yaw) @ rotation
    return rotation


def camera_origin(spec: SceneSpec) -> np.ndarray:
    """The camera's position in the scene's level frame (it stays at height 0; the floor is at camera_height)."""
    return np.array([spec.camera_position[0], 0.0, spec.camera_position[1]])


@lru_cache(maxsize=None)
def load_texture(name: str) -> np.ndarray:
    return np.asarray(Image.open(TEXTURE_DIR / f"{name}.jpg").convert("RGB"), dtype=np.float32) / 255.0


@lru_cache(maxsize=None)
def texture_levels(name: str) -> tuple[np.ndarray, ...]:
    """The texture and its 2x2-averaged halvings down to 4 texels (a mip-map)."""
    levels = [load_texture(name)]
    while levels[-1].shape[0] >= 8:
        t = levels[-1]
        levels.append((t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2]) / 4)
    return tuple(levels)


def scene_solids(spec: SceneSpec) -> list[tuple[int, str, Solid, Material]]:
    """(id, kind, solid, material) of every object and table part, in the level frame."""
    solids = [(o.id, "object", Solid(o.shape, o.center, o.size, o.yaw, o.top_ratio), o.material)
              for o in spec.objects]
    for table in spec.tables:
        for part_id, kind, center, size in table.parts(spec.camera_height):
            material = table.material if kind == "table_top" else table.leg_material
            solids.append((part_id, kind, Solid("box", center, size, table.yaw), material))
    return solids


def render(spec: SceneSpec, intrinsics: Intrinsics | None = None) -> RenderedScene:
    intrinsics = intrinsics or Intrinsics.default()
    h, w = intrinsics.height, intrinsics.width
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays_cam = np.stack([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy,
                         np.ones_like(u)], axis=-1).reshape(-1, 3)
    to_level = camera_rotation(spec)
    origin = camera_origin(spec)
    rays = rays_cam @ to_level.T  # level frame; the ray parameter stays the camera depth

    n_rays = len(rays)
    best_t = np.full(n_rays, np.inf)
    instance = np.zeros(n_rays, np.int32)
    surface = np.zeros(n_rays, np.uint8)
    normal = np.zeros_like(rays)
    uv = np.zeros((n_rays, 2))
    colour_source = np.full(n_rays, -1, np.int32)  # index into `materials`
    materials: list[Material] = []

    def take(rows, t, n, coords, instance_id, kind, material):
        """Keep the hits of ``rows`` (indices; None: every ray) nearer than what is there."""
        closer = t < (best_t if rows is None else best_t[rows])
        rows = closer if rows is None else rows[closer]
        best_t[rows] = t[closer]
        instance[rows] = instance_id
        surface[rows] = SURFACE_CODES[kind]
        normal[rows] = n[closer] if n.ndim == 2 else n
        uv[rows] = coords[closer]
        colour_source[rows] = len(materials)
        materials.append(material)

    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(rays[:, 1] > 1e-9, spec.camera_height / rays[:, 1], np.inf)
        p = origin + rays * t[:, None]
        take(None, t, np.array([0.0, -1.0, 0.0]), p[:, [0, 2]], FLOOR_ID, "floor", spec.floor())
        for wall in spec.wall_list():
            outward = wall.outward
            along = rays @ outward
            t = np.where(along > 1e-9, (wall.distance - origin @ outward) / along, np.inf)
            p = origin + rays * t[:, None]
            tangent = np.array([np.cos(wall.angle), 0.0, -np.sin(wall.angle)])
            coords = p[:, [0, 1]] if wall.angle == 0.0 else np.stack([p @ tangent, p[:, 1]], axis=1)
            take(None, t, -outward, coords, wall.id, "wall", wall.material)
    solids = scene_solids(spec)
    for solid_id, kind, solid, material in solids:
        rows, t, n, coords = intersect(solid, origin, rays, _pixels_near(solid, to_level, origin, intrinsics))
        take(rows, t, n, coords, solid_id, kind, material)

    light = np.asarray(spec.light, dtype=np.float64)
    light = light / np.linalg.norm(light)
    lambert = np.clip(normal @ light, 0, 1)
    shadowed = np.zeros(n_rays, bool)
    if spec.shadows:
        shadowed = _shadowed(origin + rays * best_t[:, None] + normal * SHADOW_BIAS, light, lambert > 0, solids)
        lambert = np.where(shadowed, 0.0, lambert)
    shade = spec.ambient + (1 - spec.ambient) * lambert
    rgb = np.zeros((n_rays, 3))
    footprint = None
    if spec.bilinear:  # metres of surface per pixel: the ray's length over f, stretched where the surface slants
        length = np.linalg.norm(rays, axis=1)
        slant = np.abs(np.einsum("ij,ij->i", normal, rays)) / length
        footprint = best_t * length / intrinsics.fx / np.sqrt(np.maximum(slant, 0.05))
    for index, material in enumerate(materials):
        hit = colour_source == index
        if hit.any():
            rgb[hit] = _colour(material, uv[hit], None if footprint is None else footprint[hit])
    if spec.light_colour != (1.0, 1.0, 1.0):
        rgb = rgb * np.asarray(spec.light_colour)
    rgb = np.clip(rgb * shade[:, None] * 255.0, 0, 255).astype(np.uint8).reshape(h, w, 3)

    instances = instance.reshape(h, w)
    labels = np.where(instances < FLOOR_ID, instances, 0)
    depth = np.where(np.isfinite(best_t), best_t, 0.0).astype(np.float32).reshape(h, w)
    return RenderedScene(rgb, depth, labels, surface.reshape(h, w), intrinsics, object_truths(spec, to_level),
                         spec, instances, structure_truths(spec, to_level), shadowed.reshape(h, w), to_level)


def object_truths(spec: SceneSpec, to_level: np.ndarray) -> list[ObjectTruth]:
    """Objects in the camera optical frame; yaw is relative to the camera's heading."""
    to_camera, origin = to_level.T, camera_origin(spec)
    return [ObjectTruth(o.id, o.shape, to_camera @ (np.asarray(o.center) - origin), np.asarray(o.size, dtype=np.float64),
                        o.yaw - spec.camera_yaw, to_camera @ yaw_rotation(o.yaw), o.support, o.top_ratio)
            for o in spec.objects]


def structure_truths(spec: SceneSpec, to_level: np.ndarray) -> list[StructureTruth]:
    to_camera, origin = to_level.T, camera_origin(spec)
    up = np.array([0.0, -1.0, 0.0])
    truths = [StructureTruth(FLOOR_ID, "floor", to_camera @ up, float(spec.camera_height))]
    truths += [StructureTruth(wall.id, "wall", to_camera @ -wall.outward, float(wall.distance - origin @ wall.outward))
               for wall in spec.wall_list()]
    for table in spec.tables:
        rotation = to_camera @ yaw_rotation(table.yaw)
        for part_id, kind, center, size in table.parts(spec.camera_height):
            plane = (to_camera @ up, float(table.top_y(spec.camera_height))) if kind == "table_top" else (None, None)
            truths.append(StructureTruth(part_id, kind, *plane, parent=None if kind == "table_top" else table.id,
                                         center=to_camera @ (np.asarray(center) - origin), size=np.asarray(size, dtype=np.float64),
                                         rotation=rotation))
    return truths


def _pixels_near(solid: Solid, to_level: np.ndarray, origin: np.ndarray, intrinsics: Intrinsics) -> np.ndarray | None:
    """Row indices of the pixels inside the image rectangle that bounds the solid's bounding sphere.

    The cube around the sphere is projected corner by corner; when part of it is behind the camera
    plane every pixel is returned (None).
    """
    radius = solid.bounding_radius * 1.01
    corners = np.asarray(solid.center) + radius * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
    cam = (corners - origin) @ to_level  # level -> camera: R^T (p - o) for each row
    if (cam[:, 2] <= 1e-3).any():
        return None
    u = intrinsics.fx * cam[:, 0] / cam[:, 2] + intrinsics.cx
    v = intrinsics.fy * cam[:, 1] / cam[:, 2] + intrinsics.cy
    u0, u1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())), intrinsics.width - 1)
    v0, v1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())), intrinsics.height - 1)
    if u0 > u1 or v0 > v1:
        return np.zeros(0, np.int64)
    return (np.arange(v0, v1 + 1)[:, None] * intrinsics.width + np.arange(u0, u1 + 1)[None, :]).ravel()


def _shadowed(points: np.ndarray, light: np.ndarray, facing: np.ndarray, solids) -> np.ndarray:
    """Whether the ray from each facing point towards the light hits any solid.

    Shadow rays are parallel, so each point is indexed by its coordinates across the light (a, b):
    a solid can only block the points within its bounding radius of its own (a, b), found by a
    binary search on a, then filtered on b.
    """
    rows = np.flatnonzero(facing & np.isfinite(points).all(axis=1))
    blocked = np.zeros(len(points), bool)
    across = np.linalg.svd(light[None, :])[2][1:]  # two unit vectors perpendicular to the light
    coords = points[rows] @ across.T
    order = np.argsort(coords[:, 0])
    a_sorted = coords[order, 0]
    for _, _, solid, _ in solids:
        ca, cb = across @ np.asarray(solid.center)
        radius = solid.bounding_radius * 1.01
        lo, hi = np.searchsorted(a_sorted, [ca - radius, ca + radius])
        candidates = order[lo:hi]
        candidates = candidates[np.abs(coords[candidates, 1] - cb) <= radius]
        candidates = rows[candidates]
        candidates = candidates[~blocked[candidates]]
        if len(candidates):
            near, t, _, _ = intersect(solid, points, np.broadcast_to(light, points.shape), candidates)
            blocked[near[np.isfinite(t)]] = True
    return blocked


def _colour(material: Material, coords: np.ndarray, footprint: np.ndarray | None) -> np.ndarray:
    """RGB in 0..1 of a material at surface coordinates (metres).

    Without ``footprint`` the nearest texel (the first renderer's look); with it (metres of surface
    per pixel), bilinear lookup in the mip level whose texels are about a pixel wide, so distant
    textures average out as a camera's pixels do instead of aliasing.
    """
    tint = np.asarray(material.tint, dtype=np.float64)
    if not material.texture:
        return np.broadcast_to(tint, (len(coords), 3))
    c, s = np.cos(material.rotation), np.sin(material.rotation)
    scale = TEXELS_PER_METRE * material.scale
    tu = (coords[:, 0] * c - coords[:, 1] * s) * scale
    tv = (coords[:, 0] * s + coords[:, 1] * c) * scale
    if footprint is None:
        texture = load_texture(material.texture)
        size = texture.shape[0]
        tu, tv = tu + material.offset[0] * size, tv + material.offset[1] * size
        return texture[np.floor(tv).astype(np.int64) % size, np.floor(tu).astype(np.int64) % size] * tint
    levels = texture_levels(material.texture)
    level = np.clip(np.floor(np.log2(np.maximum(footprint * scale, 1.0))), 0, len(levels) - 1).astype(np.int64)
    out = np.empty((len(coords), 3))
    for index in np.unique(level):
        rows = level == index
        out[rows] = _bilinear(levels[index], tu[rows] / 2 ** index, tv[rows] / 2 ** index, material.offset)
    return out * tint


def _bilinear(texture: np.ndarray, tu: np.ndarray, tv: np.ndarray, offset) -> np.ndarray:
    size = texture.shape[0]
    tu, tv = tu + offset[0] * size - 0.5, tv + offset[1] * size - 0.5
    u0, v0 = np.floor(tu), np.floor(tv)
    fu, fv = (tu - u0)[:, None], (tv - v0)[:, None]
    u0, v0 = u0.astype(np.int64) % size, v0.astype(np.int64) % size
    u1, v1 = (u0 + 1) % size, (v0 + 1) % size
    top = texture[v0, u0] * (1 - fu) + texture[v0, u1] * fu
    bottom = texture[v1, u0] * (1 - fu) + texture[v1, u1] * fu
    return top * (1 - fv) + bottom * fv
