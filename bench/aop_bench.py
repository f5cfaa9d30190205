"""AoP prompts vs point grids on held-out synthetic 640x480 scenes: the AoP-SAM paper's table.

    python bench/aop_bench.py [--checkpoint bundled] [--aop-checkpoint ''] [--scenes 30] [--device cpu]
                              [--style classic|rich]

Rows: grid 16 (AMG-S), grid 32 (AMG-D) and AoP, all with the same model, scenes and filters. Each
row runs in its own process so that peak memory is its own (peak RSS on the CPU, which includes
Python and torch themselves; peak allocated on a GPU). Columns: mIoU under greedy one-to-one
matching to ground truth, recall@0.5 / @0.75, prompts decoded, masks kept, median per-stage
latency, peak memory. Bar (issues 7 and 14): AoP's mIoU within 1 point of AMG-D's, with at most half
of AMG-S's decode-stage latency, on held-out scenes of the classic and the rich renderer
(``--style``). Also prints the predictor's cost relative to the encoder (bar: <= 10%) and the CPU's
flags (timings are ratios within one run: the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from isolated import in_own_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = ("encoder_ms", "prompts_ms", "decode_ms", "filter_ms", "postprocess_ms", "total_ms")


def run_row(row: dict, args: argparse.Namespace, queue) -> None:
    torch.set_num_threads(args.threads)
    from sam_ros.config import SamRosConfig
    from sam_ros.pipeline import Segmenter
    from sam_ros.train.evaluate import greedy_matched_iou, held_out_depth, held_out_scene, mask_iou, object_masks

    base = SamRosConfig.from_yaml(args.params) if args.params else SamRosConfig()
    config = base.replace(checkpoint=args.checkpoint, aop_checkpoint=args.aop_checkpoint, device=args.device,
                          **dict(item.split("=", 1) for item in args.set), **row["config"])
    segmenter = Segmenter(config)
    scenes = [held_out_scene(args.first + i, style=args.style) for i in range(args.scenes)]
    # Sensor depth for a model with a depth input (others ignore it), unless --no-depth.
    depths = [None if args.no_depth else held_out_depth(scene, args.first + i) for i, scene in enumerate(scenes)]
    segmenter.segment(scenes[0].rgb, depths[0])  # warm-up
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    matched, prompts, masks, timings, predictor_ms = [], [], [], {k: [] for k in STAGES}, []
    for scene, depth in zip(scenes, depths):
        truth = torch.from_numpy(object_masks(scene))
        result = segmenter.segment(scene.rgb, depth)
        iou = mask_iou(result.masks.cpu(), truth) if len(result) else torch.zeros(0, len(truth))
        matched += greedy_matched_iou(iou).tolist()
        prompts.append(result.num_prompts)
        masks.append(len(result))
        for stage in STAGES:
            timings[stage].append(result.timings_ms[stage])
        if config.prompt_mode == "aop":
            encoded = segmenter.encode(scene.rgb, depth)
            if args.device == "cuda":  # the encoder runs asynchronously: its time is not the predictor's
                torch.cuda.synchronize()
            start = time.perf_counter()
            segmenter.strategy.confidence_map(encoded)
            if args.device == "cuda":
                torch.cuda.synchronize()
            predictor_ms.append((time.perf_counter() - start) * 1000)
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    matched = np.array(matched)
    queue.put({
        "name": row["name"], "objects": len(matched), "miou": float(matched.mean()),
        "recall_50": float((matched >= 0.5).mean()), "recall_75": float((matched >= 0.75).mean()),
        "prompts": float(np.mean(prompts)), "masks": float(np.mean(masks)), "peak_mb": peak_mb,
        **{stage: statistics.median(values) for stage, values in timings.items()},
        "predictor_ms": statistics.median(predictor_ms) if predictor_ms else None,
    })


def cpu_flags() -> str:
    """The vector extensions that decide CPU speed (avx2, avx512*, amx*), from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return " ".join(sorted(f for f in flags if f.startswith(("avx2", "avx512", "amx")))) or "none of avx2/avx512/amx"


def main() -> None:
    from sam_ros.model import BUNDLED_PARAMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="bundled", help="model file ('bundled' = the shipped one)")
    parser.add_argument("--aop-checkpoint", default="", help="predictor ('' = the one beside the model)")
    parser.add_argument("--scenes", type=int, default=30)
    parser.add_argument("--first", type=int, default=0, help="index of the first held-out scene")
    parser.add_argument("--style", default="classic", choices=("classic", "rich"), help="renderer style of the scenes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", help="filter thresholds, a ROS params file (default: the shipped model's "
                        "operating point with --checkpoint bundled, else SAM's defaults)")
    parser.add_argument("--rows", nargs="+", choices=("grid16", "grid32", "aop"), default=["grid16", "grid32", "aop"],
                        help="which rows (the bar needs all three)")
    parser.add_argument("--no-depth", action="store_true", help="colour only, also for a model with a depth input")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a config field in every row (e.g. aop_conf_thresh=0.1)")
    args = parser.parse_args()
    if args.params is None and args.checkpoint == "bundled":
        args.params = str(BUNDLED_PARAMS)

    rows = {"grid16": {"name": "AMG-S grid 16", "config": {"grid_size": 16}},
            "grid32": {"name": "AMG-D grid 32", "config": {"grid_size": 32}},
            "aop": {"name": "AoP", "config": {"prompt_mode": "aop"}}}
    print(f"CPU flags: {cpu_flags()}")
    print(f"{args.scenes} held-out {args.style} scenes, 640x480{', colour only' if args.no_depth else ''}, "
          f"model {args.checkpoint}, {args.device}, {args.threads} threads, "
          f"filters from {args.params or 'defaults'} {' '.join(args.set)}")
    memory = "GPU MiB" if args.device == "cuda" else "RSS MiB"
    print(f"{'':<14} {'mIoU':>6} {'R@.5':>6} {'R@.75':>6} {'prompts':>8} {'masks':>6} "
          + " ".join(f"{s[:-3]:>11}" for s in STAGES) + f" {memory:>8}")
    results = []
    for name in args.rows:
        r = in_own_process(run_row, rows[name], args)
        results.append(r)
        print(f"{r['name']:<14} {100 * r['miou']:>6.1f} {r['recall_50']:>6.3f} {r['recall_75']:>6.3f} "
              f"{r['prompts']:>8.1f} {r['masks']:>6.1f} " + " ".join(f"{r[s]:>11.1f}" for s in STAGES)
              + f" {r['peak_mb']:>8.0f}", flush=True)
    if len(results) < 3:
        return
    sparse, dense, aop = results
    bars = {"miou_within_1_point_of_AMG-D": aop["miou"] >= dense["miou"] - 0.01,
            "decode_at_most_half_of_AMG-S": aop["decode_ms"] <= 0.5 * sparse["decode_ms"],
            "predictor_at_most_10pct_of_encoder": aop["predictor_ms"] <= 0.1 * aop["encoder_ms"]}
    print(f"AoP mIoU {100 * aop['miou']:.1f} vs AMG-D {100 * dense['miou']:.1f} (bar: >= {100 * dense['miou'] - 1:.1f}); "
          f"AoP decode {aop['decode_ms']:.1f} ms vs AMG-S {sparse['decode_ms']:.1f} ms "
          f"({aop['decode_ms'] / sparse['decode_ms']:.2f}x, bar <= 0.5x); predictor {aop['predictor_ms']:.2f} ms = "
          f"{100 * aop['predictor_ms'] / aop['encoder_ms']:.1f}% of the encoder (bar <= 10%)")
    print(json.dumps({"rows": results, "pass": bars}))


if __name__ == "__main__":
    main()
