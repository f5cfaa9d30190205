"""Train the small model of MobileSAM's architecture on synthetic RGB-D scenes (from scratch or fine-tuning).

    python -m sam_ros.train.train_sam --out base.pt --steps 5000 --seed 0          # 37.6 min on 2 CPU cores
    python -m sam_ros.train.train_sam --init base.pt --out sam_ros/data/sam_ros_tiny.pt \
        --steps 1500 --lr 5e-4 --seed 1                                             # + 12.5 min (classic only)
    # then two fine-tuning runs for every look, the second at a 384-px input: README, "Training the shipped small model"

Fine-tuning for scenes of every look (issue 14): ``--rich-fraction`` mixes the rich renderer's scenes
(photo textures, cast shadows, tables, stacking, camera roll) with classic ones so the classic look is
not forgotten, ``--camera-effects`` and ``--colour-jitter`` draw a camera's blur, noise, JPEG, exposure
and colour per image, and ``--shadow-prompts`` puts floor/wall prompts inside cast shadows (their
answer is the whole surface). ``--img-size`` fine-tunes at another input size: no weight depends on
it, and small objects need more than a 256-px input gives them (the shipped file: 384). On a shared
CPU use ``--threads 1``: two threads on an oversubscribed machine ran 14x slower (3.1 vs 44 steps/min
measured here).

SAM's recipe, reduced: point prompts inside ground-truth segments, three masks per prompt, a mask
loss on the best of the three, and MSE between predicted and actual IoU so that
``predicted_iou`` means what the pipeline's filters assume it means. Scenes are rendered on the fly
from the seed, so a run is reproducible: same seed and steps, same weights (on the same machine),
as long as ``--minutes`` (the time budget) does not end it first; the learning-rate schedule follows
whichever of steps or time runs out first, so a slow machine still gets an annealed model. SAM's
iterative re-prompting with mask inputs is left out: the pipeline only ever gives one point.
Writes the checkpoint (loadable by ``sam_ros.model.load_sam``) and, beside it, a JSON with the
training time and the held-out evaluation of ``sam_ros.train.evaluate``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from ..config import SamRosConfig
from ..model import BUNDLED_PARAMS, TINY, ModelConfig, Sam, build_sam, load_sam, save_checkpoint, with_depth_input
from .data import Recipe, Sample, make_sample
from .evaluate import evaluate


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


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(-2).mean(-1)


def lowres_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of thresholded logits with {0, 1} targets, per mask: the IoU head's regression target."""
    pred = (logits > 0).flatten(-2)
    target = target.flatten(-2) > 0.5
    return (pred & target).sum(-1) / (pred | target).sum(-1).clamp(min=1)


def batch_loss(model: Sam, samples: list[Sample], focal_weight: float = 0.0,
               bce_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss over all prompts of all images, and the IoU of each prompt's best mask (for logging).

    The images go through the encoder together (its BatchNorms see the whole batch); each image's
    prompts then go through the decoder in one call. SAM weighs focal to dice 20:1; from scratch on a
    CPU budget, BCE + dice (1:1) learns much faster, so that is the default and focal stays available.
    """
    device = model.pixel_mean.device
    embeddings = model.image_encoder(torch.cat([s.model_input(model.depth_input) for s in samples]).to(device))
    encoder = model.prompt_encoder
    dense_pe, no_mask = encoder.get_dense_pe(), encoder.dense_no_mask()
    losses, best_ious = [], []
    for embedding, sample in zip(embeddings, samples):
        points, targets = sample.points.to(device), sample.targets.to(device)
        labels = torch.ones(len(points), 1, dtype=torch.long, device=device)
        sparse = encoder.embed_points(points[:, None, :], labels)
        masks, iou_pred = model.mask_decoder(embedding[None], dense_pe, sparse, no_mask, True)
        target = targets[:, None].expand_as(masks)
        seg = focal_weight * focal_loss(masks, target) + bce_weight * bce_loss(masks, target) + dice_loss(masks, target)
        best = seg.argmin(dim=1)
        rows = torch.arange(len(best))
        with torch.no_grad():
            actual_iou = lowres_iou(masks, target)
        losses.append(seg[rows, best] + F.mse_loss(iou_pred, actual_iou, reduction="none").mean(1))
        best_ious.append(actual_iou[rows, best])
    return torch.cat(losses).mean(), torch.cat(best_ious)


def learning_rate(step: int, total: int, base: float, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to zero at ``total`` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def train(model: Sam, rng: np.random.Generator, steps: int, batch: int, prompts: int, lr: float,
          max_seconds: float = math.inf, log_every: int = 100, recipe: Recipe = Recipe(),
          checkpoint: Callable[[int], None] | None = None, checkpoint_every: int = 0) -> tuple[int, list[dict]]:
    """AdamW over freshly rendered scenes; returns the steps done and the log.

    ``checkpoint(steps_done)`` is called every ``checkpoint_every`` steps, so a run that is stopped
    still leaves a usable model.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    start, log, done = time.time(), [], 0
    for step in range(steps):
        if time.time() - start > max_seconds:
            break
        # Progress is steps done or time used, whichever is further, so a run cut short by its time
        # budget still ends its cosine schedule (such a run is not bit-reproducible; a step-bound one is).
        progress = max(step, int(steps * (time.time() - start) / max_seconds))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(progress, steps, lr)
        samples = [make_sample(rng, model.img_size, model.pixel_mean, model.pixel_std, prompts, recipe)
                   for _ in range(batch)]
        loss, best = batch_loss(model, samples)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        done = step + 1
        if step % log_every == 0 or done == steps:
            entry = {"step": step, "loss": round(loss.item(), 4), "best_mask_iou": round(best.mean().item(), 4),
                     "minutes": round((time.time() - start) / 60, 2)}
            log.append(entry)
            print(json.dumps(entry), flush=True)
        if checkpoint is not None and checkpoint_every and done % checkpoint_every == 0 and done < steps:
            checkpoint(done)
            model.train()
    return done, log


def resized(model: Sam, config: ModelConfig) -> Sam:
    """The same weights in a model of another input size (every weight is independent of it: convolutions,
    windowed attention with fixed windows, and Fourier positional encodings of normalised coordinates)."""
    other = build_sam(config)
    other.load_state_dict(model.state_dict())
    return other


def init_record(path: str | None) -> dict | None:
    """What a fine-tuning run started from: the file and that file's own training record."""
    if not path:
        return None
    stored = torch.load(path, map_location="cpu", weights_only=True)
    return {"file": Path(path).name, "training": stored.get("training")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file; its JSON report goes beside it")
    parser.add_argument("--steps", type=int, default=5000, help="optimizer steps (the LR schedule's length)")
    parser.add_argument("--minutes", type=float, default=55.0, help="safety stop: end early after this long")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--prompts", type=int, default=16, help="point prompts per image")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (training data is rendered on the CPU)")
    parser.add_argument("--log-every", type=int, default=100, help="steps between log lines")
    parser.add_argument("--init", help="start from this checkpoint's weights (fine-tuning) instead of from scratch")
    parser.add_argument("--img-size", type=int,
                        help="model input side (default: the --init checkpoint's, else the small model's 256); the "
                             "weights do not depend on it, so a model can be fine-tuned at a larger input")
    parser.add_argument("--rich-fraction", type=float, default=0.0,
                        help="share of training scenes drawn in the rich renderer style (the rest classic)")
    parser.add_argument("--camera-effects", action="store_true",
                        help="the renderer's random blur, defocus, exposure, gamma, sensor noise and JPEG per image")
    parser.add_argument("--colour-jitter", action="store_true",
                        help="random white balance, saturation and contrast per image")
    parser.add_argument("--shadow-prompts", type=float, default=0.0,
                        help="share of floor/wall/table prompts placed inside cast shadows (hard negatives)")
    parser.add_argument("--depth-input", action="store_true",
                        help="give the encoder the aligned depth as a fourth channel (a 3-channel --init gets zero "
                             "weights for it, so training starts from that model's answers)")
    parser.add_argument("--depth-dropout", type=float, default=0.2,
                        help="share of training images without depth (all zeros), so colour alone still works")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="also write <out>.partial.pt every this many steps (0: never)")
    parser.add_argument("--eval-scenes", type=int, default=30, help="held-out 640x480 scenes in the report")
    parser.add_argument("--eval-styles", nargs="+", default=["classic"], choices=("classic", "rich"),
                        help="renderer styles of the report's held-out scenes")
    parser.add_argument("--eval-params", type=Path, default=BUNDLED_PARAMS,
                        help="filter thresholds of the report's grid pipeline (the shipped model's operating point)")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model, config = load_sam(args.init) if args.init else (build_sam(TINY), TINY)
    if args.img_size and args.img_size != config.img_size:
        config = dataclasses.replace(config, img_size=args.img_size)
        model = resized(model, config)
    if args.depth_input:
        model, config = with_depth_input(model, config)
    model = model.float().to(args.device)
    recipe = Recipe(rich_fraction=args.rich_fraction, camera_effects=args.camera_effects,
                    colour_jitter=args.colour_jitter, shadow_prompts=args.shadow_prompts,
                    depth=config.depth_input, depth_dropout=args.depth_dropout)
    partial = args.out.with_suffix(".partial.pt")

    def save_partial(steps_done: int) -> None:
        save_checkpoint(partial, model.cpu().eval(), config, training={"steps": steps_done, "partial": True})
        model.to(args.device)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    steps, log = train(model, np.random.default_rng(args.seed), args.steps, args.batch, args.prompts, args.lr,
                       args.minutes * 60, args.log_every, recipe, save_partial, args.checkpoint_every)
    minutes = (time.time() - start) / 60
    model = model.cpu().eval()
    training = {"steps": steps, "scheduled_steps": args.steps, "ended_by": "steps" if steps == args.steps else "time",
                "batch": args.batch, "prompts": args.prompts, "lr": args.lr, "seed": args.seed,
                "rich_fraction": args.rich_fraction, "camera_effects": args.camera_effects,
                "colour_jitter": args.colour_jitter,
                "shadow_prompts": args.shadow_prompts, "depth_input": config.depth_input,
                "depth_dropout": args.depth_dropout if config.depth_input else None, "minutes": round(minutes, 1), "device": args.device,
                "img_size": config.img_size, "threads": args.threads, "torch": str(torch.__version__), "init": init_record(args.init)}
    eval_config = SamRosConfig.from_yaml(args.eval_params).replace(checkpoint="", device="cpu", dtype="float32")
    evaluation = {style: evaluate(model, scenes=args.eval_scenes, config=eval_config, style=style)
                  for style in args.eval_styles}
    save_checkpoint(args.out, model, config, training=training, evaluation=evaluation)
    args.out.with_suffix(".json").write_text(json.dumps({"training": training, "evaluation": evaluation,
                                                         "log": log}, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    print(json.dumps({"training": training, "evaluation": evaluation}))


if __name__ == "__main__":
    main()
