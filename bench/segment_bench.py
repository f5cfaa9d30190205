"""Segment-everything speed: sam_ros's pipeline vs the reference MobileSAM automatic mask generator.

    python bench/segment_bench.py                    # 640x480, grids 16 and 32, on cuda if present else cpu
    python bench/segment_bench.py --grids 16 --repeats 3 --device cpu
    python bench/segment_bench.py --pred-iou-thresh 0.3 --stability-thresh 0.5   # masks survive: worst case

Both run the same seeded MobileSAM weights (test/reference.py) on the same synthetic 640x480 frame, each
configuration in its own process so that peak memory is its own. Thresholds are segment-anything's
defaults for both unless given; with seeded weights those keep no mask, which spares sam_ros (it filters
before upscaling) more work than the reference, so the loose thresholds above, where many masks survive
both, give the lower bound of the speed-up. Prints median latency, the speed-up ratio, peak memory and
masks kept.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from isolated import in_own_process

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT))


def frame() -> np.ndarray:
    from sam_ros.synthetic import render, sample_scene

    return render(sample_scene(np.random.default_rng(0))).rgb


def run(method: str, grid: int, device: str, dtype: str, repeats: int, threads: int, iou: float, stability: float,
        queue) -> None:
    torch.set_num_threads(threads)
    from reference import SamAutomaticMaskGenerator, reference_mobile_sam

    reference = reference_mobile_sam(seed=0)
    image = frame()
    if method == "reference":
        model = reference.to(device)
        generator = SamAutomaticMaskGenerator(model, points_per_side=grid, points_per_batch=64, pred_iou_thresh=iou,
                                              stability_score_thresh=stability)
        segment = lambda: generator.generate(image)  # noqa: E731
    else:
        from sam_ros.config import SamRosConfig
        from sam_ros.model import load_sam
        from sam_ros.pipeline import Segmenter

        path = Path(f"/tmp/sam_ros_bench_{grid}.pt")
        torch.save(reference.state_dict(), path)
        model, _ = load_sam(path)
        segmenter = Segmenter(SamRosConfig(device=device, dtype=dtype, grid_size=grid, max_objects=1000,
                                           pred_iou_thresh=iou, stability_thresh=stability), model)
        segment = lambda: segmenter.segment(image)  # noqa: E731
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    segment()  # warm-up
    times, count = [], 0
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        count = len(segment())
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    queue.put((statistics.median(times), peak_mb, count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88, help="for both (segment-anything's default)")
    parser.add_argument("--stability-thresh", type=float, default=0.95, help="for both (segment-anything's default)")
    parser.add_argument("--dtypes", nargs="+", help="sam_ros precisions (default: float16 float32 on cuda, "
                        "float32 bfloat16 on cpu)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    # bf16 on the CPU only where it is native (sam_ros/cpu_features.py): emulated, it is slower than fp32.
    from sam_ros.cpu_features import cpu_flags, cpu_model, native_bf16

    dtypes = args.dtypes or (["float16", "float32"] if args.device == "cuda"
                             else ["float32", "bfloat16"] if native_bf16() else ["float32"])
    if args.device == "cpu":
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "bf16") if f in cpu_flags())
        print(f"CPU {cpu_model()}, flags: {flags}; native bf16: {'yes' if native_bf16() else 'no'}")
    memory = "peak GPU MiB" if args.device == "cuda" else "peak RSS MiB"
    print(f"640x480, {args.device}, {args.threads} threads, median of {args.repeats}, pred_iou_thresh "
          f"{args.pred_iou_thresh}, stability_thresh {args.stability_thresh}")
    print(f"{'grid':>4} {'method':<22} {'latency s':>10} {'speed-up':>9} {memory:>13} {'masks':>6}")
    for grid in args.grids:
        thresholds = (args.pred_iou_thresh, args.stability_thresh)
        ref_s, ref_mb, ref_n = in_own_process(run, "reference", grid, args.device, "float32", args.repeats,
                                              args.threads, *thresholds)
        print(f"{grid:>4} {'reference AMG fp32':<22} {ref_s:>10.3f} {1.0:>9.2f} {ref_mb:>13.0f} {ref_n:>6}", flush=True)
        for dtype in dtypes:
            ours_s, ours_mb, ours_n = in_own_process(run, "sam_ros", grid, args.device, dtype, args.repeats, args.threads,
                                              *thresholds)
            fps = f"  ({1 / ours_s:.1f} FPS)" if args.device == "cuda" else ""
            print(f"{grid:>4} {'sam_ros ' + dtype:<22} {ours_s:>10.3f} {ref_s / ours_s:>9.2f} {ours_mb:>13.0f} "
                  f"{ours_n:>6}{fps}", flush=True)


if __name__ == "__main__":
    main()
