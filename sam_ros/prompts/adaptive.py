"""Adaptive grid density: a sparse grid first, then a dense grid only where the sparse masks fall short.

A dense point is decoded when the sparse pass left its cell uncovered (something the sparse grid
stepped over, often a small object) or when at least ``overlap`` distinct sparse masks cover it (a
cluttered region whose parts the sparse masks did not separate). Elsewhere the sparse masks already
explain the image and dense prompts would only repeat them. With crop layers or scales every view
does the same with its own masks (``needed_in_views``): a crop's dense points go where the crop's
sparse masks fall short, judged at the crop's zoom, where a small object spans several low-res cells
instead of one.
"""
from __future__ import annotations

import torch

from ..datatypes import EncodedImage, EncodedViews, MaskBatch
from .base import PromptStrategy, at_points, distinct_cover
from .grid import GridPrompts


def needs_dense(points: torch.Tensor, logits: torch.Tensor, iou: torch.Tensor, encoded: EncodedImage,
                overlap: int, mask_threshold: float = 0.0, nms_thresh: float = 0.7) -> torch.Tensor:
    """Which ``points`` (N, 2 frame pixels) fall where the masks (M, s, s low-res logits) leave the frame
    uncovered, or where ``overlap`` or more distinct masks (after box NMS at ``nms_thresh``) cover it; (N,) bool."""
    covered = at_points(distinct_cover(logits, iou, mask_threshold, nms_thresh), points, encoded)
    return (covered == 0) | (covered >= overlap)


def needed_in_views(points: torch.Tensor, point_views: torch.Tensor, sparse: MaskBatch, views: EncodedViews,
                    overlap: int, mask_threshold: float = 0.0, nms_thresh: float = 0.7) -> torch.Tensor:
    """``needs_dense`` per view: which ``points`` (N, 2 frame pixels, of views ``point_views``) the ``sparse``
    masks of their own view leave uncovered or crowded; (N,) bool."""
    needed = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    mask_views = sparse.views()
    for view in torch.unique(point_views).tolist():
        on = point_views == view
        own = torch.nonzero(mask_views == view).squeeze(1)
        needed[on] = needs_dense(points[on], sparse.logits[own], sparse.iou[own], views.views[view], overlap,
                                 mask_threshold, nms_thresh)
    return needed


class AdaptiveGridPrompts(PromptStrategy):
    """Grid prompts at two densities: ``sparse`` points per side everywhere, ``dense`` where needed."""

    def __init__(self, sparse: int, dense: int, overlap: int = 3, mask_threshold: float = 0.0,
                 nms_thresh: float = 0.7) -> None:
        self.sparse, self.dense = GridPrompts(sparse), GridPrompts(dense)
        self.overlap, self.mask_threshold, self.nms_thresh = overlap, mask_threshold, nms_thresh

    def needed(self, points: torch.Tensor, sparse: MaskBatch, encoded: EncodedImage) -> torch.Tensor:
        """Which ``points`` (N, 2 frame pixels) the ``sparse`` masks of the same view leave unexplained."""
        return needs_dense(points, sparse.logits, sparse.iou, encoded, self.overlap, self.mask_threshold,
                           self.nms_thresh)

    def needed_in_views(self, points: torch.Tensor, point_views: torch.Tensor, sparse: MaskBatch,
                        views: EncodedViews) -> torch.Tensor:
        """Which dense points of the other views (crops, scales) their own ``sparse`` masks leave unexplained."""
        return needed_in_views(points, point_views, sparse, views, self.overlap, self.mask_threshold, self.nms_thresh)

    def propose(self, encoded: EncodedImage, decode) -> MaskBatch:
        first = decode(self.sparse.points(encoded))
        candidates = self.dense.points(encoded)
        rest = candidates[self.needed(candidates, first, encoded)]
        if len(rest) == 0:
            return first
        return MaskBatch.cat([first, decode(rest)])
