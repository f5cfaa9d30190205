"""The demo: the real sam_node process fed the shipped RGB-D recording over DDS, results written to disk.

    python -m sam_ros.ros.demo --out demo_output          (tools/demo.sh sets everything up first)

Frames are replayed one at a time (the next one once the node has answered the previous one), so a
slow CPU still sees every frame; the node itself runs exactly as it does next to a camera.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from PIL import Image, ImageDraw
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image as ImageMsg

from sam_ros.msg import MaskArray, Object3DArray

from ..convert import image_to_array
from ..model import BUNDLED_PARAMS
from ..synthetic.sequence import COLOUR_TOPIC, DEPTH_TOPIC, INFO_TOPIC
from ..visualize import id_colours
from .node import stamp_ns
from .player import Player

PACKAGE = Path(__file__).resolve().parents[1]
RECORDING = PACKAGE / "data" / "sample_sequence"
TRUTH = PACKAGE / "data" / "sample_sequence_truth.json"
PARAMS = PACKAGE.parent / "config" / "sam_ros.yaml"


def start_node(params: list[str], log: Path) -> subprocess.Popen:
    """sam_node as its own process, remapped onto the recording's RealSense-style topics."""
    command = [sys.executable, "-m", "sam_ros.ros.node", "--ros-args"]
    if PARAMS.is_file():
        command += ["--params-file", str(PARAMS)]
    command += ["--params-file", str(BUNDLED_PARAMS)]  # the shipped model and its thresholds; -p overrides
    for name_value in params:
        command += ["-p", name_value]
    command += ["-r", f"image:={COLOUR_TOPIC}", "-r", f"depth:={DEPTH_TOPIC}", "-r", f"camera_info:={INFO_TOPIC}"]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=os.environ.copy())


def top_down_plot(tracks: dict[int, list[tuple[float, float]]], truth: list[list[float]], path: Path) -> None:
    """Bird's-eye view (x right, z forward, metres) of each object's track, camera at the bottom."""
    size, metres = 640, 4.0
    image = Image.new("RGB", (size, size), (250, 250, 250))
    draw = ImageDraw.Draw(image)

    def pixel(x: float, z: float) -> tuple[float, float]:
        return size / 2 + x / metres * size, size - 20 - z / metres * (size - 40)

    for metre in range(0, 5):
        y = pixel(0, metre)[1]
        draw.line([(0, y), (size, y)], fill=(220, 220, 220))
        draw.text((4, y - 12), f"z={metre} m", fill=(120, 120, 120))
    draw.polygon([pixel(0, 0), pixel(-0.35, 0.5), pixel(0.35, 0.5)], outline=(80, 80, 80))
    for x, z in truth:
        px, py = pixel(x, z)
        draw.line([(px - 4, py - 4), (px + 4, py + 4)], fill=(150, 150, 150))
        draw.line([(px - 4, py + 4), (px + 4, py - 4)], fill=(150, 150, 150))
    for track_id, points in sorted(tracks.items()):
        colour = tuple(int(c) for c in id_colours(np.array([track_id]))[0])
        pts = [pixel(x, z) for x, z in points]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=3)
        px, py = pts[-1]
        draw.ellipse([px - 5, py - 5, px + 5, py + 5], fill=colour)
        draw.text((px + 7, py - 6), str(track_id), fill=(0, 0, 0))
    draw.text((size - 330, size - 16), "sam_ros objects, top view (grey x: ground truth centres)", fill=(0, 0, 0))
    image.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--recording", type=Path, default=RECORDING)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one frame's answer")
    parser.add_argument("-p", dest="params", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra node parameters (after config/sam_ros.yaml and the shipped model's params file)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    node_process = start_node(args.params, args.out / "sam_node.log")

    rclpy.init(args=[])
    peer = rclpy.create_node("sam_ros_demo")
    player = Player(peer, args.recording, [COLOUR_TOPIC, DEPTH_TOPIC, INFO_TOPIC])
    answers: dict[str, dict[int, object]] = {"objects": {}, "overlay": {}, "masks": {}, "structure": {}}
    peer.create_subscription(Object3DArray, "/sam_node/objects", lambda m: answers["objects"].__setitem__(stamp_ns(m), m), 10)
    peer.create_subscription(Object3DArray, "/sam_node/structure",
                             lambda m: answers["structure"].__setitem__(stamp_ns(m), m), 10)
    peer.create_subscription(MaskArray, "/sam_node/masks", lambda m: answers["masks"].__setitem__(stamp_ns(m), m), 10)
    peer.create_subscription(ImageMsg, "/sam_node/overlay", lambda m: answers["overlay"].__setitem__(stamp_ns(m), m),
                             qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(peer)
    truth = json.loads(TRUTH.read_text()) if args.recording == RECORDING and TRUTH.is_file() else None
    tracks: dict[int, list[tuple[float, float]]] = {}
    frames_json, processing_s, errors = [], [], []
    try:
        for index, (timestamp, msgs) in enumerate(player.frames()):
            stamp = stamp_ns(msgs[COLOUR_TOPIC])
            sent = time.monotonic()
            deadline = sent + args.timeout
            next_send = sent
            while not (stamp in answers["objects"] and stamp in answers["overlay"] and stamp in answers["structure"]):
                if node_process.poll() is not None:
                    raise RuntimeError(f"sam_node exited ({node_process.returncode}); see {args.out / 'sam_node.log'}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no answer for frame {index} within {args.timeout:.0f} s")
                if time.monotonic() >= next_send:  # best effort: re-send until the node has it
                    player.publish(msgs)
                    next_send = time.monotonic() + 5.0
                executor.spin_once(timeout_sec=0.05)
            processing_s.append(time.monotonic() - sent)
            objects, structure = answers["objects"].pop(stamp), answers["structure"].pop(stamp)
            Image.fromarray(image_to_array(answers["overlay"].pop(stamp))).save(args.out / f"overlay_{index:03d}.png")
            frame = {"frame": index, "stamp_ns": stamp, "objects": [
                {"id": o.id, "valid": o.valid, "centroid": [o.centroid.x, o.centroid.y, o.centroid.z],
                 "obb_size": [o.obb_size.x, o.obb_size.y, o.obb_size.z], "depth_coverage": round(o.depth_coverage, 3),
                 "score": round(o.score, 3), "support_id": o.support_id, "support_class": o.support_class}
                for o in objects.objects],
                "structure": [{"id": o.id, "class": o.structure_class, "valid": o.valid,
                               "plane": [o.plane_normal.x, o.plane_normal.y, o.plane_normal.z, o.plane_offset]}
                              for o in structure.objects]}
            frames_json.append(frame)
            for o in objects.objects:
                if o.valid:
                    tracks.setdefault(o.id, []).append((o.centroid.x, o.centroid.z))
            if truth:
                for true in truth["frames"][index]["objects"]:
                    if true["visible_pixels"] < 500:
                        continue
                    found = [o for o in objects.objects if o.valid]
                    errors.append(min((np.linalg.norm(np.subtract([o.centroid.x, o.centroid.y, o.centroid.z],
                                                                  true["center"])) for o in found), default=np.inf))
    except RuntimeError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    finally:
        node_process.terminate()
        node_process.wait(timeout=20)
        peer.destroy_node()
        rclpy.try_shutdown()

    (args.out / "objects.json").write_text(json.dumps({"frames": frames_json}, indent=1))
    truth_points = [t["center"][::2] for t in truth["frames"][-1]["objects"]] if truth else []
    top_down_plot(tracks, truth_points, args.out / "top_down.png")
    per_frame = np.mean([len([o for o in f["objects"] if o["valid"]]) for f in frames_json])
    structure_per_frame = np.mean([len([o for o in f["structure"] if o["valid"]]) for f in frames_json])
    classes = sorted({o["class"] for f in frames_json for o in f["structure"]})
    summary = (f"sam_ros demo: {len(frames_json)} frames, {1 / np.median(processing_s):.2f} FPS (CPU, step replay), "
               f"{per_frame:.1f} 3D objects per frame in {len(tracks)} tracks, {structure_per_frame:.1f} structure "
               f"entries per frame ({', '.join(classes) or 'none'})")
    if errors:
        # The true centre is inside the object; a camera sees its front surface, so ~radius is expected.
        summary += f", {np.mean(np.array(errors) < 0.25):.0%} of true objects have an object within 25 cm"
    print(summary)
    print(f"wrote overlays, objects.json and top_down.png to {args.out.resolve()}")
    (args.out / "summary.txt").write_text(summary + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
