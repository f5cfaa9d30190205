"""The small model's optional depth input: the channel it reads, a colour model widened to take it, and
the pipeline and training paths that feed it."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from sam_ros.camera import PinholeCamera
from sam_ros.config import SamRosConfig
from sam_ros.image import DEPTH_CLIP, DEPTH_LOG_UNIT, depth_channel
from sam_ros.model import TINY, build_sam, load_sam, save_checkpoint, with_depth_input
from sam_ros.pipeline import Segmenter
from sam_ros.scene.fusion import depth_to_metres
from sam_ros.synthetic import Intrinsics, render, sample_scene, to_16uc1_mm
from sam_ros.train.data import Recipe, make_sample
from sam_ros.train.train_sam import batch_loss, main

DEPTH_TINY = dataclasses.replace(TINY, depth_input=True)


def _plain_channel(depth: np.ndarray, block: int, img_size: int) -> np.ndarray:
    """The depth channel by loops: log depth averaged over valid pixels of each block x block cell (valid
    when at least half are), minus the median over valid cells, in DEPTH_LOG_UNIT, clipped, 0 elsewhere."""
    rows, cols = depth.shape[0] // block, depth.shape[1] // block
    cells, valid = np.zeros((rows, cols)), np.zeros((rows, cols), bool)
    for r in range(rows):
        for c in range(cols):
            values = [np.log(v) for v in depth[r * block:(r + 1) * block, c * block:(c + 1) * block].ravel()
                      if np.isfinite(v) and v > 0]
            if len(values) >= block * block / 2:
                cells[r, c], valid[r, c] = np.mean(values), True
    middle = np.sort(cells[valid])[(valid.sum() - 1) // 2]  # torch's median: the lower of the two middles
    out = np.zeros((img_size, img_size))
    out[:rows, :cols] = np.where(valid, np.clip((cells - middle) / DEPTH_LOG_UNIT, -DEPTH_CLIP, DEPTH_CLIP), 0)
    return out


def _noisy_depth(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    depth = rng.uniform(0.3, 8.0, (height, width)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = 0.0
    depth[rng.random(depth.shape) < 0.05] = np.nan
    return depth


@pytest.mark.parametrize("block", [1, 2, 4])
def test_depth_channel_matches_a_plain_loop(block):
    rng = np.random.default_rng(block)
    depth = _noisy_depth(rng, 12 * block, 16 * block)
    channel = depth_channel(depth, None, (12, 16), 32, "cpu")
    assert channel.shape == (1, 1, 32, 32)
    np.testing.assert_allclose(channel[0, 0].numpy(), _plain_channel(depth, block, 32), atol=1e-5)


def test_a_view_reads_its_own_crop_and_no_depth_is_zeros():
    depth = _noisy_depth(np.random.default_rng(0), 40, 60)
    box = (20, 8, 44, 32)
    torch.testing.assert_close(depth_channel(depth, box, (12, 12), 16, "cpu"),
                               depth_channel(depth[8:32, 20:44], None, (12, 12), 16, "cpu"))
    assert not depth_channel(None, None, (12, 16), 16, "cpu").any()
    assert not depth_channel(np.zeros((12, 16), np.float32), None, (12, 16), 16, "cpu").any()  # all invalid


def test_a_widened_model_answers_as_the_colour_model_until_trained():
    torch.manual_seed(0)
    colour = build_sam(TINY)
    widened, config = with_depth_input(colour, TINY)
    assert config == DEPTH_TINY and widened.depth_input and not colour.depth_input
    image, depth = torch.randn(2, 3, 256, 256), torch.randn(2, 1, 256, 256)
    with torch.no_grad():
        expected = colour.image_encoder(image)
        torch.testing.assert_close(widened.image_encoder(torch.cat([image, depth], 1)), expected)
        widened.image_encoder.patch_embed.seq[0].c.weight[:, 3].fill_(0.1)  # once it uses depth, depth matters
        assert not torch.allclose(widened.image_encoder(torch.cat([image, depth], 1)), expected)
    assert with_depth_input(widened, config)[0] is widened


def test_a_depth_checkpoint_round_trips(tmp_path):
    torch.manual_seed(1)
    model = build_sam(DEPTH_TINY)
    save_checkpoint(tmp_path / "d.pt", model, DEPTH_TINY)
    loaded, config = load_sam(tmp_path / "d.pt")
    assert config == DEPTH_TINY and loaded.depth_input
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


@pytest.fixture(scope="module")
def scene():
    return render(sample_scene(np.random.default_rng(5)), Intrinsics.default(160, 120))


def _depth_segmenter(**overrides) -> Segmenter:
    torch.manual_seed(2)
    model = build_sam(DEPTH_TINY)
    with torch.no_grad():
        model.image_encoder.patch_embed.seq[0].c.weight[:, 3].normal_(0, 0.5)  # depth changes the answer
    config = SamRosConfig(device="cpu", dtype="float32", grid_size=4, pred_iou_thresh=0.0, stability_thresh=0.0,
                          min_area=0, **overrides)
    return Segmenter(config, model=model)


def test_the_encoder_gets_the_depth_channel_of_each_view(scene):
    segmenter = _depth_segmenter()
    encoded = segmenter.encode(scene.rgb, scene.depth)
    torch.testing.assert_close(encoded.image[:, 3:], depth_channel(scene.depth, None, encoded.input_size, 256, "cpu"))
    assert encoded.image[:, 3].any() and not segmenter.encode(scene.rgb).image[:, 3].any()
    views = _depth_segmenter(crop_n_layers=1).encode_views(scene.rgb, depth_m=scene.depth)
    assert len(views.views) == 5
    for view in views.views:
        torch.testing.assert_close(view.image[:, 3:], depth_channel(scene.depth, view.box, view.input_size, 256, "cpu"))


def test_run_segments_with_the_depth_it_fuses(scene):
    """run() converts the driver's 16UC1 depth once and the encoder reads it: its masks are segment()'s
    with that depth, and differ from colour alone (the depth weights are not zero here)."""
    segmenter = _depth_segmenter()
    depth_mm = to_16uc1_mm(scene.depth)
    frame = segmenter.run(scene.rgb, depth_mm, PinholeCamera(160, 120, scene.intrinsics.K))
    config = segmenter.config
    with_depth = segmenter.segment(scene.rgb, depth_to_metres(depth_mm, config.depth_scale, config.min_depth,
                                                              config.max_depth))
    assert len(with_depth) > 0 and torch.equal(frame.segmentation.masks, with_depth.masks)
    colour_only = segmenter.segment(scene.rgb)
    assert len(colour_only) != len(with_depth) or not torch.equal(colour_only.masks, with_depth.masks)
    with pytest.raises(ValueError, match="size mismatch"):
        segmenter.segment(scene.rgb, scene.depth[:-1])


def test_training_samples_carry_sensor_depth_or_none():
    model = build_sam(DEPTH_TINY)
    args = (TINY.img_size, model.pixel_mean, model.pixel_std, 2)
    sample = make_sample(np.random.default_rng(0), *args, Recipe(depth=True, depth_dropout=0.0))
    assert sample.depth.shape == (1, 1, 256, 256) and torch.isfinite(sample.depth).all() and sample.depth.any()
    assert sample.model_input(True).shape == (1, 4, 256, 256) and torch.equal(sample.model_input(False), sample.image)
    dropped = make_sample(np.random.default_rng(0), *args, Recipe(depth=True, depth_dropout=1.0))
    assert not dropped.depth.any() and torch.equal(dropped.image, sample.image)
    colour = make_sample(np.random.default_rng(0), *args, Recipe())
    assert colour.depth is None and torch.equal(colour.image, sample.image)  # the colour recipe draws as before
    with pytest.raises(ValueError, match="depth"):
        batch_loss(model, [colour])
    loss, _ = batch_loss(model, [sample, dropped])
    assert torch.isfinite(loss)


def test_training_command_widens_a_colour_model(tmp_path):
    start, tuned = tmp_path / "start.pt", tmp_path / "tuned.pt"
    torch.manual_seed(0)
    save_checkpoint(start, build_sam(TINY), TINY)
    main(["--init", str(start), "--depth-input", "--out", str(tuned), "--steps", "1", "--lr", "0", "--batch", "1",
          "--prompts", "2", "--eval-scenes", "1", "--threads", "1"])
    model, config = load_sam(tuned)
    assert config == DEPTH_TINY and not model.image_encoder.patch_embed.seq[0].c.weight[:, 3].any()
    report = json.loads(tuned.with_suffix(".json").read_text())
    assert report["training"]["depth_input"] and report["evaluation"]["classic"]["depth"]
