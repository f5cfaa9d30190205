"""A vectorised numpy ray caster for ``SceneSpec``: colour, metric depth and exact instance masks.

Every pixel's ray is intersected with every primitive at once; the nearest hit wins. Rays are
parameterised so that the ray parameter IS the depth (camera z), so depth is exact, not estimated.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from .scene import SceneObject, SceneSpec

TEXTURE_DIR = Path(__file__).resolve().parent / "textures"
TEXELS_PER_METRE = 320.0
CAMERA_FRAME = "camera_color_optical_frame"


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


@dataclass
class RenderedScene:
    rgb: np.ndarray        # (H, W, 3) uint8
    depth: np.ndarray      # (H, W) float32 metres, exact
    labels: np.ndarray     # (H, W) int32: object id, 0 = floor or wall
    surfaces: np.ndarray   # (H, W) uint8: 0 object, 1 floor, 2 wall
    intrinsics: Intrinsics
    objects: list[ObjectTruth]
    spec: SceneSpec

    def masks(self) -> tuple[np.ndarray, list[int]]:
        """(N, H, W) bool instance masks of the objects that are visible, and their ids."""
        ids = [o.id for o in self.objects if (self.labels == o.id).any()]
        return np.stack([self.labels == i for i in ids]) if ids else np.zeros((0, *self.labels.shape), bool), ids


def pitch_rotation(pitch: float) -> np.ndarray:
    """Camera optical frame -> level frame, for a camera pitched down by ``pitch``."""
    c, s = np.cos(pitch), np.sin(pitch)
    return np.array([[1, 0, 0], [0, c, s], [0, -s, c]])


def yaw_rotation(yaw: float) -> np.ndarray:
    """Rotation about the level frame's y (vertical) axis."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


@lru_cache(maxsize=None)
def load_texture(name: str) -> np.ndarray:
    return np.asarray(Image.open(TEXTURE_DIR / f"{name}.jpg").convert("RGB"), dtype=np.float32) / 255.0


def render(spec: SceneSpec, intrinsics: Intrinsics | None = None) -> RenderedScene:
    intrinsics = intrinsics or Intrinsics.default()
    h, w = intrinsics.height, intrinsics.width
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays_cam = np.stack([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy,
                         np.ones_like(u)], axis=-1).reshape(-1, 3)
    to_level = pitch_rotation(spec.camera_pitch)
    rays = rays_cam @ to_level.T  # level frame; the ray parameter stays the camera depth

    best_t = np.full(len(rays), np.inf)
    label = np.zeros(len(rays), np.int32)
    surface = np.zeros(len(rays), np.uint8)
    normal = np.zeros_like(rays)
    uv = np.zeros((len(rays), 2))
    colour_source = np.full(len(rays), -1, np.int32)  # index into `materials`
    materials: list[tuple[str, tuple, tuple]] = []

    def take(t, n, coords, obj_label, surf, material):
        closer = t < best_t
        best_t[closer] = t[closer]
        label[closer] = obj_label
        surface[closer] = surf
        normal[closer] = n[closer]
        uv[closer] = coords[closer]
        colour_source[closer] = len(materials)
        materials.append(material)

    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(rays[:, 1] > 1e-9, spec.camera_height / rays[:, 1], np.inf)
        p = rays * t[:, None]
        take(t, np.broadcast_to([0.0, -1.0, 0.0], rays.shape), p[:, [0, 2]], 0, 1,
             (spec.floor_texture, spec.floor_tint, (0.0, 0.0)))
        t = np.where(rays[:, 2] > 1e-9, spec.wall_distance / rays[:, 2], np.inf)
        p = rays * t[:, None]
        take(t, np.broadcast_to([0.0, 0.0, -1.0], rays.shape), p[:, [0, 1]], 0, 2,
             (spec.wall_texture, spec.wall_tint, (0.0, 0.0)))
        for obj in spec.objects:
            t, n, coords = _intersect(obj, rays)
            take(t, n, coords, obj.id, 0, (obj.texture, obj.tint, obj.texture_offset))

    light = np.asarray(spec.light, dtype=np.float64)
    shade = 0.35 + 0.65 * np.clip(normal @ (light / np.linalg.norm(light)), 0, 1)
    rgb = np.zeros((len(rays), 3))
    for index, (texture_name, tint, offset) in enumerate(materials):
        hit = colour_source == index
        if not hit.any():
            continue
        texture = load_texture(texture_name)
        size = texture.shape[0]
        tu = np.floor(uv[hit, 0] * TEXELS_PER_METRE + offset[0] * size).astype(np.int64) % size
        tv = np.floor(uv[hit, 1] * TEXELS_PER_METRE + offset[1] * size).astype(np.int64) % size
        rgb[hit] = texture[tv, tu] * np.asarray(tint)
    rgb = np.clip(rgb * shade[:, None] * 255.0, 0, 255).astype(np.uint8).reshape(h, w, 3)

    to_camera = to_level.T
    objects = [ObjectTruth(o.id, o.shape, to_camera @ np.asarray(o.center), np.asarray(o.size, dtype=np.float64),
                           o.yaw, to_camera @ yaw_rotation(o.yaw)) for o in spec.objects]
    depth = np.where(np.isfinite(best_t), best_t, 0.0).astype(np.float32).reshape(h, w)
    return RenderedScene(rgb, depth, label.reshape(h, w), surface.reshape(h, w), intrinsics, objects, spec)


def _intersect(obj: SceneObject, rays: np.ndarray):
    """Nearest positive hit parameter, unit normal and surface texture coordinates (metres) per ray."""
    center = np.asarray(obj.center, dtype=np.float64)
    if obj.shape == "sphere":
        radius = obj.size[0] / 2
        a = np.einsum("ij,ij->i", rays, rays)
        b = -2 * rays @ center
        c = center @ center - radius ** 2
        disc = b * b - 4 * a * c
        t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        t = np.where(t > 0, t, np.inf)
        n = (rays * t[:, None] - center) / radius
        n = np.nan_to_num(n)
        coords = np.stack([np.arctan2(n[:, 0], n[:, 2]) * radius, n[:, 1] * radius], axis=1)
        return t, n, coords
    if obj.shape == "cylinder":
        radius, half = obj.size[0] / 2, obj.size[1] / 2
        dx, dy, dz = rays[:, 0], rays[:, 1], rays[:, 2]
        a = dx * dx + dz * dz
        b = -2 * (dx * center[0] + dz * center[2])
        c = center[0] ** 2 + center[2] ** 2 - radius ** 2
        disc = b * b - 4 * a * c
        t_side = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        y_side = t_side * dy
        t_side = np.where((t_side > 0) & (np.abs(y_side - center[1]) <= half), t_side, np.inf)
        top = center[1] - half
        t_cap = np.where(dy > 1e-9, top / dy, np.inf)
        inside = (t_cap * dx - center[0]) ** 2 + (t_cap * dz - center[2]) ** 2 <= radius ** 2
        t_cap = np.where((t_cap > 0) & inside, t_cap, np.inf)
        side = t_side <= t_cap
        t = np.minimum(t_side, t_cap)
        p = rays * np.where(np.isfinite(t), t, 0)[:, None]
        n_side = np.stack([(p[:, 0] - center[0]) / radius, np.zeros(len(p)), (p[:, 2] - center[2]) / radius], 1)
        n = np.where(side[:, None], n_side, [0.0, -1.0, 0.0])
        angle = np.arctan2(n_side[:, 0], n_side[:, 2]) * radius
        coords = np.where(side[:, None], np.stack([angle, p[:, 1]], 1), p[:, [0, 2]])
        return t, n, coords
    # box: slab test in the box's own frame
    rotation = yaw_rotation(obj.yaw)
    half = np.asarray(obj.size, dtype=np.float64) / 2
    origin = rotation.T @ (-center)
    d = rays @ rotation  # = (R^T d^T)^T
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - origin) / d
        t2 = (half - origin) / d
    t_near = np.minimum(t1, t2)
    t_far = np.maximum(t1, t2)
    entry_axis = np.argmax(t_near, axis=1)
    t_min = t_near.max(axis=1)
    t_max = t_far.min(axis=1)
    t = np.where((t_max >= t_min) & (t_min > 0), t_min, np.inf)
    local_n = np.zeros_like(rays)
    rows = np.arange(len(rays))
    local_n[rows, entry_axis] = -np.sign(d[rows, entry_axis])
    local_p = origin + d * np.where(np.isfinite(t), t, 0)[:, None]
    other = np.array([[1, 2], [0, 2], [0, 1]])[entry_axis]
    coords = np.stack([local_p[rows, other[:, 0]], local_p[rows, other[:, 1]]], axis=1)
    return t, local_n @ rotation.T, coords
