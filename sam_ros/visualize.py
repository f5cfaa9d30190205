"""Debug overlay: masks coloured over the frame, with outlines, the same colour per object id."""
from __future__ import annotations

import cv2
import numpy as np
import torch


def id_colours(ids: np.ndarray) -> np.ndarray:
    """A stable, well-spread RGB colour per integer id (golden-ratio hues)."""
    hue = (np.asarray(ids, dtype=np.float64) * 0.618033988749895) % 1.0
    k = (np.array([5.0, 3.0, 1.0]) + hue[:, None] * 6.0) % 6.0
    return (255 * (1 - 0.75 * np.clip(np.minimum(k, 4 - k), 0, 1))).astype(np.uint8)


def overlay(rgb: np.ndarray, labels: torch.Tensor | np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``rgb`` (uint8) with each labelled region (label image, 0 = none) tinted by its id's colour and outlined.

    Whole-frame uint8 passes (a palette lookup and one weighted sum) rather than float arithmetic on the
    labelled pixels: it runs on the host for every frame a subscriber sees, between two frames' inference."""
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    inside = labels > 0
    if not inside.any():
        return rgb.copy()
    ids = np.flatnonzero(np.bincount(labels[inside].ravel()))
    palette = np.zeros((int(ids.max()) + 1, 3), np.uint8)
    palette[ids] = id_colours(ids)
    outline_palette = (palette * 0.6).astype(np.uint8)
    rgb = np.ascontiguousarray(rgb)
    tinted = cv2.addWeighted(rgb, 1.0 - alpha, palette.take(np.maximum(labels, 0), axis=0), alpha, 0.0)
    out = cv2.copyTo(tinted, inside.astype(np.uint8), rgb.copy())
    edge = np.zeros_like(inside)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge &= inside
    out[edge] = outline_palette[labels[edge]]
    return out
