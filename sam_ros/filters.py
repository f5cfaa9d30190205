"""Mask quality filters, boxes and NMS, all in torch on the masks' device.

Scores run on the decoder's low-resolution logits; boxes for NMS and the crop-edge filter are measured
on masks upsampled exactly as the reference upsamples them (box NMS between overlapping masks turns
on single pixels), but only the masks that survive are ever kept at the camera's resolution.
"""
from __future__ import annotations

import functools

import numpy as np
import torch


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


def grouped_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each group only (torchvision's batched_nms): kept indices, ordered by group, then best score first."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    order = order[torch.sort(groups[order], stable=True).indices]
    same = groups[order][:, None] == groups[order][None, :]
    return order[greedy_keep((box_iou(boxes[order].float()) > iou_threshold) & same)]


def near_crop_edge(boxes: torch.Tensor, crop_boxes: torch.Tensor, original_size: tuple[int, int],
                   atol: float = 20.0) -> torch.Tensor:
    """Masks whose box (frame pixels) lies within ``atol`` of an edge of their crop that is not a frame edge.

    Such a mask is likely cut off by the crop (segment-anything's ``is_box_near_crop_edge``); a larger
    view sees the whole object.
    """
    frame = boxes.new_tensor([0, 0, original_size[1], original_size[0]])
    near_crop = (boxes - crop_boxes).abs() <= atol
    near_frame = (boxes - frame).abs() <= atol
    return (near_crop & ~near_frame).any(1)


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

    The reference's two bilinear steps (low-res -> padded model square, unpad, -> frame) are linear and
    separable, so they are applied as one precomputed matrix per axis, ``rows @ logits @ cols^T``: the
    same masks as the reference without the model-size intermediate, as two dense matrix products
    (fast on any device); chunked so that memory stays bounded however many masks survive.
    """
    h_frame, w_frame = original_size
    lowres = logits.shape[-1]
    rows = _axis_matrix(lowres, 4 * lowres, input_size[0], h_frame, logits.device)
    cols_t = _axis_matrix(lowres, 4 * lowres, input_size[1], w_frame, logits.device).T.contiguous()
    out = torch.empty(logits.shape[0], h_frame, w_frame, dtype=torch.bool, device=logits.device)
    for start in range(0, logits.shape[0], chunk):
        out[start:start + chunk] = torch.matmul(rows, logits[start:start + chunk].float() @ cols_t) > mask_threshold
    return out


def upsampled_boxes(logits: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int],
                    mask_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (K, 4, inclusive; zeros when empty) and areas (K,) of ``upsample_to_frame``'s masks, each computed
    over its own window of the frame.

    Bilinear weights are non-negative and sum to one, so a frame pixel exceeds the threshold only if a low-res
    cell it is interpolated from does: outside the frame rows and columns that touch a mask's positive cells
    nothing is set. A candidate then costs its window's area, not the whole frame's (most are small). One
    loop step per mask: for the CPU; a GPU measures them all in one batched product.
    """
    h, w = original_size
    lowres = logits.shape[-1]
    rows = _axis_matrix(lowres, 4 * lowres, input_size[0], h)
    cols = _axis_matrix(lowres, 4 * lowres, input_size[1], w)
    row_reach, row_taps = _reach(rows)
    col_reach, col_taps = _reach(cols)
    positive = logits > mask_threshold
    positive &= torch.from_numpy((row_reach[0] >= 0)[:, None] & (col_reach[0] >= 0)[None, :])  # padding reaches no pixel
    has_rows, has_cols = positive.any(2).numpy(), positive.any(1).numpy()
    boxes, areas = np.zeros((len(logits), 4), np.float32), np.zeros(len(logits), np.float32)
    for k in np.nonzero(has_rows.any(1))[0]:
        (y0, y1), (a, b) = _window(has_rows[k], row_reach, row_taps)
        (x0, x1), (c, d) = _window(has_cols[k], col_reach, col_taps)
        left, cells, right = rows[y0:y1 + 1, a:b + 1], logits[k, a:b + 1, c:d + 1].float(), cols[x0:x1 + 1, c:d + 1].T
        # The window-sized product dominates; its inner size is the cells' width (left first) or height.
        values = left @ cells @ right if d - c <= b - a else left @ (cells @ right)
        mask = (values > mask_threshold).numpy()
        ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if ys.size:
            boxes[k] = (x0 + xs[0], y0 + ys[0], x0 + xs[-1], y0 + ys[-1])
            areas[k] = np.count_nonzero(mask)
    return torch.from_numpy(boxes), torch.from_numpy(areas)


def _reach(matrix: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For a resize matrix (frame, lowres): per low-res cell the first and last frame pixel it reaches (-1: none),
    and per frame pixel its first and last low-res tap."""
    nonzero = (matrix != 0).numpy()
    first_pixel = np.where(nonzero.any(0), nonzero.argmax(0), -1)
    last_pixel = np.where(nonzero.any(0), nonzero.shape[0] - 1 - nonzero[::-1].argmax(0), -1)
    first_tap = nonzero.argmax(1)
    last_tap = nonzero.shape[1] - 1 - nonzero[:, ::-1].argmax(1)
    return np.stack([first_pixel, last_pixel]), np.stack([first_tap, last_tap])


def _window(positive: np.ndarray, reach: np.ndarray, taps: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """Along one axis: the frame pixels that positive cells reach, and the low-res taps those pixels read."""
    cells = np.flatnonzero(positive)
    start, stop = int(reach[0, cells].min()), int(reach[1, cells].max())
    return (start, stop), (int(taps[0, start:stop + 1].min()), int(taps[1, start:stop + 1].max()))


def _linear_resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of torch's 1-D bilinear resize (align_corners=False)."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    low = src.floor().long().clamp(max=n_in - 1)
    high = (low + 1).clamp(max=n_in - 1)
    frac = src - low
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    matrix[torch.arange(n_out), low] += 1 - frac
    matrix[torch.arange(n_out), high] += frac
    return matrix


@functools.lru_cache(maxsize=32)
def _axis_matrix(lowres: int, model_size: int, valid: int, frame: int,
                 device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """(frame, lowres) along one axis: low-res -> model size, keep the first ``valid``, -> frame. Cached (read
    only): every frame asks for the same few, and building one costs milliseconds and a host-to-device copy."""
    return (_linear_resize_matrix(valid, frame) @ _linear_resize_matrix(lowres, model_size)[:valid]).float().to(device)
