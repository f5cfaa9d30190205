import json

import numpy as np
import torch
from PIL import Image

from sam_ros.cli import main
from sam_ros.masks import rle_from_string, rle_to_mask
from sam_ros.model import TINY, build_sam, save_checkpoint
from sam_ros.synthetic import Intrinsics, render, sample_scene, to_16uc1_mm


def test_cli_writes_overlay_and_json_with_3d_objects(tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, build_sam(TINY), TINY)
    scene = render(sample_scene(np.random.default_rng(1)), Intrinsics.default(160, 120))
    Image.fromarray(scene.rgb).save(tmp_path / "rgb.png")
    Image.fromarray(to_16uc1_mm(scene.depth)).save(tmp_path / "depth.png")
    i = scene.intrinsics
    code = main([str(tmp_path / "rgb.png"), "--depth", str(tmp_path / "depth.png"), "--intrinsics",
                 f"{i.fx},{i.fy},{i.cx},{i.cy}", "--checkpoint", str(checkpoint), "--grid", "4", "--device", "cpu",
                 "--set", "pred_iou_thresh=0", "--set", "stability_thresh=0", "--out", str(tmp_path / "out")])
    assert code == 0
    data = json.loads((tmp_path / "out" / "rgb.json").read_text())
    assert data["num_prompts"] == 16 and data["masks"] and len(data["objects"]) == len(data["masks"])
    first = data["masks"][0]
    mask = rle_to_mask(rle_from_string(first["segmentation"]["counts"]), 120, 160)
    assert mask.sum() == first["area"]
    assert Image.open(tmp_path / "out" / "rgb_overlay.png").size == (160, 120)


def test_cli_reports_bad_inputs_clearly(tmp_path, capsys):
    assert main([str(tmp_path / "missing.png"), "--checkpoint", "bundled-nowhere.pt", "--device", "cpu"]) == 2
    assert "no model checkpoint found" in capsys.readouterr().err
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "tiny.pt", build_sam(TINY), TINY)
    assert main([str(tmp_path / "missing.png"), "--checkpoint", str(tmp_path / "tiny.pt"), "--device", "cpu"]) == 2
    assert "no such image" in capsys.readouterr().err
    assert main(["x.png", "--depth", "d.png", "--checkpoint", str(tmp_path / "tiny.pt")]) == 2
    assert "--intrinsics" in capsys.readouterr().err
