"""Every GPU figure the project claims, in one run; on the CPU the same table for a CPU-only robot.

    python bench/gpu_check.py                     # on a GPU: under 8 minutes
    python bench/gpu_check.py --device cpu        # the CPU table (fp32, and bf16 where the CPU has it natively)
    python bench/gpu_check.py --dry               # tiny inputs, one repeat: the same table shape in seconds (CI)

Prints: the device (GPU name, or CPU model and flags, and whether bf16 is native); segment-everything
latency against the reference automatic mask generator (MobileSAM-size seeded weights, 640x480, grids
16 and 32; speed-up, peak device memory, and on a GPU the peak the allocator reserved against the
decoder memory cap); end-to-end frames per second of ``Segmenter.run`` on a moving 640x480 RGB-D
sequence (grid 16, AoP, temporal prompts; the shipped small model, and MobileSAM-size weights at grid 16);
and the node's FPS on the shipped recording (``tools/demo.sh``, when ROS 2 is set up). Each ratio is
measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT))

from sam_ros.camera import PinholeCamera  # noqa: E402
from sam_ros.config import SamRosConfig  # noqa: E402
from sam_ros.cpu_features import cpu_flags, cpu_model, native_bf16  # noqa: E402
from sam_ros.model import BUNDLED_PARAMS, load_sam  # noqa: E402
from sam_ros.pipeline import Segmenter  # noqa: E402
from sam_ros.synthetic import Intrinsics, render, sample_scene  # noqa: E402
from sam_ros.synthetic.sequence import render_sequence  # noqa: E402

DTYPE_NAMES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def device_line(device: str) -> str:
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return (f"GPU {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability {props.major}.{props.minor}, "
                f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "bf16") if f in cpu_flags())
    return (f"CPU {cpu_model()}, {torch.get_num_threads()} threads, flags: {flags or 'none of avx2/avx512/bf16'}; "
            f"native bf16: {'yes' if native_bf16() else 'no'}; torch {torch.__version__}")


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, function, repeats: int, warm_up: bool) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls (after one warm-up call if asked) and the last result."""
    if warm_up:
        function()
    times, result = [], None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def peak_memory(device: str) -> tuple[str, str]:
    """Peak allocated and reserved MiB since the last reset (GPU only: a CPU process's RSS is not resettable)."""
    if device != "cuda":
        return "-", "-"
    return f"{torch.cuda.max_memory_allocated() / 2**20:.0f}", f"{torch.cuda.max_memory_reserved() / 2**20:.0f}"


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def guarded(label: str, failed: list[str], measure) -> object | None:
    """``measure()``, or None with a one-line reason printed: a row that fails on some GPU (out of memory, a
    dtype it lacks) must not cost the rows after it, which a borrowed GPU's minutes may not run twice."""
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 - any error of one row; main() exits non-zero at the end
        failed.append(label)
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        print(f"{label}: FAILED ({type(error).__name__}: {reason})", flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None


def segment_table(args, dtypes: list[str], weights: Path, reference, failed: list[str]) -> None:
    """sam_ros vs the reference AMG on one frame, same seeded MobileSAM weights, same thresholds."""
    from reference import SamAutomaticMaskGenerator

    size = (args.width, args.height)
    image = render(sample_scene(np.random.default_rng(0)), Intrinsics.default(*size)).rgb
    cap = SamRosConfig().max_decode_memory_mb
    warmed = ", after a warm-up" if args.device == "cuda" else ""
    print(f"\nsegment everything, {size[0]}x{size[1]}, MobileSAM-size seeded weights, SAM's thresholds, median of "
          f"{args.repeats} (reference: one run{warmed}); decoder memory cap {cap} MiB")
    print(f"{'grid':>4} {'method':<20} {'latency s':>10} {'speed-up':>9} {'peak MiB':>9} {'reserved MiB':>13} "
          f"{'masks':>6} {'FPS':>6}")
    for grid in args.grids:
        def run_reference() -> float:
            generator = SamAutomaticMaskGenerator(reference.to(args.device), points_per_side=grid, points_per_batch=64)
            reset_peak(args.device)
            # A GPU's first call pays cuBLAS set-up and kernel loading, which sam_ros's warm-up absorbs: warm it too.
            ref_s, masks = timed(args.device, lambda: generator.generate(image), 1, warm_up=args.device == "cuda")
            peak, reserved = peak_memory(args.device)
            print(f"{grid:>4} {'reference AMG fp32':<20} {ref_s:>10.3f} {1.0:>9.2f} {peak:>9} {reserved:>13} "
                  f"{len(masks):>6} {1 / ref_s:>6.2f}", flush=True)
            return ref_s

        ref_s = guarded(f"grid {grid} reference AMG", failed, run_reference)
        reference.cpu()

        def run_ours(dtype: str) -> None:
            segmenter = Segmenter(SamRosConfig(device=args.device, dtype=dtype, grid_size=grid, max_objects=1000),
                                  load_sam(weights)[0])
            reset_peak(args.device)
            seconds, result = timed(args.device, lambda: segmenter.segment(image), args.repeats, args.warm_up)
            peak, reserved = peak_memory(args.device)
            speed_up = f"{ref_s / seconds:>9.2f}" if ref_s else f"{'-':>9}"
            print(f"{grid:>4} {'sam_ros ' + DTYPE_NAMES[dtype]:<20} {seconds:>10.3f} {speed_up} "
                  f"{peak:>9} {reserved:>13} {len(result):>6} {1 / seconds:>6.2f}", flush=True)

        for dtype in dtypes:
            guarded(f"grid {grid} sam_ros {DTYPE_NAMES[dtype]}", failed, lambda: run_ours(dtype))


def end_to_end_table(args, dtypes: list[str], weights: Path, failed: list[str]) -> None:
    """``Segmenter.run`` (segmentation + the 3D scene + tracking) per frame of a moving RGB-D sequence."""
    intrinsics = Intrinsics.default(args.width, args.height)
    sequence = render_sequence(5, args.frames, intrinsics=intrinsics)
    camera = PinholeCamera(args.width, args.height, intrinsics.K)
    print(f"\nend to end (segment + fuse + track), {args.width}x{args.height} RGB-D, {args.frames} frames of a moving "
          f"sequence, rescan_every {SamRosConfig().rescan_every}{', after one warm-up frame' if args.warm_up else ''}")
    print(f"{'model':<12} {'dtype':<5} {'prompts':<17} {'prompts/frame':>13} {'encoder ms':>10} {'decode ms':>10} "
          f"{'filter ms':>10} {'scene ms':>10} {'frame ms':>9} {'FPS':>6}")
    grid = args.grids[0]
    modes = {f"grid {grid}": {}, "AoP": {"prompt_mode": "aop"}, "temporal (grid)": {"temporal_prompts": True}}
    # The shipped model at its own thresholds (its params file), MobileSAM at SAM's.
    # Dry runs pass MobileSAM-size weights one frame only (its encoder is most of a dry run's time).
    models = [("shipped", SamRosConfig.from_yaml(BUNDLED_PARAMS), modes, sequence),
              ("MobileSAM", SamRosConfig(checkpoint=str(weights)), {f"grid {grid}": {}},
               sequence[:1] if args.dry else sequence)]
    def run_row(label: str, params: SamRosConfig, dtype: str, mode: str, changes: dict, frames: list) -> None:
        config = params.replace(device=args.device, dtype=dtype, grid_size=grid, **changes)
        segmenter = Segmenter(config)
        if args.warm_up:
            segmenter.run(sequence[0].scene.rgb, sequence[0].depth_mm, camera)
            segmenter = Segmenter(config, segmenter.model)  # fresh tracks, same loaded model
        rows, start = [], time.perf_counter()
        for frame in frames:
            out = segmenter.run(frame.scene.rgb, frame.depth_mm, camera)
            timings = out.timings_ms
            rows.append((out.segmentation.num_prompts, timings["encoder_ms"], timings["decode_ms"],
                         timings["filter_ms"], timings["scene_ms"]))
        synchronize(args.device)
        seconds = time.perf_counter() - start
        prompts, encoder, decode, mask_filter, scene = (float(np.median(c)) for c in zip(*rows))
        print(f"{label:<12} {DTYPE_NAMES[dtype]:<5} {mode:<17} {np.mean([r[0] for r in rows]):>13.0f} "
              f"{encoder:>10.0f} {decode:>10.0f} {mask_filter:>10.0f} {scene:>10.0f} "
              f"{1000 * seconds / len(rows):>9.0f} "
              f"{len(rows) / seconds:>6.2f}", flush=True)

    for label, params, model_modes, frames in models:
        for dtype in dtypes:
            for mode, changes in model_modes.items():
                guarded(f"{label} {DTYPE_NAMES[dtype]} {mode}", failed,
                        lambda: run_row(label, params, dtype, mode, changes, frames))


def demo_fps(summary: str) -> float | None:
    """The FPS figure of the demo's one-line summary (``... N frames, 1.23 FPS (...``)."""
    match = re.search(r"([0-9.]+) FPS", summary)
    return float(match.group(1)) if match else None


def node_table(args) -> None:
    """The real node on the shipped recording, through ``tools/demo.sh`` (needs its ROS 2 setup)."""
    print(f"\nnode on the shipped recording (tools/demo.sh, step replay, shipped model, device {args.device})")
    if args.dry:
        print("node: not run in dry mode (test/ros runs the node)")
        return
    if not (ROOT / ".venv" / "ros_env.sh").is_file():  # building it needs the network and minutes
        print("node: not run (no ROS 2 venv in this checkout: run tools/demo.sh -p device:=cuda once where the "
              "network is reachable, then this check again)")
        return
    with tempfile.TemporaryDirectory() as out:
        command = [str(ROOT / "tools" / "demo.sh"), "--out", out, "-p", f"device:={args.device}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
        except (OSError, subprocess.TimeoutExpired) as error:
            print(f"node: not run ({error})")
            return
        summary = Path(out, "summary.txt")
        fps = demo_fps(summary.read_text()) if summary.is_file() else None
        if done.returncode or fps is None:
            print(f"node: failed (exit {done.returncode}): {(done.stdout + done.stderr).strip()[-300:]}")
        else:
            print(f"node: {fps:.2f} FPS ({summary.read_text().strip()})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dry", action="store_true", help="CPU, tiny inputs, one repeat: checks the script runs")
    parser.add_argument("--grids", type=int, nargs="+", help="default 16 32 on a GPU, 16 on a CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.width, args.height, args.warm_up = 640, 480, True
    if args.dry:
        args.device, args.grids, args.repeats, args.frames = "cpu", [2], 1, 2
        args.width, args.height, args.warm_up = 160, 120, False
    args.grids = args.grids or ([16, 32] if args.device == "cuda" else [16])
    dtypes = (["float16", "bfloat16", "float32"] if args.device == "cuda"
              else ["float32", "bfloat16"] if native_bf16() or args.dry else ["float32"])
    print(device_line(args.device) + ("  [dry run: tiny inputs, figures meaningless]" if args.dry else ""))
    if args.device == "cpu" and not native_bf16():
        print("bf16 is emulated on this CPU (no avx512_bf16/amx_bf16): slower than fp32, not measured")
    from reference import reference_mobile_sam

    reference = reference_mobile_sam(seed=0)
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "mobile_sam_seeded.pt"
        torch.save(reference.state_dict(), weights)
        segment_table(args, dtypes, weights, reference, failed)
        end_to_end_table(args, dtypes, weights, failed)
    node_table(args)
    if failed:
        raise SystemExit(f"\n{len(failed)} row(s) failed: {'; '.join(failed)}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    main()
