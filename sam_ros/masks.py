"""Mask records as segment-anything's AMG returns them, COCO RLE, and instance label images."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class MaskRecord:
    """One mask of a segment-everything pass (the fields of segment-anything's AMG records)."""

    id: int
    segmentation: np.ndarray          # (H, W) bool
    bbox: tuple[int, int, int, int]   # x, y, width, height in frame pixels
    area: int
    predicted_iou: float
    stability_score: float
    point_coords: tuple[float, float]  # the point prompt, frame pixels (x, y)
    crop_box: tuple[int, int, int, int] | None = None  # x, y, width, height of the crop it came from


def rle_counts(masks: torch.Tensor) -> list[list[int]]:
    """Uncompressed COCO RLE counts of (K, H, W) bool masks: column-major runs, starting with zeros.

    Change points are found for all masks at once on the masks' device; only the short run lists
    reach the host.
    """
    k, h, w = masks.shape
    flat = masks.transpose(1, 2).reshape(k, h * w)
    if k == 0:
        return []
    change = torch.zeros(k, h * w + 1, dtype=torch.bool, device=masks.device)
    change[:, 0] = True
    change[:, -1] = True
    change[:, 1:-1] = flat[:, 1:] != flat[:, :-1]
    mask_index, position = torch.nonzero(change, as_tuple=True)
    position, mask_index = position.cpu().numpy(), mask_index.cpu().numpy()
    starts_with_one = flat[:, 0].cpu().numpy()
    splits = np.cumsum(np.bincount(mask_index, minlength=k))[:-1]
    out = []
    for runs, first in zip(np.split(position, splits), starts_with_one):
        counts = np.diff(runs).tolist()
        out.append(([0] + counts) if first else counts)
    return out


def rle_to_mask(counts: list[int], height: int, width: int) -> np.ndarray:
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(width, height).T


def rle_to_string(counts: list[int]) -> str:
    """COCO's compressed RLE string (pycocotools' rleToString), for compact JSON."""
    chars = []
    for i, x in enumerate(counts):
        x = int(x) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            chars.append(chr(c + 48 + (0x20 if more else 0)))
    return "".join(chars)


def rle_from_string(text: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = k = 0
        more = True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def label_image(masks: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Instance-id image (H, W) int32, 0 = no mask. Larger masks are painted first so small ones stay visible."""
    if masks.shape[0] == 0:
        return torch.zeros(masks.shape[1:], dtype=torch.int32, device=masks.device)
    order = torch.argsort(masks.flatten(1).sum(1), descending=True, stable=True)
    paint_rank = torch.arange(1, len(order) + 1, device=masks.device, dtype=torch.int16)
    top = (masks[order] * paint_rank[:, None, None]).amax(0).long()  # last painter wins, 0 = none
    lookup = torch.cat([torch.zeros(1, dtype=torch.int32, device=masks.device), ids.to(masks.device)[order].int()])
    return lookup[top]


def part_parents(masks: np.ndarray, groups: np.ndarray, containment: float) -> np.ndarray:
    """Part/whole hierarchy (segment-anything's image -> wholes -> parts): (N,) index of each mask's parent, -1.

    A mask is a part of a larger mask of the same group (objects, structure) that contains at least
    ``containment`` of its pixels; its parent is the smallest such mask, so the parents form a tree.
    Of two equal masks, the later (lower scoring) one is the part. ``masks`` is (N, H, W) or (N, P) bool.
    """
    n = masks.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    flat = masks.reshape(n, -1).astype(np.float32)
    overlap = flat @ flat.T
    area = np.diag(overlap).copy()
    order = np.arange(n)
    larger = (area[None, :] > area[:, None]) | ((area[None, :] == area[:, None]) & (order[None, :] < order[:, None]))
    contained = overlap >= containment * np.maximum(area[:, None], 1)
    candidate = contained & larger & (groups[:, None] == groups[None, :]) & (area[:, None] > 0)
    size = np.where(candidate, area[None, :], np.inf)
    return np.where(candidate.any(1), size.argmin(1), -1)
