"""Training samples: rendered scenes with point prompts and the masks they should produce."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..image import preprocess, resized_shape
from ..synthetic import Intrinsics, render, sample_scene


@dataclass
class Sample:
    image: torch.Tensor    # (1, 3, S, S) normalised, padded model input
    points: torch.Tensor   # (P, 2) model-input pixels
    targets: torch.Tensor  # (P, S/4, S/4) float {0, 1} low-res target masks


def segment_targets(scene) -> tuple[np.ndarray, np.ndarray]:
    """Every segment a prompt can land on: each object, the floor and the wall (SAM segments those too)."""
    ids = np.unique(scene.labels[scene.surfaces == 0])
    masks = [scene.labels == i for i in ids if i > 0]
    masks += [scene.surfaces == s for s in (1, 2) if (scene.surfaces == s).any()]
    is_object = np.array([True] * (len(masks) - sum(s in scene.surfaces for s in (1, 2))) +
                         [False] * sum(s in scene.surfaces for s in (1, 2)))
    return np.stack(masks), is_object


def make_sample(rng: np.random.Generator, img_size: int, pixel_mean: torch.Tensor, pixel_std: torch.Tensor,
                prompts: int = 8, object_fraction: float = 0.75) -> Sample:
    """One rendered scene at the model's resolution, with prompts drawn inside its segments."""
    width = img_size
    height = int(round(img_size * 3 / 4))
    scene = render(sample_scene(rng), Intrinsics.default(width, height))
    masks, is_object = segment_targets(scene)
    image, (h, w) = preprocess(scene.rgb, img_size, pixel_mean, pixel_std, "cpu", torch.float32)
    assert (h, w) == resized_shape(height, width, img_size)
    objects, others = np.flatnonzero(is_object), np.flatnonzero(~is_object)
    chosen = []
    for _ in range(prompts):
        pool = objects if (len(objects) and (rng.random() < object_fraction or not len(others))) else others
        chosen.append(int(rng.choice(pool)))
    points, targets = [], []
    for index in chosen:
        ys, xs = np.nonzero(masks[index])
        k = int(rng.integers(len(ys)))
        points.append((xs[k] + 0.5, ys[k] + 0.5))
        padded = np.zeros((img_size, img_size), np.float32)
        padded[:height, :width] = masks[index]
        targets.append(padded)
    target = torch.from_numpy(np.stack(targets))[:, None]
    low = img_size // 4
    target = F.interpolate(target, size=(low, low), mode="area")[:, 0]
    return Sample(image, torch.tensor(points, dtype=torch.float32), (target > 0.5).float())
