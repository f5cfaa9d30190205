"""Issue 6's bar on held-out synthetic scenes: single interior point prompts and grid segment-everything.

Shared by the training script (its JSON report), ``bench/tiny_model_bench.py`` and the bundled-model
test, so all three measure the same thing. Scenes are rendered at camera resolution (640x480 by
default) and go through the runtime preprocessing, as a robot's frames would.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from ..config import SamRosConfig
from ..decode import decode_points
from ..filters import upsample_to_frame
from ..model import Sam
from ..pipeline import Segmenter
from ..synthetic import Intrinsics, add_depth_noise, RenderedScene, apply_photometric, render, sample_photometric, sample_scene

# Training draws every scene from one stream seeded with --seed (small integers); held-out scenes
# each get their own seed from this range, so the two never share a random stream.
HELD_OUT_SEED = 1_000_000
# Objects smaller than this (occluded, far away) are not counted: ~0.13% of a 640x480 frame.
MIN_OBJECT_PIXELS = 400


def held_out_scene(index: int, width: int = 640, height: int = 480, style: str = "classic") -> RenderedScene:
    """Held-out scene ``index`` of a renderer style: "classic" (the first renderer's look) or "rich"
    (the rich renderer's scenes through its camera effects: blur, defocus, exposure, noise, JPEG)."""
    rng = np.random.default_rng(HELD_OUT_SEED + index)
    if style == "classic":
        return render(sample_scene(rng), Intrinsics.default(width, height))
    scene = render(sample_scene(rng, style=style), Intrinsics.default(width, height))
    scene.rgb = apply_photometric(scene.rgb, sample_photometric(rng), rng, scene.depth)
    return scene


def held_out_depth(scene: RenderedScene, index: int) -> np.ndarray:
    """Scene ``index``'s depth as a sensor gives it (noise, edge dropouts, NaNs), from its own random stream."""
    return add_depth_noise(scene.depth, np.random.default_rng([HELD_OUT_SEED + index, 1]))


def object_masks(scene: RenderedScene, min_pixels: int = MIN_OBJECT_PIXELS) -> np.ndarray:
    """(N, H, W) bool masks of the objects visible with at least ``min_pixels`` pixels."""
    masks, _ = scene.masks()
    return masks[masks.sum(axis=(1, 2)) >= min_pixels]


def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """The pixel centre (x, y) deepest inside the mask: a point a user would click on the object."""
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), mask.shape)
    return float(x) + 0.5, float(y) + 0.5


def mask_iou(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """IoU of every predicted mask (K, H, W) with every true mask (N, H, W): (K, N)."""
    pred, truth = pred.flatten(1).float(), truth.flatten(1).float()
    inter = pred @ truth.T
    union = pred.sum(1)[:, None] + truth.sum(1)[None, :] - inter
    return inter / union.clamp(min=1)


def greedy_matched_iou(iou: torch.Tensor) -> torch.Tensor:
    """(N,) IoU of each true mask with its predicted mask under greedy one-to-one matching of (K, N) IoUs.

    The best remaining pair is matched first (the AoP-SAM paper's "greedy IoU"); an object left
    without a prediction scores 0, so missing objects and duplicate masks both cost.
    """
    matched = iou.new_zeros(iou.shape[1])
    iou = iou.clone()
    for _ in range(min(iou.shape)):
        best = int(torch.argmax(iou))
        pred, true = divmod(best, iou.shape[1])
        if iou[pred, true] <= 0:
            break
        matched[true] = iou[pred, true]
        iou[pred, :], iou[:, true] = -1, -1
    return matched


@dataclass
class PointScores:
    chosen_iou: list[float]   # the mask with the highest predicted IoU (what an application takes)
    oracle_iou: list[float]   # the best of the three masks against ground truth
    iou_error: list[float]    # |predicted IoU - actual IoU| over all three masks


@torch.inference_mode()
def single_point_scores(segmenter: Segmenter, scene: RenderedScene, truth: np.ndarray,
                        depth_m: np.ndarray | None = None) -> PointScores:
    """One positive point at each object's interior, three masks each, scored against ground truth."""
    if len(truth) == 0:
        return PointScores([], [], [])
    encoded = segmenter.encode(scene.rgb, depth_m)
    points = torch.tensor([interior_point(m) for m in truth])
    keep_all = -float("inf")
    batch = decode_points(segmenter.model, encoded, points, pred_iou_thresh=keep_all, stability_thresh=keep_all,
                          stability_offset=1.0, mask_threshold=0.0, max_memory_mb=1024)
    masks = upsample_to_frame(batch.logits, encoded.input_size, encoded.original_size, 0.0)
    actual = mask_iou(masks, torch.from_numpy(truth).to(masks.device)).reshape(len(truth), 3, len(truth))
    actual = actual[torch.arange(len(truth)), :, torch.arange(len(truth))].cpu()  # (N, 3) each vs its own object
    predicted = batch.iou.reshape(len(truth), 3).cpu()
    chosen = actual[torch.arange(len(truth)), predicted.argmax(1)]
    return PointScores(chosen.tolist(), actual.max(1).values.tolist(), (predicted - actual).abs().flatten().tolist())


@dataclass
class GridScores:
    objects: int
    found: int      # objects some kept mask overlaps with IoU >= 0.5
    masks: int      # masks the pipeline kept after filtering


@torch.inference_mode()
def grid_scores(segmenter: Segmenter, scene: RenderedScene, truth: np.ndarray,
                depth_m: np.ndarray | None = None) -> GridScores:
    """Segment everything with the real pipeline and count the ground-truth objects it recovers."""
    result = segmenter.segment(scene.rgb, depth_m)
    found = 0
    if len(result) and len(truth):
        found = int((mask_iou(result.masks, torch.from_numpy(truth).to(result.masks.device)).max(0).values >= 0.5)
                    .sum())
    return GridScores(len(truth), found, len(result))


def evaluate(model: Sam, scenes: int = 20, first: int = 0, grid_size: int = 16, width: int = 640,
             height: int = 480, config: SamRosConfig | None = None, style: str = "classic",
             with_depth: bool = True) -> dict:
    """The bar's numbers over held-out scenes ``first .. first + scenes - 1`` of renderer ``style``
    (default pipeline filters); a model with a depth input gets the sensor depth unless ``with_depth`` is off."""
    config = config or SamRosConfig(device="cpu", dtype="float32", grid_size=grid_size)
    segmenter = Segmenter(config, model=model)
    use_depth = with_depth and model.depth_input
    chosen, oracle, error, objects, found, masks = [], [], [], 0, 0, 0
    for index in range(first, first + scenes):
        scene = held_out_scene(index, width, height, style)
        truth = object_masks(scene)
        depth = held_out_depth(scene, index) if use_depth else None
        points = single_point_scores(segmenter, scene, truth, depth)
        chosen += points.chosen_iou
        oracle += points.oracle_iou
        error += points.iou_error
        grid = grid_scores(segmenter, scene, truth, depth)
        objects, found, masks = objects + grid.objects, found + grid.found, masks + grid.masks
    return {
        "style": style, "scenes": scenes, "depth": use_depth, "resolution": [width, height],
        "objects": objects,
        "single_point_miou": round(float(np.mean(chosen)), 4),
        "single_point_miou_best_of_3": round(float(np.mean(oracle)), 4),
        "predicted_iou_mae": round(float(np.mean(error)), 4),
        "grid_size": config.grid_size,
        "filters": {name: getattr(config, name) for name in ("pred_iou_thresh", "stability_thresh", "nms_thresh",
                                                             "min_area")},
        "grid_recall_at_0.5": round(found / max(objects, 1), 4),
        "masks_per_object": round(masks / max(objects, 1), 3),
    }
