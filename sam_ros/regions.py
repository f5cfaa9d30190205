"""Small regions: holes filled and islands removed below an area (segment-anything's min_mask_region_area).

Runs on the host with OpenCV's connected components, on the masks that survived every other filter
only; the boxes of changed masks are recomputed and NMS is rerun, preferring unchanged masks, exactly
as segment-anything's ``postprocess_small_regions`` does.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .filters import masks_to_boxes, nms


def remove_small_regions(mask: np.ndarray, min_area: int, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode`` 'holes') or remove islands ('islands') smaller than ``min_area`` in a bool mask.

    Returns the mask and whether it changed. Removing islands never removes the whole mask: when every
    island is small the largest stays.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = (mask ^ holes).astype(np.uint8)  # holes: the background's components
    count, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(sizes < min_area) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        return np.isin(labels, np.concatenate([[0], small])), True  # label 0: the mask itself
    keep = np.setdiff1d(np.arange(1, count), small)
    if len(keep) == 0:
        keep = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, keep), True


def clean_small_regions(masks: torch.Tensor, min_area: int, nms_thresh: float
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masks (K, H, W) with small holes and islands removed; returns (masks, boxes, kept indices).

    Kept indices are in the input's order; a mask whose clean-up made it a duplicate of another
    (box IoU above ``nms_thresh``) is dropped, unchanged masks winning over changed ones.
    """
    if len(masks) == 0 or min_area <= 0:
        return masks, masks_to_boxes(masks), torch.arange(len(masks), device=masks.device)
    cleaned, unchanged = [], []
    for mask in masks.cpu().numpy():
        mask, filled = remove_small_regions(mask, min_area, "holes")
        mask, removed = remove_small_regions(mask, min_area, "islands")
        cleaned.append(mask)
        unchanged.append(not (filled or removed))
    cleaned = torch.from_numpy(np.stack(cleaned)).to(masks.device)
    boxes = masks_to_boxes(cleaned)
    scores = torch.tensor(unchanged, dtype=torch.float32, device=masks.device)
    keep = torch.sort(nms(boxes, scores, nms_thresh)).values
    return cleaned[keep], boxes[keep], keep
