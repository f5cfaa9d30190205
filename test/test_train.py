import numpy as np
import torch

from sam_ros.model import TINY, build_sam, load_sam, save_checkpoint
from sam_ros.train.data import make_sample
from sam_ros.train.train_sam import sample_loss


def test_samples_are_deterministic_and_prompts_lie_inside_their_targets():
    model = build_sam(TINY)
    a = make_sample(np.random.default_rng(3), TINY.img_size, model.pixel_mean, model.pixel_std)
    b = make_sample(np.random.default_rng(3), TINY.img_size, model.pixel_mean, model.pixel_std)
    assert torch.equal(a.image, b.image) and torch.equal(a.points, b.points)
    cells = (a.points // 4).long()
    assert all(a.targets[i, y, x] > 0 for i, (x, y) in enumerate(cells.tolist()))


def test_training_steps_reduce_the_loss_on_a_fixed_batch(tmp_path):
    torch.manual_seed(0)
    model = build_sam(TINY).train()
    sample = make_sample(np.random.default_rng(0), TINY.img_size, model.pixel_mean, model.pixel_std)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss, _ = sample_loss(model, sample)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    save_checkpoint(tmp_path / "t.pt", model, TINY)
    assert load_sam(tmp_path / "t.pt")[1] == TINY
