"""One frame as a batch of views: segment-anything's crop layers and multi-scale generation.

A view is a region of the frame (a crop box) resized to a long side inside the model's square input.
Crop layer i cuts the frame into 2^i x 2^i overlapping crops (segment-anything's ``generate_crop_boxes``);
a scale s > 1 tiles the frame with ceil(s) x ceil(s) overlapping crops of 1/s its size (objects look s
times larger to the encoder); a scale s < 1 shows the whole frame at s times the model's resolution.
All views are encoded in as few batched encoder calls as memory allows, and the prompts of all of them
go through one decoder pass; each mask keeps its view, so its geometry maps back to the frame here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .datatypes import EncodedImage, EncodedViews, MaskBatch
from .filters import lowres_boxes_in_frame, masks_to_boxes, upsample_to_frame, upsampled_boxes
from .prompts.grid import build_point_grid


@dataclass(frozen=True)
class ViewSpec:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, exclusive ends
    long_side: int                  # the view's longest side inside the model input
    layer: int                      # crop layer: which point grid it gets (0 = the whole frame's)


def crop_boxes(frame_size: tuple[int, int], n_layers: int, overlap_ratio: float) -> list[tuple[tuple, int]]:
    """segment-anything's crop boxes: the whole frame, then (2^i)^2 overlapping crops in layer i."""
    height, width = frame_size
    boxes = [((0, 0, width, height), 0)]
    for layer in range(1, n_layers + 1):
        per_side = 2 ** layer
        overlap = int(overlap_ratio * min(height, width) * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + width) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + height) / per_side)
        for i in range(per_side):          # x outer, y inner: segment-anything's order
            for j in range(per_side):
                x0, y0 = int((crop_w - overlap) * i), int((crop_h - overlap) * j)
                boxes.append(((x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)), layer))
    return boxes


def scale_views(frame_size: tuple[int, int], scales: tuple[float, ...], img_size: int) -> list[ViewSpec]:
    """Views for zoom factors other than 1 (which is the whole frame's own view)."""
    height, width = frame_size
    views = []
    for scale in scales:
        if scale < 1:
            views.append(ViewSpec((0, 0, width, height), max(1, round(scale * img_size)), 0))
        elif scale > 1:
            per_side = math.ceil(scale)
            tile_w, tile_h = max(1, round(width / scale)), max(1, round(height / scale))
            for i in range(per_side):
                for j in range(per_side):
                    x0 = round(i * (width - tile_w) / (per_side - 1))
                    y0 = round(j * (height - tile_h) / (per_side - 1))
                    views.append(ViewSpec((x0, y0, x0 + tile_w, y0 + tile_h), img_size, 0))
    return views


def view_specs(frame_size: tuple[int, int], img_size: int, crop_n_layers: int = 0,
               crop_overlap_ratio: float = 512 / 1500, scales: tuple[float, ...] = ()) -> list[ViewSpec]:
    """The whole frame first, then its crops, then its other scales."""
    views = [ViewSpec(box, img_size, layer) for box, layer in crop_boxes(frame_size, crop_n_layers, crop_overlap_ratio)]
    return views + scale_views(frame_size, scales, img_size)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[torch.Tensor]:
    """segment-anything's ``build_all_layer_point_grids``: layer i gets n / downscale^i points per side."""
    return [build_point_grid(max(1, int(n_per_side / downscale ** i))) for i in range(n_layers + 1)]


def load_point_grids(path: str | Path) -> list[torch.Tensor]:
    """Custom point grids from JSON: a list over crop layers of [[x, y], ...] in [0, 1] (x right, y down)."""
    try:
        data = json.loads(Path(path).read_text())
        grids = [torch.tensor(layer, dtype=torch.float64).reshape(-1, 2) for layer in data]
    except (OSError, ValueError, TypeError, RuntimeError) as error:
        raise ValueError(f"point_grids {path}: expected a JSON list of [[x, y], ...] per crop layer ({error})") from None
    if not grids or any(len(g) == 0 or not ((g >= 0) & (g <= 1)).all() for g in grids):
        raise ValueError(f"point_grids {path}: every layer needs at least one point, all within [0, 1]")
    return grids


def view_points(views: EncodedViews, grids: list[torch.Tensor], first: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The grid points of views ``first``.. in frame pixels (N, 2) and the view of each (N,)."""
    points, index = [], []
    for i in range(first, len(views)):
        grid = grids[min(views.layers[i], len(grids) - 1)]
        (h, w), box = views.views[i].view_size, views.views[i].box
        points.append(grid * torch.tensor([w, h], dtype=torch.float64) + torch.tensor(box[:2], dtype=torch.float64))
        index.append(torch.full((len(grid),), i, dtype=torch.long))
    device = views.embedding.device
    if not points:
        return torch.empty(0, 2, device=device), torch.empty(0, dtype=torch.long, device=device)
    return torch.cat(points).float().to(device), torch.cat(index).to(device)


def frame_boxes(batch: MaskBatch, views: EncodedViews, mask_threshold: float, chunk: int = 64
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact frame-pixel boxes (K, 4, inclusive) and areas (K,) of the masks as they will be upsampled.

    The masks are upsampled in chunks only to be measured and are not kept: box NMS and the crop-edge
    filter then decide on the same boxes as segment-anything's (a low-res cell is several frame pixels,
    enough to flip NMS between heavily overlapping masks).
    """
    boxes = torch.zeros(len(batch), 4, device=batch.logits.device)
    areas = torch.zeros(len(batch), device=batch.logits.device)
    mask_views = batch.views()
    for i, view in _present(views, mask_views):
        index = torch.nonzero(mask_views == i).squeeze(1)
        x0, y0 = view.box[:2]
        offset = boxes.new_tensor([x0, y0, x0, y0])
        if boxes.device.type == "cpu":  # per mask over its own window: most candidates are small
            view_boxes, view_areas = upsampled_boxes(batch.logits[index], view.input_size, view.view_size,
                                                     mask_threshold)
            boxes[index], areas[index] = view_boxes + offset, view_areas
            continue
        for start in range(0, len(index), chunk):
            part = index[start:start + chunk]
            masks = upsample_to_frame(batch.logits[part], view.input_size, view.view_size, mask_threshold)
            boxes[part] = masks_to_boxes(masks) + offset
            areas[part] = masks.flatten(1).sum(1).float()
    return boxes, areas


def lowres_boxes(batch: MaskBatch, views: EncodedViews, mask_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate frame-pixel boxes (K, 4) and areas (K,) from the low-res masks alone (cells of 2.5-5 px)."""
    lowres = batch.logits > mask_threshold
    boxes = torch.zeros(len(batch), 4, device=lowres.device)
    areas = torch.zeros(len(batch), device=lowres.device)
    mask_views = batch.views()
    for i, view in _present(views, mask_views):
        (h_in, w_in), (h, w) = view.input_size, view.view_size
        index = torch.nonzero(mask_views == i).squeeze(1)
        cells = lowres[index, :(h_in + 3) // 4, :(w_in + 3) // 4]
        x0, y0 = view.box[:2]
        boxes[index] = lowres_boxes_in_frame(cells, view.input_size, view.view_size) + boxes.new_tensor([x0, y0, x0, y0])
        areas[index] = cells.flatten(1).sum(1) * (16 * h * w / (h_in * w_in))
    return boxes, areas


def upsample_views(batch: MaskBatch, views: EncodedViews, mask_threshold: float) -> torch.Tensor:
    """Binary masks (K, H, W) in frame pixels: each mask upsampled over its view's region, zero elsewhere."""
    height, width = views.views[0].original_size
    out = torch.zeros(len(batch), height, width, dtype=torch.bool, device=batch.logits.device)
    mask_views = batch.views()
    for i, view in _present(views, mask_views):
        index = torch.nonzero(mask_views == i).squeeze(1)
        x0, y0, x1, y1 = view.box
        out[index, y0:y1, x0:x1] = upsample_to_frame(batch.logits[index], view.input_size, view.view_size,
                                                     mask_threshold)
    return out


def _present(views: EncodedViews, mask_views: torch.Tensor) -> list[tuple[int, EncodedImage]]:
    """The views that have masks (one host read of the view indices, not one per view)."""
    return [(i, views.views[i]) for i in torch.unique(mask_views).tolist()]
