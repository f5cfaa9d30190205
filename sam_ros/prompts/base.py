"""The prompt-strategy interface.

A strategy sees the encoded image and a ``decode`` function that runs one batched decoder pass over
point prompts. A grid calls it once; AoP calls it twice (confident prompts first, then the prompts
its elimination step did not drop). Filtering and NMS across all batches stay in the pipeline.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch

from ..datatypes import EncodedImage, MaskBatch
from ..filters import masks_to_boxes, nms

__all__ = ["EncodedImage", "MaskBatch", "PromptStrategy", "at_points", "distinct_cover"]


class PromptStrategy(ABC):
    @abstractmethod
    def propose(self, encoded: EncodedImage, decode: Callable[[torch.Tensor], MaskBatch]) -> MaskBatch:
        """Choose point prompts (N, 2) in frame pixels (x, y), decode them, and return the masks."""


def distinct_cover(logits: torch.Tensor, iou: torch.Tensor, mask_threshold: float, nms_thresh: float) -> torch.Tensor:
    """(s, s) int32: how many of the masks (M, s, s low-res logits) cover each cell, counting only those that
    survive box NMS at ``nms_thresh`` (a larger candidate the pipeline would drop for a better one explains
    nothing)."""
    if len(logits) == 0:
        return torch.zeros(logits.shape[1:], dtype=torch.int32, device=logits.device)
    masks = logits > mask_threshold
    return masks[nms(masks_to_boxes(masks), iou, nms_thresh)].sum(0, dtype=torch.int32)


def at_points(cells: torch.Tensor, points: torch.Tensor, encoded: EncodedImage) -> torch.Tensor:
    """The values of a cell map over the model input ((..., s, s): low-res masks, an embedding) under frame-pixel
    ``points`` (N, 2): (..., N)."""
    xy = (encoded.to_input(points.float().to(cells.device)) * (cells.shape[-1] / encoded.image.shape[-1])).long()
    return cells[..., xy[:, 1].clamp(0, cells.shape[-2] - 1), xy[:, 0].clamp(0, cells.shape[-1] - 1)]
