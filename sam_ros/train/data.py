"""Training samples: rendered scenes with point prompts and the masks they should produce."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from ..image import preprocess
from ..synthetic import Intrinsics, RenderedScene, render, sample_scene

# Segments smaller than this (pixels at the rendered size) vanish at the decoder's 1/4 resolution.
MIN_SEGMENT_PIXELS = 30


@dataclass
class Sample:
    image: torch.Tensor    # (1, 3, S, S) normalised, padded model input
    points: torch.Tensor   # (P, 2) model-input pixels
    targets: torch.Tensor  # (P, S/4, S/4) float {0, 1} low-res target masks


def segment_targets(scene: RenderedScene) -> tuple[np.ndarray, np.ndarray]:
    """Every segment a prompt can land on, and which of them are objects.

    The floor and the wall are segments too (SAM segments them): a grid point on the floor should
    give the floor, not a fragment or nothing, so that the pipeline keeps one mask for it.
    """
    ids = [i for i in np.unique(scene.labels[scene.surfaces == 0]) if i > 0]
    masks = [scene.labels == i for i in ids] + [scene.surfaces == s for s in (1, 2)]
    is_object = np.arange(len(masks)) < len(ids)
    large = np.array([m.sum() >= MIN_SEGMENT_PIXELS for m in masks], bool)
    return np.stack(masks)[large], is_object[large]


def random_intrinsics(rng: np.random.Generator, width: int) -> Intrinsics:
    """``width`` at 4:3 (most cameras) or 16:9, with a focal length of +-20% around a D435's."""
    height = width * 3 // 4 if rng.random() < 0.75 else width * 9 // 16
    focal = 0.96 * width * float(rng.uniform(0.8, 1.2))
    return Intrinsics(width, height, focal, focal, (width - 1) / 2, (height - 1) / 2)


def render_like_a_camera(rng: np.random.Generator, img_size: int) -> tuple[RenderedScene, int]:
    """A scene and its render scale (1 or 2) relative to the model input.

    Camera frames (640x480) reach the model downscaled with antialiasing, so their textures are
    smooth; a scene rendered straight at the model's size is aliased instead (point-sampled
    textures). A quarter of the scenes are rendered at twice the size and downscaled like a camera
    frame, a quarter are blurred, the rest stay sharp: the model sees all three looks, for a third of
    the rendering cost of supersampling everything.
    """
    look = rng.random()
    scale = 2 if look < 0.25 else 1
    scene = render(sample_scene(rng, n_objects=(1, 7)), random_intrinsics(rng, img_size * scale))
    if look >= 0.75:
        sigma = float(rng.uniform(0.5, 1.0))
        scene.rgb = ndimage.gaussian_filter(scene.rgb, sigma=(sigma, sigma, 0))
    return scene, scale


def make_sample(rng: np.random.Generator, img_size: int, pixel_mean: torch.Tensor, pixel_std: torch.Tensor,
                prompts: int = 8, object_fraction: float = 0.75) -> Sample:
    """One rendered scene as the model sees it, with prompts drawn uniformly inside its segments.

    A prompt picks an object with probability ``object_fraction`` (each object equally likely, so
    small ones are not starved), else the floor or the wall.
    """
    scene, scale = render_like_a_camera(rng, img_size)
    masks, is_object = segment_targets(scene)
    image, _ = preprocess(scene.rgb, img_size, pixel_mean, pixel_std, "cpu", torch.float32)
    objects, others = np.flatnonzero(is_object), np.flatnonzero(~is_object)
    height, width = scene.labels.shape
    points, targets = [], []
    for _ in range(prompts):
        use_object = len(objects) and (rng.random() < object_fraction or not len(others))
        index = int(rng.choice(objects if use_object else others))
        ys, xs = np.nonzero(masks[index])
        k = int(rng.integers(len(ys)))
        points.append(((xs[k] + 0.5) / scale, (ys[k] + 0.5) / scale))
        padded = np.zeros((img_size * scale, img_size * scale), np.float32)
        padded[:height, :width] = masks[index]
        targets.append(padded)
    low = img_size // 4
    target = F.interpolate(torch.from_numpy(np.stack(targets))[:, None], size=(low, low), mode="area")[:, 0]
    return Sample(image, torch.tensor(points, dtype=torch.float32), (target > 0.5).float())
