"""Depth noise like an active-stereo RGB-D camera's: z^2 noise, edge dropouts, flying pixels, NaNs."""
from __future__ import annotations

import numpy as np


def add_depth_noise(depth: np.ndarray, rng: np.random.Generator, sigma_at_1m: float = 0.002,
                    edge_dropout: float = 0.5, flying_pixels: float = 0.2, nan_fraction: float = 0.002,
                    edge_jump: float = 0.05) -> np.ndarray:
    """Noisy float32 metres: invalid pixels are 0 (dropouts) or NaN, as drivers deliver them.

    sigma grows with z^2 (stereo disparity error); at depth discontinuities some pixels drop out and
    some take a mix of the two sides (flying pixels), which is what robust fusion has to survive.
    """
    noisy = depth + rng.normal(0.0, 1.0, depth.shape) * sigma_at_1m * depth ** 2
    padded = np.pad(depth, 1, mode="edge")
    neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    jump = np.abs(neighbours - depth).max(0) > edge_jump
    far_side = neighbours.max(0)
    flying = jump & (rng.random(depth.shape) < flying_pixels)
    mix = rng.random(depth.shape)
    noisy = np.where(flying, depth * mix + far_side * (1 - mix), noisy)
    noisy = np.where(jump & ~flying & (rng.random(depth.shape) < edge_dropout), 0.0, noisy)
    noisy = np.where(rng.random(depth.shape) < nan_fraction, np.nan, noisy)
    return np.where(depth > 0, noisy, 0.0).astype(np.float32)


def to_16uc1_mm(depth_m: np.ndarray) -> np.ndarray:
    """16UC1 millimetres as RealSense drivers publish them: 0 marks invalid (including NaN)."""
    mm = np.nan_to_num(depth_m, nan=0.0) * 1000.0
    return np.clip(np.round(mm), 0, 65535).astype(np.uint16)
