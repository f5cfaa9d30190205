"""sam-ros-segment: the same pipeline offline, on image files, folders or rosbag2 recordings, without ROS.

    sam-ros-segment                               # the shipped sample recording, with the shipped small model
    sam-ros-segment photo.jpg --checkpoint mobile_sam.pt --grid 32
    sam-ros-segment rgb.png --depth depth.png --intrinsics 615,615,319.5,239.5
    sam-ros-segment recording/ --set pred_iou_thresh=0.8 --out results/

Writes, per frame, an overlay PNG and a JSON of the masks (COCO RLE; --output-mode for uncompressed RLE or
binary mask PNGs) and, with depth, the 3D objects.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .camera import PinholeCamera
from .config import SamRosConfig
from .masks import label_image, rle_counts, rle_to_string
from .model import BUNDLED_CHECKPOINT, BUNDLED_PARAMS
from .pipeline import Frame, Segmenter
from .sync import ApproximateTimeSynchronizer
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
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from error


def read_depth(path: Path) -> np.ndarray:
    """16-bit PNG (driver units, usually mm) or .npy (float metres or uint16)."""
    try:
        if path.suffix == ".npy":
            return np.load(path)
        with Image.open(path) as image:
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable depth image ({error})") from error


FrameLoader = Callable[[], InputFrame]  # reads/decodes one frame when called, so a bad one fails alone


def image_frames(paths: list[Path], depth: Path | None = None, intrinsics: np.ndarray | None = None
                 ) -> Iterator[FrameLoader]:
    for path in paths:
        yield partial(_image_frame, path, depth, intrinsics)


def _image_frame(path: Path, depth: Path | None, intrinsics: np.ndarray | None) -> InputFrame:
    rgb = read_image(path)
    camera = PinholeCamera(rgb.shape[1], rgb.shape[0], intrinsics) if intrinsics is not None else None
    return InputFrame(path.stem, rgb, read_depth(depth) if depth is not None else None, camera)


COLOUR_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def _recording_topics(reader, path: Path, colour_topic: str | None):
    """The colour connection (raw or compressed) and, when recorded, aligned depth and CameraInfo."""
    images = [c for c in reader.connections if c.msgtype in COLOUR_TYPES]
    colour = [c for c in images if (c.topic == colour_topic if colour_topic else "depth" not in c.topic)]
    if not colour:
        raise ValueError(f"{path}: no colour image topic{f' {colour_topic!r}' if colour_topic else ''} "
                         f"(image topics: {[c.topic for c in images]})")
    depth = [c for c in images if "depth" in c.topic and c.msgtype == "sensor_msgs/msg/Image"]
    infos = [c for c in reader.connections if c.msgtype == "sensor_msgs/msg/CameraInfo"]
    return colour[0], (depth[0] if depth and infos else None), (infos[0] if depth and infos else None)


def recording_length(path: Path, colour_topic: str | None) -> int:
    from rosbags.highlevel import AnyReader

    with AnyReader([path]) as reader:
        return _recording_topics(reader, path, colour_topic)[0].msgcount


def recording_frames(path: Path, colour_topic: str | None, slop_s: float, queue_size: int
                     ) -> Iterator[FrameLoader]:
    """Colour frames of a rosbag2, each with its aligned depth and CameraInfo when recorded.

    Messages are paired by header stamp with the node's approximate-time synchroniser (same slop and
    queue size), so a recording gives the frames the live node would have processed.
    """
    from rosbags.highlevel import AnyReader

    with AnyReader([path]) as reader:
        connections = [c for c in _recording_topics(reader, path, colour_topic) if c is not None]
        topic = {c.id: i for i, c in enumerate(connections)}
        compressed = connections[0].msgtype.endswith("CompressedImage")
        matched: list[tuple] = []
        sync = ApproximateTimeSynchronizer(len(connections), queue_size, slop_s, lambda *msgs: matched.append(msgs))
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            sync.add(topic[connection.id], msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, msg)
            while matched:
                yield partial(_recorded_frame, matched.pop(0), compressed)


def _recorded_frame(messages: tuple, compressed: bool) -> InputFrame:
    """(colour,) or (colour, depth, camera_info) messages -> arrays."""
    from .convert import colour_to_rgb, compressed_to_rgb, depth_image

    colour = messages[0]
    name = f"{colour.header.stamp.sec * 1_000_000_000 + colour.header.stamp.nanosec}"
    rgb = compressed_to_rgb(colour) if compressed else colour_to_rgb(colour)
    if len(messages) == 1:
        return InputFrame(name, rgb)
    return InputFrame(name, rgb, depth_image(messages[1]), PinholeCamera.from_camera_info(messages[2]))


def plan_inputs(args: argparse.Namespace, config: SamRosConfig) -> tuple[int, Iterator[FrameLoader]]:
    """Check every input before any work (clear errors first) and count frames for the progress bar.

    Frames are read lazily, so a long recording or a big folder never sits in memory at once.
    """
    intrinsics = None
    if args.intrinsics:
        try:
            fx, fy, cx, cy = (float(v) for v in args.intrinsics.split(","))
        except ValueError:
            raise ValueError(f"--intrinsics must be fx,fy,cx,cy, got {args.intrinsics!r}") from None
        intrinsics = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    if args.depth and (intrinsics is None or len(args.inputs) != 1 or not Path(args.inputs[0]).is_file()):
        raise ValueError("--depth goes with one IMAGE and --intrinsics fx,fy,cx,cy (to place objects in 3D)")
    parts: list[tuple[int, Callable[[], Iterator[FrameLoader]]]] = []
    for item in args.inputs or [str(SAMPLE_RECORDING)]:
        path = Path(item)
        if (path / "metadata.yaml").is_file():
            parts.append((recording_length(path, args.colour_topic),
                          partial(recording_frames, path, args.colour_topic, config.sync_slop, config.sync_queue_size)))
        elif path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise ValueError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) and not a rosbag2")
            parts.append((len(images), partial(image_frames, images)))
        elif path.is_file():
            depth = Path(args.depth) if args.depth else None
            parts.append((1, partial(image_frames, [path], depth, intrinsics)))
        else:
            raise ValueError(f"{path}: no such image, folder or rosbag2 recording")
    return sum(count for count, _ in parts), chain.from_iterable(frames() for _, frames in parts)


OUTPUT_MODES = ("coco_rle", "uncompressed_rle", "binary_mask")  # segment-anything's output_mode values


def mask_file(frame: InputFrame, mask_id: int) -> str:
    return f"{frame.name}_mask_{mask_id:03d}.png"


def frame_json(frame: InputFrame, result: Frame, output_mode: str = "coco_rle") -> dict:
    """segment-anything's AMG record fields per mask, plus 3D objects with depth.

    ``output_mode``: the mask as COCO compressed RLE, as uncompressed RLE (column-major run lengths,
    starting with zeros), or as the name of a binary PNG beside the JSON (``binary_mask``).
    """
    masks = result.segmentation
    records = []
    size = list(frame.rgb.shape[:2])
    all_counts = rle_counts(masks.masks) if output_mode != "binary_mask" else [None] * len(masks)
    for record, counts, track_id in zip(masks.records(), all_counts, result.track_ids):
        segmentation = ({"size": size, "counts": rle_to_string(counts)} if output_mode == "coco_rle" else
                        {"size": size, "counts": [int(c) for c in counts]} if output_mode == "uncompressed_rle" else
                        mask_file(frame, record.id))
        records.append({"id": record.id, "track_id": track_id, "bbox": list(record.bbox), "area": record.area,
                        "predicted_iou": round(record.predicted_iou, 4),
                        "stability_score": round(record.stability_score, 4),
                        "point_coords": [round(c, 1) for c in record.point_coords],
                        "crop_box": list(record.crop_box), "segmentation": segmentation})
    out = {"frame": frame.name, "height": frame.rgb.shape[0], "width": frame.rgb.shape[1], "masks": records,
           "num_prompts": masks.num_prompts, "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()}}
    if result.objects is not None:
        out["objects"] = [{"id": track_id, "mask_id": i + 1, "valid": e.valid, "reason": e.reason,
                           "centroid": [round(float(v), 4) for v in e.centroid],
                           "aabb_center": [round(float(v), 4) for v in e.aabb_center],
                           "aabb_size": [round(float(v), 4) for v in e.aabb_size],
                           "obb_yaw": round(e.obb_yaw, 4), "obb_size": [round(float(v), 4) for v in e.obb_size],
                           "point_count": e.point_count, "depth_coverage": round(e.depth_coverage, 3),
                           "kind": e.kind, "structure": e.structure, "parent_mask_id": e.parent + 1,
                           "support_mask_id": e.support + 1, "support_kind": e.support_kind}
                          for i, (e, track_id) in enumerate(zip(result.objects, result.track_ids))]
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
    parser.add_argument("--prompts", choices=("grid", "aop"), help="prompt strategy (aop: the learned predictor)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--checkpoint", help="mobile_sam.pt or a sam_ros checkpoint ('bundled': the small model)")
    parser.add_argument("--config", help="YAML with any config fields (or a ROS params file)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a config field")
    parser.add_argument("--output-mode", choices=OUTPUT_MODES, default="coco_rle",
                        help="masks in the JSON as COCO compressed RLE, uncompressed RLE, or binary PNGs beside it "
                        "(default: %(default)s)")
    parser.add_argument("--colour-topic", help="colour topic in a recording (default: the first non-depth image)")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> SamRosConfig:
    """--config (else the shipped model's operating point when it is used, else defaults), then options."""
    malformed = [item for item in args.set if "=" not in item]
    if malformed:
        raise ValueError(f"--set takes NAME=VALUE, got {', '.join(malformed)}")
    changes = dict(item.split("=", 1) for item in args.set)
    if args.grid is not None:
        changes["grid_size"] = args.grid
    if args.prompts:
        changes["prompt_mode"] = args.prompts
    if args.device:
        changes["device"] = args.device
    if args.checkpoint:
        changes["checkpoint"] = args.checkpoint
    if args.config:
        config = SamRosConfig.from_yaml(args.config)
    elif changes.get("checkpoint", "bundled" if not args.inputs else "") == "bundled":
        config = SamRosConfig.from_yaml(BUNDLED_PARAMS)  # the sample scenes come with the model trained on such scenes
    else:
        config = SamRosConfig()
    config = config.replace(**changes)
    if config.checkpoint == "bundled" and not BUNDLED_CHECKPOINT.is_file():
        raise ValueError(f"the small model shipped with sam_ros ({BUNDLED_CHECKPOINT}) is missing from this "
                         "installation; pass --checkpoint mobile_sam.pt (or another model file)")
    return config


def segment_frame(segmenter: Segmenter, frame: InputFrame, out: Path, output_mode: str = "coco_rle") -> tuple[int, float]:
    """Run one frame and write its overlay and JSON (and mask PNGs); returns (masks kept, total ms)."""
    result = segmenter.run(frame.rgb, frame.depth, frame.camera)
    labels = label_image(result.segmentation.masks, torch.tensor(result.track_ids, dtype=torch.int32))
    Image.fromarray(overlay(frame.rgb, labels)).save(out / f"{frame.name}_overlay.png")
    if output_mode == "binary_mask":
        for i, mask in enumerate(result.segmentation.masks.cpu().numpy()):
            Image.fromarray(mask).save(out / mask_file(frame, i + 1))  # 1-bit PNG, ids as in the JSON
    (out / f"{frame.name}.json").write_text(json.dumps(frame_json(frame, result, output_mode), indent=1))
    return len(result.segmentation), result.timings_ms["total_ms"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = build_config(args)
        total, frames = plan_inputs(args, config)
        segmenter = Segmenter(config)
    except (ValueError, FileNotFoundError) as error:  # bad options, no model or no AoP predictor
        print(f"sam-ros-segment: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done, failed = [], 0
    progress = tqdm(total=total, desc="segmenting", unit="frame", disable=total < 2)
    for load in frames:
        try:  # a bad frame (unreadable file, wrong size or encoding) is reported, the others still run
            done.append(segment_frame(segmenter, load(), out, args.output_mode))
        except ValueError as error:
            failed += 1
            tqdm.write(f"sam-ros-segment: skipped a frame: {error}", file=sys.stderr)
        progress.update()
    progress.close()
    if done:
        masks, ms = np.mean([d[0] for d in done]), np.median([d[1] for d in done])
        print(f"{len(done)} frame(s): {masks:.1f} masks per frame, median {ms:.0f} ms per frame on "
              f"{segmenter.device}; wrote overlays and JSON to {out.resolve()}")
    if failed:
        print(f"sam-ros-segment: {failed} frame(s) skipped (see above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
