"""bench/gpu_check.py in its CPU dry mode, so the GPU check cannot rot while no GPU is around."""
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import gpu_check  # noqa: E402

pytestmark = pytest.mark.slow  # three MobileSAM encoder passes at 1024 px on the CPU


def test_dry_run_prints_every_table(capsys):
    gpu_check.main(["--dry", "--threads", "2"])
    out = capsys.readouterr().out
    assert "native bf16: " in out.splitlines()[0]
    segment = re.findall(r"^\s+2 (reference AMG fp32|sam_ros fp32|sam_ros bf16)\s+([0-9.]+)\s+([0-9.]+)", out, re.M)
    assert [row[0] for row in segment] == ["reference AMG fp32", "sam_ros fp32", "sam_ros bf16"]
    reference_s = float(segment[0][1])
    for _, seconds, speedup in segment[1:]:  # the speed-up is the reference's time over this row's
        assert float(speedup) == pytest.approx(reference_s / float(seconds), rel=0.02, abs=0.01)
    rows = re.findall(r"^(shipped|MobileSAM)\s+(fp32|bf16)\s+(grid 2|AoP|temporal \(grid\))\s+(\d+)\s+.*?([0-9.]+)$",
                      out, re.M)
    assert {(m, d, p) for m, d, p, _, _ in rows} == (
        {("shipped", d, p) for d in ("fp32", "bf16") for p in ("grid 2", "AoP", "temporal (grid)")}
        | {("MobileSAM", d, "grid 2") for d in ("fp32", "bf16")})
    assert all(float(fps) > 0 for *_, fps in rows)
    assert "node: not run in dry mode" in out


def test_demo_summary_fps_is_parsed():
    summary = "sam_ros demo: 12 frames, 1.37 FPS (CPU, step replay), 11 objects per frame"
    assert gpu_check.demo_fps(summary) == 1.37
    assert gpu_check.demo_fps("sam_ros demo failed") is None


def test_a_failing_row_is_reported_and_the_others_still_run(capsys, monkeypatch):
    """One precision failing (as bf16 does on a GPU without it) costs its rows only; the check exits non-zero."""
    real = gpu_check.Segmenter

    def segmenter(config, *args):
        if config.dtype == "bfloat16":
            raise RuntimeError("bfloat16 is not supported here")
        return real(config, *args)

    monkeypatch.setattr(gpu_check, "Segmenter", segmenter)
    with pytest.raises(SystemExit, match="row\\(s\\) failed"):
        gpu_check.main(["--dry", "--threads", "2"])
    out = capsys.readouterr().out
    assert re.search(r"^\s+2 sam_ros fp32\s+[0-9.]+", out, re.M)
    assert "grid 2 sam_ros bf16: FAILED (RuntimeError: bfloat16 is not supported here)" in out
    assert re.search(r"^shipped\s+fp32\s+temporal \(grid\)", out, re.M)
    assert "shipped bf16 AoP: FAILED" in out and "MobileSAM bf16 grid 2: FAILED" in out
