"""Short RGB-D sequences with moving objects, and their rosbag2 recordings (written with rosbags).

``render_sequence`` (the first renderer's classic scenes: every object slides slowly and stays in
view) and ``render_rich_sequence`` (a rich scene whose objects stay put, plus movers on the floor:
one that crosses the view and stays in it, one that leaves it and one that enters it mid-sequence).
Object ids are the same in every frame; an object out of view is still in ``scene.objects`` (its
truth) and simply has no pixels in ``scene.labels``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .noise import add_depth_noise, to_16uc1_mm
from .photometric import apply_photometric, sample_photometric
from .render import Intrinsics, RenderedScene, camera_rotation, render
from .rich import REGULAR_SHAPES, footprint, polygons_overlap, sample_material
from .scene import FLOOR_ID, SceneObject, SceneSpec, sample_scene

COLOUR_TOPIC = "/camera/color/image_raw"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "/camera/color/camera_info"


MOVER_ROLES = ("crosses", "leaves", "enters")
PATH_SAMPLES = 25        # times at which paths are checked for collisions
CAMERA_CLEARANCE = 0.3   # metres between a moving camera and any footprint or wall


@dataclass
class Frame:
    stamp_ns: int
    scene: RenderedScene   # with rich sequences, scene.rgb carries the camera effects; truth is exact
    depth_mm: np.ndarray  # noisy 16UC1 as a RealSense driver publishes it


def render_sequence(seed: int, n_frames: int, fps: float = 5.0, intrinsics: Intrinsics | None = None,
                    n_objects: tuple[int, int] = (3, 5), speed: float = 0.12) -> list[Frame]:
    """Objects sliding slowly across the floor (``speed`` m/s), staying in view; ids persist."""
    rng = np.random.default_rng(seed)
    spec: SceneSpec = sample_scene(rng, n_objects=n_objects, depth_range=(1.2, 2.8))
    velocities = {o.id: tuple(float(v) for v in rng.uniform(-speed, speed, 2)) for o in spec.objects}
    yaw_rates = {o.id: float(rng.uniform(-0.3, 0.3)) for o in spec.objects}
    frames = []
    for index in range(n_frames):
        t = index / fps
        scene = render(spec.moved(velocities, yaw_rates, dt=t), intrinsics)
        depth_mm = to_16uc1_mm(add_depth_noise(scene.depth, rng))
        frames.append(Frame(int(round(1_700_000_000e9 + t * 1e9)), scene, depth_mm))
    return frames


def render_rich_sequence(seed: int, n_frames: int, fps: float = 5.0, intrinsics: Intrinsics | None = None,
                         max_speed: float = 0.8, camera_effects: bool = True,
                         camera_velocity: tuple[float, float] = (0.0, 0.0), camera_yaw_rate: float = 0.0,
                         **scene_args) -> list[Frame]:
    """A rich scene (``scene_args`` go to ``sample_rich_scene``) whose objects stay put, plus three movers.

    The movers slide on the floor, at most ``max_speed`` m/s, without touching anything: "crosses" stays
    in view throughout, "leaves" is in view at the start and out of it at the end, "enters" the
    reverse (both cross the image border near the middle of the sequence). Their ids and roles are
    in ``spec.extra["movers"]`` ({id: role}); every other object is static. ``camera_effects`` draws
    one set of photometric effects for the whole sequence (new noise per frame).

    The camera may move too: ``camera_velocity`` (m/s along its first frame's level x and z) and
    ``camera_yaw_rate`` (rad/s); its pose per frame is ``scene.spec.camera_position`` and
    ``camera_yaw``, and all truth is in each frame's camera frame.
    """
    intrinsics = intrinsics or Intrinsics.default()
    rng = np.random.default_rng(seed)
    duration = (n_frames - 1) / fps if n_frames > 1 else 1.0
    def camera_at(spec: SceneSpec, t: float) -> SceneSpec:
        return replace(spec, camera_position=(camera_velocity[0] * t, camera_velocity[1] * t),
                       camera_yaw=camera_yaw_rate * t)

    for _ in range(50):
        spec = sample_scene(rng, style="rich", intrinsics=intrinsics, **scene_args)
        movers = _sample_movers(rng, spec, intrinsics, duration, max_speed, camera_at)
        if movers is not None:
            break
    else:
        raise RuntimeError(f"seed {seed}: found no free paths for the movers and the camera within max_speed "
                           f"{max_speed} m/s over {duration:.1f} s (a shorter sequence needs a higher max_speed)")
    objects, velocities, roles = list(spec.objects), {}, {}
    for role, (obj, velocity) in zip(MOVER_ROLES, movers):
        objects.append(obj)
        velocities[obj.id], roles[obj.id] = velocity, role
    spec = replace(spec, objects=tuple(objects), extra={"movers": roles})
    effects = sample_photometric(rng) if camera_effects else None
    frames = []
    for index in range(n_frames):
        t = index / fps
        scene = render(camera_at(spec.moved(velocities, dt=t), t), intrinsics)
        if effects is not None:
            scene.rgb = apply_photometric(scene.rgb, effects, rng, scene.depth)
        depth_mm = to_16uc1_mm(add_depth_noise(scene.depth, rng))
        frames.append(Frame(int(round(1_700_000_000e9 + t * 1e9)), scene, depth_mm))
    return frames


def _sample_movers(rng, spec: SceneSpec, intrinsics: Intrinsics, duration: float, max_speed: float, camera_at):
    """(object, (vx, vz)) per role, on straight floor paths that overlap nothing at any time, or None.

    Paths are chosen in the image: a mover starts and ends on the floor under a random row, at
    horizontal image positions inside or beyond the border as its role needs (seen from where the
    camera is at the start and at the end). The camera's own path keeps 0.3 m from everything.
    """
    cameras = (camera_at(spec, 0.0), camera_at(spec, duration))
    half_x = intrinsics.cx / intrinsics.fx
    half_y = intrinsics.cy / intrinsics.fy
    obstacles = [footprint(o.shape, (o.center[0], o.center[2]), o.size, o.yaw) for o in spec.objects
                 if o.support == FLOOR_ID]
    obstacles += [footprint("box", t.center, (t.top_size[0], 0, t.top_size[1]), t.yaw) for t in spec.tables]
    walls = spec.wall_list()
    movers, paths = [], []
    next_id = max((o.id for o in spec.objects), default=0) + 1
    for role in MOVER_ROLES:
        for _ in range(30):
            mover = _sample_mover(rng, role, next_id, cameras, (half_x, half_y), duration, max_speed,
                                  obstacles, walls, paths)
            if mover is not None:
                break
        else:
            return None
        movers.append(mover[:2])
        paths.append(mover[2])
        next_id += 1
    for step, t in enumerate(np.linspace(0, duration, PATH_SAMPLES)):
        camera = camera_at(spec, t)
        position = np.asarray(camera.camera_position)
        for poly in obstacles + [path[step] for path in paths]:
            if np.linalg.norm(poly - position, axis=1).min() < CAMERA_CLEARANCE or _contains_point(poly, position):
                return None
        if any(position @ wall.outward[[0, 2]] > wall.distance - CAMERA_CLEARANCE for wall in walls):
            return None
    return movers


def _contains_point(poly: np.ndarray, point: np.ndarray) -> bool:
    edges = np.roll(poly, -1, axis=0) - poly
    rel = point - poly
    cross = edges[:, 0] * rel[:, 1] - edges[:, 1] * rel[:, 0]
    return bool((cross >= 0).all() or (cross <= 0).all())


def _sample_mover(rng, role, object_id, cameras, half, duration, max_speed, obstacles, walls, paths):
    """One mover's (object, velocity, footprints along its path), or None when the draw collides."""
    spec = cameras[0]
    half_x, half_y = half
    side = rng.choice([-1.0, 1.0])
    inside, outside = rng.uniform(0.4, 0.8) * half_x, half_x * 1.6
    start_x, end_x = {"crosses": (-side * 0.5 * half_x, side * 0.5 * half_x), "leaves": (side * inside, side * outside),
                      "enters": (side * outside, side * inside)}[role]
    row = rng.uniform(0.1, 0.8) * half_y
    ends = []
    for x, camera in zip((start_x, end_x), cameras):
        ray = camera_rotation(camera) @ np.array([x, row, 1.0])
        ends.append(np.asarray(camera.camera_position) + ray[[0, 2]] * spec.camera_height / ray[1]
                    if ray[1] > 1e-3 else None)
    if ends[0] is None or ends[1] is None:
        return None
    velocity = (ends[1] - ends[0]) / duration
    if np.linalg.norm(velocity) > max_speed:
        return None
    shape = REGULAR_SHAPES[int(rng.integers(len(REGULAR_SHAPES)))]
    shape = "box" if shape in ("plate", "ellipsoid") else shape  # movers stay simple to track
    width = float(rng.uniform(0.15, 0.4))
    size = (width, float(rng.uniform(0.15, 0.45)), width if shape != "box" else float(rng.uniform(0.15, 0.4)))
    material = sample_material(rng, 0.3)
    obj = SceneObject(object_id, shape, (float(ends[0][0]), spec.camera_height - size[1] / 2, float(ends[0][1])),
                      size, float(rng.uniform(-np.pi, np.pi)) if shape == "box" else 0.0, material.texture,
                      material.tint, material.offset, FLOOR_ID, 0.0 if shape == "cone" else
                      float(rng.uniform(0.4, 1.0)) if shape == "frustum" else 1.0, material.scale, material.rotation)
    path = [footprint(shape, ends[0] + velocity * t, size, obj.yaw) for t in np.linspace(0, duration, PATH_SAMPLES)]
    for poly in path:
        if any(polygons_overlap(poly, other) for other in obstacles) or np.hypot(*poly.T).min() < 0.5 or \
                any((poly @ wall.outward[[0, 2]] > wall.distance - 0.02).any() for wall in walls):
            return None
    for other_path in paths:
        if any(polygons_overlap(a, b) for a, b in zip(path, other_path)):
            return None
    return obj, (float(velocity[0]), float(velocity[1])), path


def write_rosbag2(path: str | Path, frames: list[Frame], compress: bool = True) -> None:
    """Colour (rgb8), aligned depth (16UC1 mm) and CameraInfo per frame, one stamp per frame."""
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.writer import CompressionFormat, CompressionMode
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    Image, CameraInfo = store.types["sensor_msgs/msg/Image"], store.types["sensor_msgs/msg/CameraInfo"]
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    RegionOfInterest = store.types["sensor_msgs/msg/RegionOfInterest"]
    writer = Writer(Path(path), version=8)
    if compress:
        writer.set_compression(CompressionMode.FILE, CompressionFormat.ZSTD)
    with writer:
        colour = writer.add_connection(COLOUR_TOPIC, Image.__msgtype__, typestore=store)
        depth = writer.add_connection(DEPTH_TOPIC, Image.__msgtype__, typestore=store)
        info = writer.add_connection(INFO_TOPIC, CameraInfo.__msgtype__, typestore=store)
        for frame in frames:
            intr = frame.scene.intrinsics
            header = Header(stamp=Time(sec=frame.stamp_ns // 1_000_000_000, nanosec=frame.stamp_ns % 1_000_000_000),
                        frame_id=intr.frame_id)
            h, w = frame.scene.rgb.shape[:2]
            rgb_msg = Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
                            data=np.frombuffer(frame.scene.rgb.tobytes(), np.uint8))
            depth_msg = Image(header=header, height=h, width=w, encoding="16UC1", is_bigendian=0, step=2 * w,
                              data=np.frombuffer(frame.depth_mm.astype("<u2").tobytes(), np.uint8))
            info_msg = CameraInfo(header=header, height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
                                  k=intr.K.ravel(), r=np.eye(3).ravel(),
                                  p=np.hstack([intr.K, np.zeros((3, 1))]).ravel(), binning_x=0, binning_y=0,
                                  roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            for connection, msg in ((colour, rgb_msg), (depth, depth_msg), (info, info_msg)):
                writer.write(connection, frame.stamp_ns, store.serialize_cdr(msg, msg.__msgtype__))
