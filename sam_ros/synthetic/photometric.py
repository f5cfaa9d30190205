"""Camera effects applied after rendering: defocus blur, exposure, sensor noise, JPEG.

Kept apart from the renderer so that training can draw them afresh per sample as augmentation
(``sample_photometric`` then ``apply_photometric``) while the geometry and ground truth stay fixed.
Both take their own generator, so a seed reproduces them exactly. Effects run in a camera's order:
optics (blur), sensor (exposure gain, gamma, noise), then compression (JPEG).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Photometric:
    """One draw of camera effects; the defaults change nothing."""

    blur_sigma: float = 0.0      # Gaussian blur of the whole image, pixels
    defocus_sigma: float = 0.0   # extra blur away from the focus distance (needs depth), pixels per dioptre
    focus_distance: float = 2.0  # metres
    exposure: float = 1.0        # linear gain
    gamma: float = 1.0           # output = input ** gamma (on 0..1)
    noise_sigma: float = 0.0     # Gaussian sensor noise, 0..255 units, stronger in the dark (shot noise)
    jpeg_quality: int = 0        # 0: no JPEG round trip


def sample_photometric(rng: np.random.Generator, blur_prob: float = 0.3, defocus_prob: float = 0.2,
                       noise_prob: float = 0.6, jpeg_prob: float = 0.6) -> Photometric:
    """Random effects of everyday robot cameras; each is present with its own probability."""
    return Photometric(
        blur_sigma=float(rng.uniform(0.3, 1.5)) if rng.random() < blur_prob else 0.0,
        defocus_sigma=float(rng.uniform(0.5, 3.0)) if rng.random() < defocus_prob else 0.0,
        focus_distance=float(rng.uniform(0.8, 4.0)),
        exposure=float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))),
        gamma=float(rng.uniform(0.8, 1.25)),
        noise_sigma=float(rng.uniform(1.0, 8.0)) if rng.random() < noise_prob else 0.0,
        jpeg_quality=int(rng.integers(30, 95)) if rng.random() < jpeg_prob else 0)


def apply_photometric(rgb: np.ndarray, effects: Photometric, rng: np.random.Generator,
                      depth: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 -> uint8 with ``effects``; defocus needs ``depth`` (metres, 0 = unknown)."""
    image = rgb
    if effects.blur_sigma > 0:
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(effects.blur_sigma)))
    if effects.defocus_sigma > 0 and depth is not None:
        image = _defocus(image, depth, effects.defocus_sigma, effects.focus_distance)
    linear = image.astype(np.float32) / 255.0
    linear = np.clip(linear * effects.exposure, 0.0, 1.0) ** effects.gamma
    if effects.noise_sigma > 0:
        # sensor noise: a read-noise floor plus shot noise that grows with the signal's square root
        sigma = effects.noise_sigma / 255.0 * (0.5 + 0.5 * np.sqrt(linear))
        linear = linear + rng.normal(0.0, 1.0, linear.shape).astype(np.float32) * sigma
    image = np.clip(np.round(linear * 255.0), 0, 255).astype(np.uint8)
    if effects.jpeg_quality > 0:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=effects.jpeg_quality)
        image = np.asarray(Image.open(buffer).convert("RGB"))
    return image


def _defocus(image: np.ndarray, depth: np.ndarray, sigma_per_dioptre: float, focus: float) -> np.ndarray:
    """Blend of a few blur levels picked per pixel by the thin-lens circle of confusion |1/z - 1/focus|."""
    with np.errstate(divide="ignore"):
        circle = np.where(depth > 0, np.abs(1.0 / np.maximum(depth, 1e-3) - 1.0 / focus), 0.0) * sigma_per_dioptre
    levels = np.array([0.0, 0.75, 1.5, 3.0, 6.0])
    stack = np.stack([image.astype(np.float32)] + [
        np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(float(s))), dtype=np.float32)
        for s in levels[1:]])
    position = np.interp(circle, levels, np.arange(len(levels)))
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(levels) - 1)
    weight = (position - low)[..., None].astype(np.float32)
    rows, cols = np.indices(depth.shape)
    blended = stack[low, rows, cols] * (1 - weight) + stack[high, rows, cols] * weight
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
