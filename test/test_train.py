import dataclasses
import json

import numpy as np
import torch

from sam_ros.model import TINY, build_sam, load_sam, save_checkpoint
from sam_ros.synthetic import FLOOR_ID, render, sample_scene
from sam_ros.train.data import Recipe, make_sample, pick_segment, random_intrinsics, segment_targets
from sam_ros.train.train_sam import batch_loss, learning_rate, main


def _losses(seed: int, steps: int) -> list[float]:
    torch.manual_seed(seed)
    model = build_sam(TINY).train()
    samples = [make_sample(np.random.default_rng(seed + i), TINY.img_size, model.pixel_mean, model.pixel_std)
               for i in range(2)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(steps):
        loss, _ = batch_loss(model, samples)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_samples_are_deterministic_and_prompts_lie_inside_their_targets():
    model = build_sam(TINY)
    a = make_sample(np.random.default_rng(3), TINY.img_size, model.pixel_mean, model.pixel_std)
    b = make_sample(np.random.default_rng(3), TINY.img_size, model.pixel_mean, model.pixel_std)
    assert torch.equal(a.image, b.image) and torch.equal(a.points, b.points) and torch.equal(a.targets, b.targets)
    cells = (a.points // 4).long()
    inside = [a.targets[i, y, x] > 0 for i, (x, y) in enumerate(cells.tolist())]
    assert sum(inside) >= len(inside) - 1  # a point on a thin rim may fall in a cell that is mostly outside


def test_training_steps_reduce_the_loss_deterministically():
    losses = _losses(0, 10)
    assert losses[-1] < 0.8 * losses[0]
    assert _losses(0, 3) == losses[:3]


def test_learning_rate_warms_up_then_decays_to_zero():
    rates = [learning_rate(step, 1000, 1e-3, warmup=100) for step in range(1000)]
    assert rates[0] < rates[50] < rates[99] == 1e-3
    assert rates[100] > rates[500] > rates[999] >= 0 and rates[999] < 1e-6


def test_training_command_writes_a_loadable_checkpoint_and_report(tmp_path):
    out = tmp_path / "tiny.pt"
    main(["--out", str(out), "--steps", "2", "--batch", "1", "--prompts", "2", "--eval-scenes", "1", "--threads", "1"])
    model, config = load_sam(out)
    assert config == TINY
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["training"]["steps"] == 2 and report["evaluation"]["classic"]["scenes"] == 1
    assert 0.0 <= report["evaluation"]["classic"]["single_point_miou"] <= 1.0


def test_fine_tuning_at_another_input_size_keeps_the_weights_and_records_the_size(tmp_path):
    """--img-size: the init checkpoint's weights, unchanged, in a model of the new input size; the file says so."""
    start, tuned = tmp_path / "start.pt", tmp_path / "tuned.pt"
    torch.manual_seed(0)
    save_checkpoint(start, build_sam(TINY), TINY)
    main(["--init", str(start), "--img-size", "320", "--out", str(tuned), "--steps", "1", "--lr", "0", "--batch", "1",
          "--prompts", "2", "--eval-scenes", "1", "--threads", "1"])
    model, config = load_sam(tuned)
    assert config == dataclasses.replace(TINY, img_size=320) and model.img_size == 320
    assert model.image_encoder(torch.zeros(1, 3, 320, 320)).shape[-1] == config.embedding_size == 20
    before = dict(load_sam(start)[0].named_parameters())
    assert all(torch.equal(before[k], v) for k, v in model.named_parameters())  # lr 0: not a weight moved
    assert json.loads(tuned.with_suffix(".json").read_text())["training"]["img_size"] == 320


def _rich_scene_with_shadow(width: int = 128):
    """A rich scene rendered small whose floor or walls carry a cast shadow."""
    for seed in range(20):
        scene = render(sample_scene(np.random.default_rng(seed), style="rich"), random_intrinsics(
            np.random.default_rng(seed), width))
        if (scene.shadowed & (scene.instances >= FLOOR_ID)).sum() >= 100:
            return scene
    raise AssertionError("no rich scene with a cast shadow among 20 seeds")


def test_segment_targets_are_the_rendered_instances_objects_first_class():
    scene = _rich_scene_with_shadow()
    masks, is_object = segment_targets(scene)
    # each target is exactly one instance of the renderer's id image, and objects are the objects' ids
    ids = [int(np.unique(scene.instances[m])[0]) for m in masks]
    assert all(len(np.unique(scene.instances[m])) == 1 for m in masks)
    assert [i < FLOOR_ID for i in ids] == is_object.tolist()
    assert set(i for i in ids if i < FLOOR_ID) <= {o.id for o in scene.objects}
    assert masks.sum(0).max() == 1  # disjoint


def test_shadow_prompts_land_in_shadow_and_ask_for_the_whole_surface():
    scene = _rich_scene_with_shadow()
    masks, is_object = segment_targets(scene)
    recipe = Recipe(object_fraction=0.0, shadow_prompts=1.0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        index, allowed = pick_segment(rng, masks, is_object, scene.shadowed, recipe)
        assert not is_object[index]
        assert allowed.any() and not (allowed & ~scene.shadowed).any() and not (allowed & ~masks[index]).any()
        assert masks[index].sum() > allowed.sum()  # the target is the surface, larger than its shadow


def test_rich_samples_with_camera_effects_are_deterministic():
    model = build_sam(TINY)
    recipe = Recipe(rich_fraction=1.0, camera_effects=True, colour_jitter=True, shadow_prompts=0.5)
    a, b = (make_sample(np.random.default_rng(4), TINY.img_size, model.pixel_mean, model.pixel_std, 8, recipe)
            for _ in range(2))
    assert torch.equal(a.image, b.image) and torch.equal(a.points, b.points) and torch.equal(a.targets, b.targets)
    assert a.targets.shape == (8, TINY.img_size // 4, TINY.img_size // 4) and a.targets.sum() > 0
