"""Mask quality filters, boxes and NMS, all in torch on the masks' device.

Everything here runs on the decoder's low-resolution logits where it can, so that only the masks
that survive are ever upsampled to the camera's resolution.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """segment-anything's stability: |logits > t + offset| / |logits > t - offset| of ONE prediction.

    Computed here on the low-resolution (4h x 4w) logits, before any upsampling, which is what makes
    filtering early possible; the reference computes it after upsampling to the frame (the two agree to
    about 0.01 on real masks).
    """
    high = (logits > mask_threshold + offset).flatten(1).sum(1, dtype=torch.int32)
    low = (logits > mask_threshold - offset).flatten(1).sum(1, dtype=torch.int32)
    return torch.where(low > 0, high / low.clamp(min=1), torch.zeros_like(high, dtype=torch.float32))


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Boxes (K, 4) as x0, y0, x1, y1 with inclusive max pixel indices; (0, 0, 0, 0) for empty masks."""
    if masks.numel() == 0:
        return torch.zeros(masks.shape[0], 4, device=masks.device)
    h, w = masks.shape[-2:]
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    y1 = torch.where(rows, ys, -1).amax(1)
    y0 = torch.where(rows, ys, h).amin(1)
    x1 = torch.where(cols, xs, -1).amax(1)
    x0 = torch.where(cols, xs, w).amin(1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    empty = ~rows.any(1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes).float()


def box_iou(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU (K, K) of xyxy boxes, with torchvision's area convention (x1 - x0) * (y1 - y0)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    lt = torch.max(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area[:, None] + area[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS (torchvision.ops.nms semantics): indices of kept boxes, best score first."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[greedy_keep(box_iou(boxes[order].float()) > iou_threshold)]


def greedy_keep(conflicts: torch.Tensor) -> torch.Tensor:
    """Which items greedy suppression keeps, for items in priority order and their (N, N) conflicts.

    Solved as a fixed point instead of a Python loop over items: an item is kept iff no kept, earlier
    item conflicts with it. Iterating from "all kept" settles at least one more item per pass (in
    priority order), and in practice within a few passes. Passes past the fixed point change nothing,
    so convergence is checked only after blocks of 1, 2, 4, ... passes: on a GPU the host waits for
    the device O(log N) times at most (once, typically), not once per pass.
    """
    conflicts = conflicts.triu(diagonal=1)
    keep = torch.ones(conflicts.shape[0], dtype=torch.bool, device=conflicts.device)
    passes, block = 0, 1
    while passes < conflicts.shape[0]:
        for _ in range(block):
            previous, keep = keep, ~(conflicts & keep[:, None]).any(0)
        passes += block
        if torch.equal(previous, keep):
            break
        block *= 2
    return keep


def lowres_boxes_in_frame(masks: torch.Tensor, input_size: tuple[int, int],
                          original_size: tuple[int, int]) -> torch.Tensor:
    """Frame-pixel boxes of low-res masks (K, h, w) whose cells are 4x4 pixels of the resized model input."""
    cell = torch.tensor([4 * original_size[1] / input_size[1], 4 * original_size[0] / input_size[0]] * 2,
                        device=masks.device)
    edges = masks_to_boxes(masks) * cell
    edges[:, 2:] += cell[2:] - 1  # the far edge of the last cell, in frame pixels
    limit = torch.tensor([original_size[1] - 1, original_size[0] - 1] * 2, device=masks.device)
    return torch.minimum(edges, limit)


def touches_frame_edge(boxes: torch.Tensor, original_size: tuple[int, int], margin: float = 1.0) -> torch.Tensor:
    """Boxes whose extent reaches the border of the frame (often cut-off objects)."""
    h, w = original_size
    return ((boxes[:, 0] <= margin) | (boxes[:, 1] <= margin)
            | (boxes[:, 2] >= w - 1 - margin) | (boxes[:, 3] >= h - 1 - margin))


def upsample_to_frame(logits: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int],
                      mask_threshold: float, chunk: int = 32) -> torch.Tensor:
    """Binary masks (K, H, W) in frame pixels from low-res logits (K, s, s) over the padded input.

    One bilinear sampling straight from the low-res grid (the reference goes through the padded
    1024 square first); chunked so that memory stays bounded however many masks survive.
    """
    h_frame, w_frame = original_size
    lowres = logits.shape[-1]
    model_size = 4 * lowres
    device = logits.device
    # Frame pixel centre -> position in the padded model input -> normalised grid_sample coordinate.
    ys = ((torch.arange(h_frame, device=device) + 0.5) * (input_size[0] / h_frame)) / model_size * 2 - 1
    xs = ((torch.arange(w_frame, device=device) + 0.5) * (input_size[1] / w_frame)) / model_size * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).unsqueeze(0).to(logits.dtype)
    out = torch.empty(logits.shape[0], h_frame, w_frame, dtype=torch.bool, device=device)
    for start in range(0, logits.shape[0], chunk):
        part = logits[start:start + chunk].unsqueeze(1)
        sampled = F.grid_sample(part, grid.expand(part.shape[0], -1, -1, -1), mode="bilinear",
                                padding_mode="border", align_corners=False)
        out[start:start + chunk] = sampled[:, 0] > mask_threshold
    return out
