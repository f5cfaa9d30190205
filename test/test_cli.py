import json

import numpy as np
import pytest
import torch
from PIL import Image

import sam_ros.cli as cli
from sam_ros.cli import main
from sam_ros.masks import rle_from_string, rle_to_mask
from sam_ros.model import TINY, build_sam, save_checkpoint
from sam_ros.synthetic import Intrinsics, render, sample_scene, to_16uc1_mm
from sam_ros.synthetic.sequence import render_sequence, write_rosbag2

LOOSE = ["--set", "pred_iou_thresh=0", "--set", "stability_thresh=0", "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, build_sam(TINY), TINY)
    return path


def test_cli_writes_overlay_and_json_with_3d_objects(tmp_path, checkpoint, capsys):
    scene = render(sample_scene(np.random.default_rng(1)), Intrinsics.default(160, 120))
    Image.fromarray(scene.rgb).save(tmp_path / "rgb.png")
    Image.fromarray(to_16uc1_mm(scene.depth)).save(tmp_path / "depth.png")
    i = scene.intrinsics
    code = main([str(tmp_path / "rgb.png"), "--depth", str(tmp_path / "depth.png"), "--intrinsics",
                 f"{i.fx},{i.fy},{i.cx},{i.cy}", "--checkpoint", str(checkpoint), "--grid", "4",
                 "--out", str(tmp_path / "out"), *LOOSE])
    assert code == 0
    assert str((tmp_path / "out").resolve()) in capsys.readouterr().out  # says where it wrote
    data = json.loads((tmp_path / "out" / "rgb.json").read_text())
    assert data["num_prompts"] == 16 and data["masks"] and len(data["objects"]) == len(data["masks"])
    assert [m["track_id"] for m in data["masks"]] == [o["id"] for o in data["objects"]]
    for record in data["masks"]:
        mask = rle_to_mask(rle_from_string(record["segmentation"]["counts"]), 120, 160)
        ys, xs = np.nonzero(mask)
        assert mask.sum() == record["area"]
        assert record["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert Image.open(tmp_path / "out" / "rgb_overlay.png").size == (160, 120)


def test_cli_reads_a_rosbag2_recording_with_depth(tmp_path, checkpoint):
    write_rosbag2(tmp_path / "rec", render_sequence(3, 3, intrinsics=Intrinsics.default(160, 120)))
    assert main([str(tmp_path / "rec"), "--checkpoint", str(checkpoint), "--grid", "3",
                 "--out", str(tmp_path / "out"), *LOOSE]) == 0
    outputs = sorted((tmp_path / "out").glob("*.json"))
    assert len(outputs) == 3 and len(list((tmp_path / "out").glob("*_overlay.png"))) == 3
    frames = [json.loads(path.read_text()) for path in outputs]
    assert all("objects" in frame and frame["num_prompts"] == 9 for frame in frames)


def test_cli_skips_unreadable_files_in_a_folder_and_says_so(tmp_path, checkpoint, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    assert main([str(folder), "--checkpoint", str(checkpoint), "--grid", "2", "--out", str(tmp_path / "out"),
                 *LOOSE]) == 1
    assert "broken.jpg: not a readable image" in capsys.readouterr().err
    assert (tmp_path / "out" / "good.json").is_file()


def test_cli_reports_bad_inputs_clearly(tmp_path, checkpoint, capsys, monkeypatch):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    assert main([str(tmp_path / "rgb.png"), "--checkpoint", "nowhere.pt", "--device", "cpu"]) == 2
    assert "no model checkpoint found" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.png"), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 2
    assert "no such image" in capsys.readouterr().err
    assert main([str(tmp_path / "rgb.png"), "--depth", "d.png", "--checkpoint", str(checkpoint)]) == 2
    assert "--intrinsics" in capsys.readouterr().err
    assert main([str(tmp_path / "rgb.png"), "--set", "grid_size", "--checkpoint", str(checkpoint)]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    monkeypatch.setattr(cli, "BUNDLED_CHECKPOINT", tmp_path / "not_shipped.pt")
    assert main(["--device", "cpu"]) == 2  # no IMAGE: the sample recording with the shipped model
    assert "small model shipped with sam_ros" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["coco_rle", "uncompressed_rle", "binary_mask"])
def test_cli_output_modes_give_the_same_masks(tmp_path, checkpoint, mode):
    scene = render(sample_scene(np.random.default_rng(1)), Intrinsics.default(160, 120))
    Image.fromarray(scene.rgb).save(tmp_path / "rgb.png")
    out = tmp_path / mode
    assert main([str(tmp_path / "rgb.png"), "--checkpoint", str(checkpoint), "--grid", "4", "--out", str(out),
                  "--output-mode", mode, *LOOSE]) == 0
    records = json.loads((out / "rgb.json").read_text())["masks"]
    assert records
    for record in records:
        segmentation = record["segmentation"]
        if mode == "coco_rle":
            mask = rle_to_mask(rle_from_string(segmentation["counts"]), 120, 160)
        elif mode == "uncompressed_rle":
            counts = segmentation["counts"]
            assert sum(counts) == 120 * 160
            mask = np.repeat(np.arange(len(counts)) % 2 == 1, counts).reshape(160, 120).T  # column-major runs
        else:
            mask = np.array(Image.open(out / segmentation)) > 0
        assert mask.sum() == record["area"] and record["crop_box"] == [0, 0, 160, 120]
        x, y, w, h = record["bbox"]
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (x, y, w, h)
