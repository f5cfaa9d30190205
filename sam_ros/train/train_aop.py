"""Train the AoP prompt predictor for a model, self-supervised: the model's own dense grid is the teacher.

    python -m sam_ros.train.train_aop --checkpoint mobile_sam.pt --images my_robot_frames/
    python -m sam_ros.train.train_aop --checkpoint bundled --scenes 400   # the predictor sam_ros ships

No labels: every image goes through the segment-everything pipeline with a dense grid (32x32 by
default) and the configured filters; the grid points whose masks survive filtering and NMS are the
"essential prompts". Gaussians at those points are the prompt-confidence target, and the predictor
learns to reproduce it from the image embedding alone (weighted MSE, Adam). The encoder is frozen,
so embeddings are computed once and training is quick. Writes the predictor beside the model
(``mobile_sam.pt`` -> ``mobile_sam_aop.pt``), where ``aop_checkpoint: ''`` finds it.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..cli import IMAGE_SUFFIXES, read_image
from ..config import SamRosConfig
from ..model import resolve_checkpoint
from ..pipeline import Segmenter
from ..prompts import EncodedImage, PromptPredictor, predictor_beside, save_predictor
from ..prompts.aop import REFERENCE_CELLS
from ..synthetic import Intrinsics, render, sample_scene

# Training scenes come from seeds below the held-out range of sam_ros.train.evaluate.
TRAINING_SEED = 500_000
# The PCM gets at least this many cells per side (the small model's 16x16 embedding is upsampled).
MIN_PCM_CELLS = 32


@dataclass
class TeacherData:
    embeddings: torch.Tensor   # (N, C, h, w) frozen encoder output
    targets: torch.Tensor      # (N, S, S) prompt-confidence targets in [0, 1]
    prompts: list[int]         # essential prompts per image


def pcm_target(points: torch.Tensor, encoded: EncodedImage, size: int, sigma: float) -> torch.Tensor:
    """(size, size) map with a unit Gaussian at each point (frame pixels); sigma in 64-grid cells."""
    side = encoded.image.shape[-1]
    (h_in, w_in), (height, width) = encoded.input_size, encoded.original_size
    cells = points.float().cpu() * torch.tensor([w_in / width, h_in / height]) * (size / side)
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    sigma_cells = sigma * size / REFERENCE_CELLS
    target = torch.zeros(size, size)
    for x, y in cells.tolist():
        gx = torch.exp(-0.5 * ((centres - x) / sigma_cells) ** 2)
        gy = torch.exp(-0.5 * ((centres - y) / sigma_cells) ** 2)
        target = torch.maximum(target, gy[:, None] * gx[None, :])
    return target


def pcm_size(segmenter: Segmenter) -> tuple[int, int]:
    """(cells per side, upscale factor) of the PCM for this model's embedding grid."""
    cells = segmenter.model.prompt_encoder.image_embedding_size[0]
    upscale = max(1, -(-MIN_PCM_CELLS // cells))
    return cells * upscale, upscale


@torch.inference_mode()
def teacher_data(teacher: Segmenter, images: Iterable[np.ndarray], sigma: float, total: int | None = None
                 ) -> TeacherData:
    """Embeddings and PCM targets from the dense-grid teacher (``teacher.config`` sets grid and filters)."""
    size, _ = pcm_size(teacher)
    embeddings, targets, prompts = [], [], []
    for rgb in tqdm(images, total=total, desc="teacher", unit="image"):
        encoded = teacher.encode(rgb)
        essential = teacher.segment_encoded(encoded).points
        embeddings.append(encoded.embedding[0].float().cpu())
        targets.append(pcm_target(essential, encoded, size, sigma))
        prompts.append(len(essential))
    return TeacherData(torch.stack(embeddings), torch.stack(targets), prompts)


def predictor_loss(logits: torch.Tensor, target: torch.Tensor, peak_weight: float = 20.0) -> torch.Tensor:
    """MSE on the sigmoid map (the paper's loss), weighted up near the essential prompts: they are few."""
    return ((logits.sigmoid() - target) ** 2 * (1 + peak_weight * target)).mean()


def fit(predictor: PromptPredictor, data: TeacherData, epochs: int, lr: float, batch: int, seed: int,
        log_every: int = 50) -> list[dict]:
    """Adam over the cached embeddings; the last 10% of images are held out for the logged validation loss."""
    generator = torch.Generator().manual_seed(seed)
    count = len(data.targets)
    held = max(1, count // 10) if count > 1 else 0
    train_idx, val_idx = torch.arange(count - held), torch.arange(count - held, count)
    optimizer = torch.optim.Adam(predictor.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, epochs))
    log = []
    for epoch in range(epochs):
        predictor.train()
        for chunk in train_idx[torch.randperm(len(train_idx), generator=generator)].split(batch):
            loss = predictor_loss(predictor(data.embeddings[chunk])[:, 0], data.targets[chunk])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
        if epoch % log_every == 0 or epoch == epochs - 1:
            predictor.eval()
            with torch.no_grad():
                val = (predictor_loss(predictor(data.embeddings[val_idx])[:, 0], data.targets[val_idx]).item()
                       if held else float("nan"))
            entry = {"epoch": epoch, "train_loss": round(loss.item(), 5), "val_loss": round(val, 5)}
            log.append(entry)
            print(json.dumps(entry), flush=True)
    return log


def synthetic_images(count: int, seed: int, width: int = 640, height: int = 480) -> Iterator[np.ndarray]:
    """Rendered camera-size scenes, disjoint from the held-out evaluation scenes."""
    for index in range(count):
        scene = render(sample_scene(np.random.default_rng(TRAINING_SEED + seed * 100_000 + index)),
                       Intrinsics.default(width, height))
        yield scene.rgb


def folder_images(folder: Path) -> tuple[int, Iterator[np.ndarray]]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return len(paths), (read_image(p) for p in paths)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="", help="the model ('bundled' = the shipped small model; "
                        "'' = $SAM_ROS_CHECKPOINT or ~/.cache/sam_ros/mobile_sam.pt)")
    parser.add_argument("--images", type=Path, help="folder of your camera's images (default: synthetic scenes)")
    parser.add_argument("--scenes", type=int, default=400, help="synthetic scenes when no --images")
    parser.add_argument("--out", type=Path, help="predictor file (default: <model>_aop.pt beside the model)")
    parser.add_argument("--config", help="YAML whose filters the teacher uses (e.g. config/sam_ros.yaml)")
    parser.add_argument("--teacher-grid", type=int, default=32, help="dense grid of the teacher")
    parser.add_argument("--sigma", type=float, default=2.0, help="target Gaussian sigma, 64-grid cells")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=64, help="predictor channels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    base = SamRosConfig.from_yaml(args.config) if args.config else SamRosConfig()
    config = base.replace(checkpoint=args.checkpoint, device=args.device, prompt_mode="grid",
                          grid_size=args.teacher_grid)
    model_file = resolve_checkpoint(args.checkpoint or None)
    out = args.out or predictor_beside(model_file)
    teacher = Segmenter(config)
    start = time.time()
    if args.images:
        total, images = folder_images(args.images)
    else:
        total, images = args.scenes, synthetic_images(args.scenes, args.seed)
    data = teacher_data(teacher, images, args.sigma, total)
    teacher_minutes = (time.time() - start) / 60
    size, upscale = pcm_size(teacher)
    predictor = PromptPredictor(data.embeddings.shape[1], args.hidden, upscale)
    log = fit(predictor, data, args.epochs, args.lr, args.batch, args.seed)
    report = {"model": model_file.name, "images": total, "source": str(args.images or "synthetic"),
              "teacher_grid": args.teacher_grid, "teacher_filters": {"pred_iou_thresh": config.pred_iou_thresh,
                                                                     "stability_thresh": config.stability_thresh,
                                                                     "nms_thresh": config.nms_thresh},
              "essential_prompts_per_image": round(float(np.mean(data.prompts)), 2), "pcm_cells": size,
              "sigma": args.sigma, "epochs": args.epochs, "seed": args.seed,
              "teacher_minutes": round(teacher_minutes, 2),
              "minutes": round((time.time() - start) / 60, 2), "final": log[-1]}
    save_predictor(out, predictor.cpu().eval(), training=report)
    out.with_suffix(".json").write_text(json.dumps({"training": report, "log": log}, indent=1) + "\n")
    print(f"wrote {out}: {json.dumps(report)}")


if __name__ == "__main__":
    main()
