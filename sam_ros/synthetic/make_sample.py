"""Regenerate the sample RGB-D recording shipped in sam_ros/data/sample_sequence (deterministic).

    python -m sam_ros.synthetic.make_sample                            # the shipped (rich) recording
    python -m sam_ros.synthetic.make_sample --style classic --out DIR  # the first renderer's look

The truth file is written beside the recording as ``<name>_truth.json``.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from .sequence import render_rich_sequence, render_sequence, write_rosbag2

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample_sequence"
SAMPLE_SEED, SAMPLE_FRAMES = 0, 12
RICH_SEED = 14  # chosen for a clear first look: a table with objects on it, shadows, three movers


def ground_truth(frames) -> dict:
    """Per-frame true object centres, sizes and supports (camera optical frame) for checking the demo's output.

    Rich sequences also say each object's role: static, or the mover's (crosses, leaves, enters).
    """
    movers = frames[0].scene.spec.extra.get("movers", {}) if frames else {}

    def roles(obj) -> dict:
        return {"role": movers.get(obj.id, "static")} if movers else {}

    return {"frames": [{"stamp_ns": f.stamp_ns, "objects": [
        {"id": o.id, "shape": o.shape, "center": [round(float(c), 4) for c in o.center],
         "size": [round(float(s), 4) for s in o.size], "visible_pixels": int((f.scene.labels == o.id).sum()),
         "support": o.support, **roles(o)}
        for o in f.scene.objects]} for f in frames]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", choices=("classic", "rich"), default="rich")
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR, help="recording directory (replaced)")
    args = parser.parse_args(argv)
    if args.style == "rich":
        # no camera noise: it would double the recording's size (noise does not compress)
        frames = render_rich_sequence(RICH_SEED, SAMPLE_FRAMES, camera_effects=False)
    else:
        frames = render_sequence(SAMPLE_SEED, SAMPLE_FRAMES)
    shutil.rmtree(args.out, ignore_errors=True)
    write_rosbag2(args.out, frames)
    (args.out.parent / f"{args.out.name}_truth.json").write_text(json.dumps(ground_truth(frames), indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
