"""Small objects: grids, crop layers, scales, adaptive density and AoP on held-out scenes with small items.

    python bench/amg_bench.py [--style classic|rich] [--checkpoint bundled] [--scenes 12] [--threads 2] [--no-reference]
                               [--modes "grid 16;adaptive 8 -> 16 + crop 1"]

Held-out synthetic 640x480 scenes with 2-4 small items of ~100-1000 px each: ``--style classic`` (the
default: the first renderer's look, which the shipped model was trained on, plus small items) or
``--style rich`` (rooms, tables, textures, shadows; the shipped model finds under half of their objects);
the model's operating point (--params). Per mode: recall@0.5 of the visible objects per size bucket
(< 500, 500-2000, > 2000 px), masks kept per object, prompts, decode and total time per frame, and the
share of small objects (< 500 px) that any decoded prompt lands on (a miss with a prompt on the object
is the model's, one without is the prompts'). Then the
reference AMG (segment-anything's, around the same model) with the crop settings of "grid 16 + crop 1",
on one scene, against ours on that scene: a speed ratio measured in the same run. Not a test: timings
depend on the machine (its CPU flags are printed).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))

from sam_ros.config import SamRosConfig  # noqa: E402
from sam_ros.model import BUNDLED_PARAMS, load_sam  # noqa: E402
from sam_ros.pipeline import Segmenter  # noqa: E402
from sam_ros.synthetic import Intrinsics, render, sample_scene  # noqa: E402
from sam_ros.train.evaluate import mask_iou  # noqa: E402

# a seed range of their own per style (training and the other benches use other seeds)
HELD_OUT_SEED = {"classic": 3_000_000, "rich": 2_000_000}
BUCKETS = ((0, 500, "<500"), (500, 2000, "500-2000"), (2000, 10**9, ">2000"))
MODES = {
    "grid 16": {"grid_size": 16},
    "grid 32": {"grid_size": 32},
    "grid 16 + crop 1": {"grid_size": 16, "crop_n_layers": 1},
    "multi-scale 1, 1.5": {"grid_size": 16, "scales": "1.5"},
    "adaptive 16 -> 32": {"grid_size": 16, "adaptive_density": True, "adaptive_dense_grid": 32},
    "adaptive 8 -> 16 + crop 1": {"grid_size": 8, "adaptive_density": True, "adaptive_dense_grid": 16,
                                  "crop_n_layers": 1},
    "adaptive 16 -> 32 + crop 1/2": {"grid_size": 16, "adaptive_density": True, "adaptive_dense_grid": 32,
                                     "crop_n_layers": 1, "crop_n_points_downscale_factor": 2},
    "AoP": {"prompt_mode": "aop"},
}


def cpu_flags() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)


def scenes(count: int, style: str):
    for index in range(count):
        rng = np.random.default_rng(HELD_OUT_SEED[style] + index)
        yield render(sample_scene(rng, style=style, n_small=(2, 4)), Intrinsics.default(640, 480))


def record_prompts(store: list) -> None:
    """Keep every prompt the pipeline decodes (frame pixels) in ``store``: whether a small object was missed
    for want of a prompt on it or despite one."""
    import sam_ros.pipeline as pipeline
    decode_points = pipeline.decode_points

    def recording(model, encoded, points, **kwargs):
        store.append(points.detach().cpu())
        return decode_points(model, encoded, points, **kwargs)
    pipeline.decode_points = recording


def prompted(points: list, truth: torch.Tensor) -> np.ndarray:
    """Whether any of the ``points`` lands on each true object."""
    if not points:
        return np.zeros(len(truth), bool)
    height, width = truth.shape[1:]
    xy = torch.cat(points).round().long()
    return truth[:, xy[:, 1].clamp(0, height - 1), xy[:, 0].clamp(0, width - 1)].any(1).numpy()


def score(result, truth: torch.Tensor) -> np.ndarray:
    """Best IoU of each true object with any kept mask."""
    if len(result) == 0:
        return np.zeros(len(truth))
    return mask_iou(result.masks.cpu(), truth).amax(0).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--style", choices=sorted(HELD_OUT_SEED), default="classic")
    parser.add_argument("--checkpoint", default="bundled")
    parser.add_argument("--params", default=str(BUNDLED_PARAMS), help="filter thresholds (ROS params file)")
    parser.add_argument("--pred-iou-thresh", type=float, help="overrides --params")
    parser.add_argument("--stability-thresh", type=float, help="overrides --params")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-reference", action="store_true", help="skip the reference AMG run")
    parser.add_argument("--modes", help="';'-separated subset of the modes (grid 32 is always run: the yardstick)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_sam(args.checkpoint)
    overrides = {name: value for name, value in (("pred_iou_thresh", args.pred_iou_thresh),
                                                 ("stability_thresh", args.stability_thresh)) if value is not None}
    base = SamRosConfig.from_yaml(args.params).replace(checkpoint=args.checkpoint, device="cpu", dtype="float32",
                                                       **overrides)
    modes = MODES if not args.modes else {name: MODES[name] for name in MODES
                                          if name in args.modes.split(";") or name == "grid 32"}
    segmenters = {name: Segmenter(base.replace(**changes), model) for name, changes in modes.items()}
    rows = {name: {"ious": [], "areas": [], "prompted": [], "masks": 0, "prompts": 0, "decode_ms": 0.0,
                   "total_ms": 0.0} for name in modes}
    decoded: list[torch.Tensor] = []
    record_prompts(decoded)
    frames = list(scenes(args.scenes, args.style))
    for scene in frames:
        truth_np, _ = scene.masks()
        truth = torch.from_numpy(truth_np[truth_np.reshape(len(truth_np), -1).sum(1) >= 50])
        for name, segmenter in segmenters.items():
            decoded.clear()
            result = segmenter.segment(scene.rgb)
            row = rows[name]
            row["ious"].append(score(result, truth))
            row["prompted"].append(prompted(decoded, truth))
            row["areas"].append(truth.flatten(1).sum(1).numpy())
            row["masks"] += len(result)
            row["prompts"] += result.num_prompts
            row["decode_ms"] += result.timings_ms["decode_ms"]
            row["total_ms"] += result.timings_ms["total_ms"]
    n = len(frames)
    print(f"{n} held-out {args.style} scenes at 640x480, checkpoint {args.checkpoint}, pred_iou_thresh {base.pred_iou_thresh}, "
          f"stability_thresh {base.stability_thresh}, CPU fp32, {args.threads} threads, CPU flags: {cpu_flags()}, "
          f"load average {os.getloadavg()[0]:.1f}; per frame:")
    header = ("mode".ljust(28) + "".join(f"  recall {b[2]:>8}" for b in BUCKETS)
              + "  masks/obj  prompts  decode ms  total ms  <500 with a prompt on it")
    print(header)
    grid32 = rows["grid 32"]["decode_ms"]
    for name, row in rows.items():
        ious, areas = np.concatenate(row["ious"]), np.concatenate(row["areas"])
        recalls = []
        for low, high, _ in BUCKETS:
            inside = (areas >= low) & (areas < high)
            recalls.append(f"{(ious[inside] >= 0.5).mean():16.3f} " if inside.any() else f"{'-':>16} ")
        small = np.concatenate(row["prompted"])[areas < BUCKETS[0][1]]
        print(name.ljust(28) + "".join(recalls) + f"{row['masks'] / len(ious):10.2f} {row['prompts'] / n:8.0f} "
              f"{row['decode_ms'] / n:10.0f} {row['total_ms'] / n:9.0f}  {small.mean() if small.size else float('nan'):.3f}"
              f"   (decode {row['decode_ms'] / grid32:.2f}x grid 32)")
    counts = np.concatenate(rows["grid 32"]["areas"])
    print("objects per bucket: " + ", ".join(f"{b[2]}: {int(((counts >= b[0]) & (counts < b[1])).sum())}"
                                             for b in BUCKETS))
    if not args.no_reference:
        reference_speed(model, base, frames[0].rgb)


def reference_speed(model, base: SamRosConfig, image: np.ndarray) -> None:
    """segment-anything's AMG (its prompt encoder, decoder and stages around our encoder), crop layer 1."""
    from reference import SamAutomaticMaskGenerator, reference_sam_around

    generator = SamAutomaticMaskGenerator(reference_sam_around(model), points_per_side=16, crop_n_layers=1,
                                          pred_iou_thresh=base.pred_iou_thresh,
                                          stability_score_thresh=base.stability_thresh,
                                          box_nms_thresh=base.nms_thresh, points_per_batch=64)
    ours = Segmenter(base.replace(grid_size=16, crop_n_layers=1, min_area=0, max_objects=1000), model)
    start = time.perf_counter()
    expected = generator.generate(image)
    reference_s = time.perf_counter() - start
    start = time.perf_counter()
    result = ours.segment(image)
    ours_s = time.perf_counter() - start
    print(f"reference AMG, grid 16 + crop layer 1, one scene: {reference_s:.2f} s, {len(expected)} masks; "
          f"ours {ours_s:.2f} s, {len(result)} masks: {reference_s / ours_s:.1f}x faster")


if __name__ == "__main__":
    main()
