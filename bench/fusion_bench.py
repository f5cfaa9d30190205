"""Depth-fusion accuracy on synthetic RGB-D scenes with exact ground truth (issue 5's table).

    python bench/fusion_bench.py [--scenes 30] [--pipeline]     (--pipeline: also with the shipped model's masks)

The ground truth for what depth can tell is the visible surface: the noiseless depth back-projected
under the ground-truth mask. Estimates use noisy 16UC1 depth (z^2 noise, edge dropouts, flying pixels,
NaNs) through the same code path as the node. Objects at 1-3 m.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sam_ros.camera import PinholeCamera  # noqa: E402
from sam_ros.scene.fusion import depth_to_metres, fuse_masks  # noqa: E402
from sam_ros.synthetic import add_depth_noise, render, sample_scene, to_16uc1_mm  # noqa: E402
from sam_ros.synthetic.render import pitch_rotation  # noqa: E402
from sam_ros.synthetic.sequence import render_sequence  # noqa: E402
from sam_ros.tracking import ObjectTracker  # noqa: E402


def box_iou_3d(center_a, size_a, center_b, size_b) -> float:
    low = np.maximum(center_a - size_a / 2, center_b - size_b / 2)
    high = np.minimum(center_a + size_a / 2, center_b + size_b / 2)
    inter = np.prod(np.clip(high - low, 0, None))
    return float(inter / (np.prod(size_a) + np.prod(size_b) - inter))


def pipeline_masks(segmenter, scene, gt_masks, depth_m):
    """The pipeline's masks matched one-to-one to ground-truth masks (best IoU >= 0.5), else None."""
    result = segmenter.segment(scene.rgb, depth_m)
    ours = result.masks.numpy()
    matched = []
    for gt in gt_masks:
        inter = (ours & gt).reshape(len(ours), -1).sum(1)
        union = (ours | gt).reshape(len(ours), -1).sum(1)
        iou = inter / np.maximum(union, 1)
        matched.append(ours[iou.argmax()] if len(ours) and iou.max() >= 0.5 else None)
    return matched


def evaluate(scenes: int, segmenter=None) -> dict:
    rows = {"centroid": [], "aabb_iou": [], "yaw_deg": [], "to_true_centre": [], "missed": 0, "objects": 0}
    for seed in range(scenes):
        rng = np.random.default_rng(1000 + seed)
        scene = render(sample_scene(rng))
        i = scene.intrinsics
        camera = PinholeCamera(i.width, i.height, i.K, frame_id=i.frame_id)
        level = np.eye(4)
        level[:3, :3] = pitch_rotation(scene.spec.camera_pitch)
        gt_masks, ids = scene.masks()
        noisy = depth_to_metres(to_16uc1_mm(add_depth_noise(scene.depth, rng)), 0.001)
        truth = fuse_masks(gt_masks, depth_to_metres(scene.depth), camera, erosion_px=0, mad_gate=1e9, transform=level)
        masks = pipeline_masks(segmenter, scene, gt_masks, noisy) if segmenter else list(gt_masks)
        objects = {o.id: o for o in scene.objects}
        for mask, true, object_id in zip(masks, truth, ids):
            obj = objects[object_id]
            depth_of_centre = (np.linalg.inv(level[:3, :3]) @ true.centroid)[2]
            if not true.valid or not 1.0 <= depth_of_centre <= 3.0:
                continue
            rows["objects"] += 1
            if mask is None:
                rows["missed"] += 1
                continue
            estimate = fuse_masks(mask[None], noisy, camera, transform=level)[0]
            if not estimate.valid:
                rows["missed"] += 1
                continue
            rows["centroid"].append(np.linalg.norm(estimate.centroid - true.centroid))
            if (true.aabb_size > 0.02).all():
                rows["aabb_iou"].append(box_iou_3d(estimate.aabb_center, estimate.aabb_size, true.aabb_center,
                                                   true.aabb_size))
            true_centre_level = level[:3, :3] @ obj.center
            rows["to_true_centre"].append(np.linalg.norm(estimate.centroid - true_centre_level))
            if obj.shape == "box":
                error = (estimate.obb_yaw + obj.yaw) % (np.pi / 2)
                rows["yaw_deg"].append(np.degrees(min(error, np.pi / 2 - error)))
    return rows


def id_switches(seeds: int = 3, frames: int = 12) -> tuple[int, int]:
    """Id switches of objects that stay in view across moving sequences (ground-truth masks, noisy depth)."""
    switches, tracked = 0, 0
    for seed in range(seeds):
        sequence = render_sequence(seed, frames)
        i = sequence[0].scene.intrinsics
        camera = PinholeCamera(i.width, i.height, i.K, frame_id=i.frame_id)
        tracker = ObjectTracker()
        assigned: dict[int, set[int]] = {}
        always = set.intersection(*[set(f.scene.masks()[1]) for f in sequence])
        for frame in sequence:
            masks, ids = frame.scene.masks()
            estimates = fuse_masks(masks, depth_to_metres(frame.depth_mm, 0.001), camera)
            track_ids = tracker.update(torch.from_numpy(masks), [e.centroid if e.valid else None for e in estimates])
            for object_id, track_id in zip(ids, track_ids):
                assigned.setdefault(object_id, set()).add(track_id)
        for object_id in always:
            tracked += 1
            switches += len(assigned[object_id]) - 1
    return switches, tracked


def report(name: str, rows: dict) -> None:
    def med(key, scale=1.0):
        return f"{np.median(rows[key]) * scale:.3f}" if rows[key] else "n/a"

    print(f"{name:<26} {rows['objects']:>7} {rows['missed']:>6} {med('centroid', 100):>15} "
          f"{med('aabb_iou'):>14} {med('yaw_deg'):>12} {med('to_true_centre', 100):>17}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=30)
    parser.add_argument("--pipeline", action="store_true", help="also with the shipped model's own masks")
    args = parser.parse_args()
    print(f"{'masks':<26} {'objects':>7} {'missed':>6} {'centroid cm (med)':>15} {'AABB IoU (med)':>14} "
          f"{'yaw deg (med)':>12} {'to true centre cm':>17}")
    report("ground truth", evaluate(args.scenes))
    if args.pipeline:
        from sam_ros.config import SamRosConfig
        from sam_ros.model import BUNDLED_PARAMS
        from sam_ros.pipeline import Segmenter

        config = SamRosConfig.from_yaml(BUNDLED_PARAMS).replace(device="cpu")
        report("pipeline (bundled model)", evaluate(args.scenes, Segmenter(config)))
    switches, tracked = id_switches()
    print(f"identity: {switches} id switches over {tracked} objects that stay in view (3 moving sequences)")
    print("bars: centroid < 1 cm, AABB IoU > 0.7, id switches 0")


if __name__ == "__main__":
    main()
