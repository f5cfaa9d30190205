"""The overlay against a plain per-pixel loop: tint inside labels, darker outline on region borders."""
import numpy as np
import torch

from sam_ros.visualize import id_colours, overlay


def plain_overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    out = rgb.copy()
    height, width = labels.shape
    for y in range(height):
        for x in range(width):
            label = labels[y, x]
            if label <= 0:
                continue
            colour = id_colours(np.array([label]))[0].astype(np.float64)
            below = y + 1 < height and labels[y + 1, x] != label
            right = x + 1 < width and labels[y, x + 1] != label
            if below or right:
                out[y, x] = (colour * 0.6).astype(np.uint8)
            else:
                out[y, x] = np.round((1 - alpha) * rgb[y, x] + alpha * colour)
    return out


def test_overlay_matches_a_plain_loop():
    rng = np.random.default_rng(3)
    labels = np.zeros((30, 40), np.int32)
    for label in (3, 17, 1000):  # touching and overlapping regions, a large id
        y, x = rng.integers(0, 25), rng.integers(0, 35)
        labels[y:y + rng.integers(4, 15), x:x + rng.integers(4, 20)] = label
    labels[-3:, -5:] = 17  # a region at the frame's corner
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = overlay(rgb, torch.from_numpy(labels), alpha=0.4)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert np.abs(out.astype(int) - plain_overlay(rgb, labels, 0.4).astype(int)).max() <= 1  # rounding


def test_overlay_without_labels_is_the_image():
    rgb = np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    out = overlay(rgb, np.zeros((8, 9), np.int32))
    assert np.array_equal(out, rgb) and out is not rgb
