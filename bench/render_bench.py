"""Render time of the rich scenes, as a ratio to the classic scenes measured in the same run.

    python bench/render_bench.py [--scenes 10] [--width 640 --height 480]

Prints the CPU's model and SIMD flags and the load average, because absolute times on a shared
machine say little; the ratio is what to compare.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sam_ros.synthetic import Intrinsics, apply_photometric, render, sample_photometric, sample_scene  # noqa: E402


def cpu_description() -> str:
    model, flags = platform.processor() or "unknown CPU", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                wanted = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "fma")
                flags = " ".join(f for f in line.split(":", 1)[1].split() if f in wanted)
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, flags: {flags or 'n/a'}, load average {os.getloadavg()[0]:.1f}"


def time_renders(style: str, scenes: int, intrinsics: Intrinsics) -> list[float]:
    times = []
    for seed in range(scenes):
        spec = sample_scene(np.random.default_rng(seed), style=style)
        start = time.perf_counter()
        render(spec, intrinsics)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    intrinsics = Intrinsics.default(args.width, args.height)
    print(cpu_description())
    classic = time_renders("classic", args.scenes, intrinsics)
    rich = time_renders("rich", args.scenes, intrinsics)
    scene = render(sample_scene(np.random.default_rng(0), style="rich"), intrinsics)
    start = time.perf_counter()
    for seed in range(args.scenes):
        rng = np.random.default_rng(seed)
        apply_photometric(scene.rgb, sample_photometric(rng), rng, scene.depth)
    photometric = (time.perf_counter() - start) / args.scenes
    print(f"{args.width}x{args.height}, {args.scenes} scenes each, median per frame:")
    print(f"  classic {np.median(classic) * 1000:7.0f} ms (reference)")
    print(f"  rich    {np.median(rich) * 1000:7.0f} ms ({np.median(rich) / np.median(classic):.2f}x classic)")
    print(f"  photometric effects {photometric * 1000:.0f} ms per frame ({photometric / np.median(classic):.2f}x classic)")


if __name__ == "__main__":
    main()
