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
import dataclasses
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
from ..synthetic import Intrinsics, add_depth_noise, render, sample_scene
from .evaluate import interior_point

# Training scenes come from seeds below the held-out range of sam_ros.train.evaluate.
TRAINING_SEED = 500_000
# The PCM gets at least this many cells per side (the small model's 16x16 embedding is upsampled).
MIN_PCM_CELLS = 32


@dataclass
class TeacherData:
    """What the dense-grid teacher says about each image, in PCM cells over the padded model input."""

    embeddings: torch.Tensor      # (N, C, h, w) frozen encoder output
    prompts: list[torch.Tensor]   # per image (k, 2): the essential prompts (x, y)
    centres: list[torch.Tensor]   # per image (k, 2): the deepest point inside each essential prompt's mask
    size: int                     # PCM cells per side

    def targets(self, sigma: float, at: str = "prompts") -> torch.Tensor:
        """(N, S, S) prompt-confidence targets: Gaussians at the prompts (or their masks' centres)."""
        return torch.stack([gaussian_map(points, self.size, sigma) for points in getattr(self, at)])


def gaussian_map(cells: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """(size, size) map with a unit Gaussian at each point (x, y in cells); sigma in 64-grid cells."""
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    sigma_cells = sigma * size / REFERENCE_CELLS
    target = torch.zeros(size, size)
    for x, y in cells.tolist():
        gx = torch.exp(-0.5 * ((centres - x) / sigma_cells) ** 2)
        gy = torch.exp(-0.5 * ((centres - y) / sigma_cells) ** 2)
        target = torch.maximum(target, gy[:, None] * gx[None, :])
    return target


def to_cells(points: torch.Tensor, encoded: EncodedImage, size: int) -> torch.Tensor:
    """Frame pixels (x, y) -> cells of a size x size map over the padded model input."""
    return encoded.to_input(points.float().cpu().reshape(-1, 2)) * (size / encoded.image.shape[-1])


def pcm_size(segmenter: Segmenter) -> tuple[int, int]:
    """(cells per side, upscale factor) of the PCM for this model's embedding grid."""
    cells = segmenter.model.prompt_encoder.image_embedding_size[0]
    upscale = max(1, -(-MIN_PCM_CELLS // cells))
    return cells * upscale, upscale


@torch.inference_mode()
def teacher_data(teacher: Segmenter, frames: Iterable[tuple[np.ndarray, np.ndarray | None]],
                 total: int | None = None) -> TeacherData:
    """Embeddings and essential prompts from the dense-grid teacher (``teacher.config``: grid and filters),
    for frames of colour and aligned depth in metres (None: none; read only by a model with a depth input)."""
    size, _ = pcm_size(teacher)
    embeddings, prompts, centres = [], [], []
    for rgb, depth_m in tqdm(frames, total=total, desc="teacher", unit="image"):
        encoded = teacher.encode(rgb, depth_m)
        result = teacher.segment_encoded(encoded)
        embeddings.append(encoded.embedding[0].float().cpu())
        prompts.append(to_cells(result.points, encoded, size))
        interior = torch.tensor([interior_point(mask) for mask in result.masks.cpu().numpy()])
        centres.append(to_cells(interior, encoded, size))
    return TeacherData(torch.stack(embeddings), prompts, centres, size)


def predictor_loss(logits: torch.Tensor, target: torch.Tensor, peak_weight: float = 20.0) -> torch.Tensor:
    """MSE on the sigmoid map (the paper's loss), weighted up near the essential prompts: they are few."""
    return ((logits.sigmoid() - target) ** 2 * (1 + peak_weight * target)).mean()


def fit(predictor: PromptPredictor, embeddings: torch.Tensor, targets: torch.Tensor, epochs: int, lr: float,
        batch: int, seed: int, weight_decay: float = 1e-2, log_every: int = 10) -> list[dict]:
    """AdamW over the cached embeddings; the last 10% of images are held out, and the weights with the
    lowest held-out loss are the ones kept (a few hundred images are quickly memorised)."""
    generator = torch.Generator().manual_seed(seed)
    count = len(targets)
    held = max(1, count // 10) if count > 1 else 0
    train_idx, val_idx = torch.arange(count - held), torch.arange(count - held, count)
    optimizer = torch.optim.AdamW(predictor.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, epochs))
    log, best = [], (float("inf"), None)
    for epoch in range(epochs):
        predictor.train()
        for chunk in train_idx[torch.randperm(len(train_idx), generator=generator)].split(batch):
            loss = predictor_loss(predictor(embeddings[chunk])[:, 0], targets[chunk])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
        predictor.eval()
        with torch.no_grad():
            val = (predictor_loss(predictor(embeddings[val_idx])[:, 0], targets[val_idx]).item()
                   if held else loss.item())
        if val < best[0]:
            best = (val, {k: v.clone() for k, v in predictor.state_dict().items()}, epoch)
        if epoch % log_every == 0 or epoch == epochs - 1:
            entry = {"epoch": epoch, "train_loss": round(loss.item(), 5), "val_loss": round(val, 5)}
            log.append(entry)
            print(json.dumps(entry), flush=True)
    predictor.load_state_dict(best[1])
    log.append({"kept_epoch": best[2], "val_loss": round(best[0], 5)})
    return log


def synthetic_frames(count: int, seed: int, width: int = 640, height: int = 480,
                     rich_fraction: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Rendered camera-size scenes (colour and sensor depth), disjoint from the held-out evaluation scenes;
    every scene whose index falls in the first ``rich_fraction`` of each ten is drawn in the rich style."""
    for index in range(count):
        scene_seed = TRAINING_SEED + seed * 100_000 + index
        rng = np.random.default_rng(scene_seed)
        spec = sample_scene(rng, style="rich") if index % 10 < round(10 * rich_fraction) else sample_scene(rng)
        scene = render(spec, Intrinsics.default(width, height))
        yield scene.rgb, add_depth_noise(scene.depth, np.random.default_rng([scene_seed, 1]))


def folder_frames(folder: Path) -> tuple[int, Iterator[tuple[np.ndarray, None]]]:
    """A folder's colour images (no depth)."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return len(paths), ((read_image(p), None) for p in paths)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="", help="the model ('bundled' = the shipped small model; "
                        "'' = $SAM_ROS_CHECKPOINT or ~/.cache/sam_ros/mobile_sam.pt)")
    parser.add_argument("--images", type=Path, help="folder of your camera's images (default: synthetic scenes)")
    parser.add_argument("--scenes", type=int, default=400, help="synthetic scenes when no --images")
    parser.add_argument("--rich-fraction", type=float, default=0.0,
                        help="share of the synthetic scenes drawn in the rich renderer style (the rest classic)")
    parser.add_argument("--out", type=Path, help="predictor file (default: <model>_aop.pt beside the model)")
    parser.add_argument("--config", help="YAML whose filters the teacher uses (e.g. config/sam_ros.yaml)")
    parser.add_argument("--teacher-grid", type=int, default=32, help="dense grid of the teacher")
    parser.add_argument("--sigma", type=float, default=2.0, help="target Gaussian sigma, 64-grid cells")
    parser.add_argument("--target", choices=("prompts", "centres"), default="prompts",
                        help="Gaussians at the essential grid prompts, or at the centres of their masks")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--cache", type=Path, help="teacher data file: written after the teacher pass, read "
                        "instead of it when present (to retrain the predictor without rerunning the teacher)")
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
    if args.cache and args.cache.is_file():
        data = TeacherData(**torch.load(args.cache, weights_only=True))
        total = len(data.embeddings)
    else:
        if args.images:
            total, frames = folder_frames(args.images)
        else:
            total, frames = args.scenes, synthetic_frames(args.scenes, args.seed, rich_fraction=args.rich_fraction)
        data = teacher_data(teacher, frames, total)
        if args.cache:
            torch.save(dataclasses.asdict(data), args.cache)
    teacher_minutes = (time.time() - start) / 60
    size, upscale = pcm_size(teacher)
    predictor = PromptPredictor(data.embeddings.shape[1], args.hidden, upscale)
    log = fit(predictor, data.embeddings, data.targets(args.sigma, args.target), args.epochs, args.lr, args.batch,
              args.seed)
    report = {"model": model_file.name, "images": total, "source": str(args.images or "synthetic"),
              "rich_fraction": None if args.images else args.rich_fraction,
              "teacher_grid": args.teacher_grid, "teacher_filters": {"pred_iou_thresh": config.pred_iou_thresh,
                                                                     "stability_thresh": config.stability_thresh,
                                                                     "nms_thresh": config.nms_thresh},
              "essential_prompts_per_image": round(float(np.mean([len(p) for p in data.prompts])), 2),
              "pcm_cells": size, "sigma": args.sigma, "target": args.target, "epochs": args.epochs, "seed": args.seed,
              "teacher_minutes": round(teacher_minutes, 2),
              "minutes": round((time.time() - start) / 60, 2), "final": log[-1]}
    save_predictor(out, predictor.cpu().eval(), training=report)
    out.with_suffix(".json").write_text(json.dumps({"training": report, "log": log}, indent=1) + "\n")
    print(f"wrote {out}: {json.dumps(report)}")


if __name__ == "__main__":
    main()
