"""Debug overlay: masks coloured over the frame, with outlines, the same colour per object id."""
from __future__ import annotations

import numpy as np
import torch


def id_colours(ids: np.ndarray) -> np.ndarray:
    """A stable, well-spread RGB colour per integer id (golden-ratio hues)."""
    hue = (np.asarray(ids, dtype=np.float64) * 0.618033988749895) % 1.0
    k = (np.array([5.0, 3.0, 1.0]) + hue[:, None] * 6.0) % 6.0
    return (255 * (1 - 0.75 * np.clip(np.minimum(k, 4 - k), 0, 1))).astype(np.uint8)


def overlay(rgb: np.ndarray, labels: torch.Tensor | np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``rgb`` with each labelled region (label image, 0 = none) tinted by its id's colour and outlined."""
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    ids = np.unique(labels[labels > 0])
    out = rgb.astype(np.float32)
    if ids.size == 0:
        return rgb.copy()
    palette = np.zeros((int(ids.max()) + 1, 3), np.float32)
    palette[ids] = id_colours(ids)
    inside = labels > 0
    out[inside] = (1 - alpha) * out[inside] + alpha * palette[labels[inside]]
    edge = np.zeros_like(inside)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge &= inside
    out[edge] = palette[labels[edge]] * 0.6
    return out.astype(np.uint8)
