"""Colour jitter of training images: the part of a camera's look that the renderer's effects leave out.

``sam_ros.synthetic.photometric`` draws blur, defocus, exposure, gamma, sensor noise and JPEG; a
renderer's scene still has one white balance, saturation and contrast per material set, and a model
trained on that learns those colours. Each change here is drawn independently per image. Geometry
is never touched: the masks stay exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ColourJitter:
    """Uniform ranges of each change (1 = unchanged)."""

    white_balance: float = 0.12               # per-channel gain in 1 +- this
    saturation: tuple[float, float] = (0.4, 1.3)
    contrast: tuple[float, float] = (0.7, 1.3)


def jitter_colour(rgb: np.ndarray, rng: np.random.Generator, spec: ColourJitter = ColourJitter()) -> np.ndarray:
    """A (H, W, 3) uint8 image with a random white balance, saturation and contrast (same shape and dtype)."""
    image = rgb.astype(np.float32) / 255.0
    image = image * rng.uniform(1 - spec.white_balance, 1 + spec.white_balance, 3).astype(np.float32)
    grey = image.mean(axis=2, keepdims=True)
    image = grey + (image - grey) * float(rng.uniform(*spec.saturation))
    image = image.mean() + (image - image.mean()) * float(rng.uniform(*spec.contrast))
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
