"""The shipped small model on held-out synthetic scenes (issue 6's bar), through the real pipeline.

    python bench/tiny_model_bench.py [--scenes 20] [--checkpoint bundled] [--grid 16]

Single point at each object's interior (the mask pixel nearest its centre): mean IoU of the mask the
model ranks best (bar >= 0.8). Segment-everything with the grid pipeline: recall of ground-truth
objects at mask IoU 0.5 (bar >= 0.9) and masks kept per object (bar < 2).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sam_ros.config import SamRosConfig  # noqa: E402
from sam_ros.decode import decode_points  # noqa: E402
from sam_ros.filters import upsample_to_frame  # noqa: E402
from sam_ros.pipeline import Segmenter  # noqa: E402
from sam_ros.synthetic import render, sample_scene  # noqa: E402

HELD_OUT_SEED = 90_000  # training uses seeds from 0; evaluation seeds never overlap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--checkpoint", default="bundled")
    parser.add_argument("--grid", type=int, default=16)
    parser.add_argument("--min-pixels", type=int, default=500, help="ignore objects smaller than this in the frame")
    args = parser.parse_args()
    segmenter = Segmenter(SamRosConfig(checkpoint=args.checkpoint, device="cpu", grid_size=args.grid))
    point_ious, found, objects, masks_kept = [], 0, 0, 0
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + args.scenes):
        scene = render(sample_scene(np.random.default_rng(seed)))
        gt_masks, _ = scene.masks()
        gt_masks = [m for m in gt_masks if m.sum() >= args.min_pixels]
        encoded = segmenter.encode(scene.rgb)
        for gt in gt_masks:
            ys, xs = np.nonzero(gt)
            k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
            batch = decode_points(segmenter.model, encoded, torch.tensor([[xs[k] + 0.5, ys[k] + 0.5]]),
                                  pred_iou_thresh=-1.0, stability_thresh=0.0, stability_offset=1.0,
                                  mask_threshold=0.0, max_memory_mb=1024)
            best = upsample_to_frame(batch.logits[batch.iou.argmax()][None], encoded.input_size,
                                     encoded.original_size, 0.0)[0].numpy()
            point_ious.append((best & gt).sum() / max((best | gt).sum(), 1))
        result = segmenter.segment(scene.rgb).masks.numpy()
        masks_kept += len(result)
        for gt in gt_masks:
            objects += 1
            if len(result):
                iou = (result & gt).reshape(len(result), -1).sum(1) / (result | gt).reshape(len(result), -1).sum(1)
                found += iou.max() >= 0.5
    print(f"{args.scenes} held-out scenes, {objects} objects (>= {args.min_pixels} px), grid {args.grid}")
    print(f"single interior point: mean IoU {np.mean(point_ious):.3f} (bar >= 0.8)")
    print(f"segment everything: recall@0.5 {found / objects:.3f} (bar >= 0.9), "
          f"{masks_kept / objects:.2f} masks per object (bar < 2; floor and wall are masks too)")


if __name__ == "__main__":
    main()
