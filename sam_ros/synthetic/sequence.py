"""Short RGB-D sequences with moving objects, and their rosbag2 recordings (written with rosbags)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .noise import add_depth_noise, to_16uc1_mm
from .render import Intrinsics, RenderedScene, render
from .scene import SceneSpec, sample_scene

COLOUR_TOPIC = "/camera/color/image_raw"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "/camera/color/camera_info"


@dataclass
class Frame:
    stamp_ns: int
    scene: RenderedScene
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
