"""Train the small model of MobileSAM's architecture on synthetic RGB-D scenes, from scratch.

    python -m sam_ros.train.train_sam --out sam_ros/data/sam_ros_tiny.pt --minutes 40 --seed 0

SAM's recipe, reduced: point prompts inside ground-truth segments, three masks per prompt, a mask
loss on the best of the three, and MSE between predicted and actual IoU so that
``predicted_iou`` means what the pipeline's filters assume it means. Scenes are rendered on the fly
from the seed, so runs are reproducible and data is unlimited.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..model import TINY, build_sam, save_checkpoint
from .data import make_sample


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per-mask sigmoid focal loss (mean over pixels)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma * (alpha * target + (1 - alpha) * (1 - target))
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = logits.sigmoid().flatten(-2)
    target = target.flatten(-2)
    return 1 - (2 * (prob * target).sum(-1) + 1) / (prob.sum(-1) + target.sum(-1) + 1)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred = (logits > 0).flatten(-2)
    target = target.flatten(-2) > 0.5
    return (pred & target).sum(-1) / (pred | target).sum(-1).clamp(min=1)


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(-2).mean(-1)


def sample_loss(model, sample, focal_weight: float = 0.0, bce_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of one image's prompts, and the IoU of the best mask of each prompt (for logging).

    SAM weighs focal to dice 20:1; from scratch on a CPU budget, BCE + dice (1:1) learns much faster,
    so that is the default and focal stays available.
    """
    embedding = model.image_encoder(sample.image)
    encoder = model.prompt_encoder
    sparse = encoder.embed_points(sample.points[:, None, :], torch.ones(len(sample.points), 1, dtype=torch.long))
    masks, iou_pred = model.mask_decoder(embedding, encoder.get_dense_pe(), sparse, encoder.dense_no_mask(), True)
    target = sample.targets[:, None].expand_as(masks)
    seg = focal_weight * focal_loss(masks, target) + bce_weight * bce_loss(masks, target) + dice_loss(masks, target)
    best = seg.argmin(dim=1)
    rows = torch.arange(len(best))
    with torch.no_grad():
        actual_iou = mask_iou(masks, target)
    loss = seg[rows, best].mean() + F.mse_loss(iou_pred, actual_iou)
    return loss, actual_iou[rows, best]


def learning_rate(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def evaluate(model, seed: int, scenes: int = 24) -> dict:
    """Single interior-point prompts on held-out scenes: mean IoU of the best of the three masks."""
    rng = np.random.default_rng(seed)
    ious = []
    model.eval()
    with torch.no_grad():
        for _ in range(scenes):
            sample = make_sample(rng, TINY.img_size, model.pixel_mean, model.pixel_std, prompts=8, object_fraction=1.0)
            _, best = sample_loss(model, sample)
            ious.append(best)
    model.train()
    ious = torch.cat(ious)
    return {"single_point_miou": round(float(ious.mean()), 4), "prompts": int(len(ious))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=40.0, help="training time budget")
    parser.add_argument("--steps", type=int, default=6000, help="schedule length (stops early at --minutes)")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    model = build_sam(TINY).to(args.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    start, log = time.time(), []
    step = 0
    for step in range(args.steps):
        if time.time() - start > args.minutes * 60:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr)
        losses, ious = [], []
        for _ in range(args.batch):
            loss, best = sample_loss(model, make_sample(rng, TINY.img_size, model.pixel_mean, model.pixel_std, prompts=16))
            losses.append(loss)
            ious.append(best)
        loss = torch.stack(losses).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 25 == 0:
            entry = {"step": step, "loss": round(loss.item(), 4), "miou": round(torch.cat(ious).mean().item(), 4),
                     "minutes": round((time.time() - start) / 60, 2)}
            log.append(entry)
            print(json.dumps(entry), flush=True)
    minutes = (time.time() - start) / 60
    model.eval()
    evaluation = evaluate(model, seed=10_000 + args.seed)
    report = {"steps": step + 1, "batch": args.batch, "minutes": round(minutes, 1), "device": args.device,
              "threads": args.threads, "seed": args.seed, **evaluation}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, model, TINY, training=report)
    args.out.with_suffix(".json").write_text(json.dumps({"training": report, "log": log}, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
