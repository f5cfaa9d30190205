"""sam-ros-segment: the same pipeline offline, on image files, folders or rosbag2 recordings, without ROS.

    sam-ros-segment                               # the shipped sample recording, with the shipped small model
    sam-ros-segment photo.jpg --checkpoint mobile_sam.pt --grid 32
    sam-ros-segment rgb.png --depth depth.png --intrinsics 615,615,319.5,239.5
    sam-ros-segment recording/ --set pred_iou_thresh=0.8 --out results/

Writes, per frame, an overlay PNG and a JSON of the masks (COCO RLE) and, with depth, the 3D objects.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .camera import PinholeCamera
from .config import SamRosConfig
from .fusion import depth_to_metres, fuse_masks
from .masks import label_image, rle_counts, rle_to_string
from .model import CheckpointNotFoundError
from .pipeline import Segmenter
from .tracking import ObjectTracker
from .visualize import overlay

SAMPLE_RECORDING = Path(__file__).resolve().parent / "data" / "sample_sequence"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class InputFrame:
    name: str
    rgb: np.ndarray
    depth: np.ndarray | None = None       # as stored: uint16 driver units or float32 metres
    camera: PinholeCamera | None = None


def read_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def read_depth(path: Path) -> np.ndarray:
    """16-bit PNG (driver units, usually mm) or .npy (float metres or uint16)."""
    if path.suffix == ".npy":
        return np.load(path)
    with Image.open(path) as image:
        return np.asarray(image)


def image_frames(paths: list[Path], depth: Path | None, camera: PinholeCamera | None) -> Iterator[InputFrame]:
    for path in paths:
        depth_array = read_depth(depth) if depth is not None else None
        yield InputFrame(path.stem, read_image(path), depth_array, camera)


def recording_frames(path: Path, colour_topic: str | None) -> Iterator[InputFrame]:
    """Colour frames of a rosbag2, with the aligned depth and CameraInfo of the same stamp when recorded."""
    from rosbags.highlevel import AnyReader

    from .convert import colour_to_rgb, depth_image

    with AnyReader([path]) as reader:
        images = [c for c in reader.connections if c.msgtype == "sensor_msgs/msg/Image"]
        colour = [c for c in images if (c.topic == colour_topic if colour_topic else "depth" not in c.topic)]
        depth = [c for c in images if "depth" in c.topic]
        infos = [c for c in reader.connections if c.msgtype == "sensor_msgs/msg/CameraInfo"]
        if not colour:
            raise ValueError(f"{path}: no colour image topic{f' {colour_topic!r}' if colour_topic else ''} "
                             f"(image topics: {[c.topic for c in images]})")
        pending: dict[int, dict] = {}
        wanted = {"colour"} | ({"depth", "info"} if depth and infos else set())
        for connection, timestamp, raw in reader.messages(connections=colour[:1] + depth[:1] + infos[:1]):
            msg = reader.deserialize(raw, connection.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            kind = "colour" if connection in colour else "depth" if connection in depth else "info"
            entry = pending.setdefault(stamp, {})
            entry[kind] = msg
            if set(entry) >= wanted:
                del pending[stamp]
                camera = PinholeCamera.from_camera_info(entry["info"]) if "info" in entry else None
                yield InputFrame(f"{stamp}", colour_to_rgb(entry["colour"]),
                                 depth_image(entry["depth"]) if "depth" in entry else None, camera)


def gather_inputs(args) -> Iterator[InputFrame]:
    camera = None
    if args.intrinsics:
        fx, fy, cx, cy = (float(v) for v in args.intrinsics.split(","))
        first = read_image(Path(args.inputs[0]))
        camera = PinholeCamera(first.shape[1], first.shape[0], np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]))
    elif args.depth:
        raise ValueError("--depth needs --intrinsics fx,fy,cx,cy to place objects in 3D")
    for item in args.inputs or [str(SAMPLE_RECORDING)]:
        path = Path(item)
        if (path / "metadata.yaml").is_file():
            yield from recording_frames(path, args.colour_topic)
        elif path.is_dir():
            yield from image_frames(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                                    None, None)
        elif path.is_file():
            yield from image_frames([path], Path(args.depth) if args.depth else None, camera)
        else:
            raise ValueError(f"{path}: no such image, folder or rosbag2 recording")


def frame_json(frame: InputFrame, result, objects, track_ids) -> dict:
    masks = []
    for record, counts in zip(result.records(), rle_counts(result.masks)):
        masks.append({"id": record.id, "bbox": list(record.bbox), "area": record.area,
                      "predicted_iou": round(record.predicted_iou, 4), "stability_score": round(record.stability_score, 4),
                      "point_coords": [round(c, 1) for c in record.point_coords],
                      "segmentation": {"size": list(frame.rgb.shape[:2]), "counts": rle_to_string(counts)}})
    out = {"frame": frame.name, "height": frame.rgb.shape[0], "width": frame.rgb.shape[1], "masks": masks,
           "num_prompts": result.num_prompts, "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()}}
    if objects is not None:
        out["objects"] = [{"id": track_id, "mask_id": i + 1, "valid": e.valid, "reason": e.reason,
                           "centroid": [round(float(v), 4) for v in e.centroid],
                           "aabb_center": [round(float(v), 4) for v in e.aabb_center],
                           "aabb_size": [round(float(v), 4) for v in e.aabb_size],
                           "obb_yaw": round(e.obb_yaw, 4), "point_count": e.point_count,
                           "depth_coverage": round(e.depth_coverage, 3)}
                          for i, (e, track_id) in enumerate(zip(objects, track_ids))]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sam-ros-segment", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("inputs", nargs="*", help="images, folders of images, or rosbag2 folders "
                        "(default: the shipped sample recording)")
    parser.add_argument("--depth", help="aligned depth image for a single IMAGE (16-bit PNG in mm, or .npy metres)")
    parser.add_argument("--intrinsics", help="fx,fy,cx,cy of the colour camera, for --depth")
    parser.add_argument("--out", default="sam_ros_output", help="output folder (default: %(default)s)")
    parser.add_argument("--grid", type=int, help="prompt grid points per side")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--checkpoint", help="mobile_sam.pt or a sam_ros checkpoint ('bundled': the small model)")
    parser.add_argument("--config", help="YAML with any config fields (or a ROS params file)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a config field")
    parser.add_argument("--colour-topic", help="colour topic in a recording (default: the first non-depth image)")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> SamRosConfig:
    config = SamRosConfig.from_yaml(args.config) if args.config else SamRosConfig()
    changes = dict(item.split("=", 1) for item in args.set)
    if args.grid is not None:
        changes["grid_size"] = args.grid
    if args.device:
        changes["device"] = args.device
    if args.checkpoint:
        changes["checkpoint"] = args.checkpoint
    elif not args.inputs and not config.checkpoint:
        changes["checkpoint"] = "bundled"  # the sample scenes come with the model trained on such scenes
    return config.replace(**changes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = build_config(args)
        segmenter = Segmenter(config)
        frames = list(gather_inputs(args))
    except (ValueError, CheckpointNotFoundError) as error:
        print(f"sam-ros-segment: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tracker = ObjectTracker(config.track_max_distance, config.track_min_iou, config.track_max_age)
    totals = []
    for frame in tqdm(frames, desc="segmenting", unit="frame", disable=len(frames) < 2):
        result = segmenter.segment(frame.rgb)
        objects = track_ids = None
        if frame.depth is not None and frame.camera is not None and config.use_depth:
            depth_m = depth_to_metres(frame.depth, config.depth_scale, config.min_depth, config.max_depth)
            objects = fuse_masks(result.masks, depth_m, frame.camera, erosion_px=config.erosion_px,
                                 min_valid_points=config.min_valid_points)
        track_ids = tracker.update(result.masks, [e.centroid if e.valid else None for e in objects]
                                   if objects is not None else [None] * len(result))
        labels = label_image(result.masks, torch.tensor(track_ids, dtype=torch.int32))
        Image.fromarray(overlay(frame.rgb, labels)).save(out / f"{frame.name}_overlay.png")
        (out / f"{frame.name}.json").write_text(json.dumps(frame_json(frame, result, objects, track_ids), indent=1))
        totals.append((len(result), result.timings_ms["total_ms"]))
    if totals:
        masks, ms = np.mean([t[0] for t in totals]), np.median([t[1] for t in totals])
        print(f"{len(totals)} frame(s): {masks:.1f} masks per frame, median {ms:.0f} ms per frame on "
              f"{segmenter.device}; wrote overlays and JSON to {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
