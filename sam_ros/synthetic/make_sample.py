"""Regenerate the sample RGB-D recording shipped in sam_ros/data/sample_sequence (deterministic).

    python -m sam_ros.synthetic.make_sample
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .sequence import render_sequence, write_rosbag2

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample_sequence"
SAMPLE_SEED, SAMPLE_FRAMES = 0, 12


def ground_truth(frames) -> dict:
    """Per-frame true object centres and sizes (camera optical frame) for checking the demo's output."""
    return {"frames": [{"stamp_ns": f.stamp_ns, "objects": [
        {"id": o.id, "shape": o.shape, "center": [round(float(c), 4) for c in o.center],
         "size": [round(float(s), 4) for s in o.size], "visible_pixels": int((f.scene.labels == o.id).sum())}
        for o in f.scene.objects]} for f in frames]}


def main() -> None:
    frames = render_sequence(SAMPLE_SEED, SAMPLE_FRAMES)
    shutil.rmtree(SAMPLE_DIR, ignore_errors=True)
    write_rosbag2(SAMPLE_DIR, frames)
    (SAMPLE_DIR.parent / "sample_sequence_truth.json").write_text(json.dumps(ground_truth(frames), indent=1))
    print(f"wrote {SAMPLE_DIR}")


if __name__ == "__main__":
    main()
