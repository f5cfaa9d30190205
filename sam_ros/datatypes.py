"""The pipeline's data types, below both the prompt strategies and the decoder.

``EncodedImage`` is one encoded view of a frame (the whole frame, a crop of it, or the frame at another
scale); ``EncodedViews`` is every view of one frame encoded in one batch; ``MaskBatch`` is what the
decoder returns for the prompts of all views.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EncodedImage:
    """What the encoder produced for one view of a frame, and the geometry needed to map points.

    A view covers ``crop_box`` (x0, y0, x1, y1, frame pixels, exclusive ends; None = the whole frame),
    resized to ``input_size`` inside the model's square input.
    """

    embedding: torch.Tensor            # (1, C, h, w)
    image: torch.Tensor                # (1, 3, S, S) the normalised, padded model input
    original_size: tuple[int, int]     # (H, W) of the camera frame
    input_size: tuple[int, int]        # (h, w) of the resized view inside the S x S square
    crop_box: tuple[int, int, int, int] | None = None

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The frame region this view covers (x0, y0, x1, y1)."""
        return self.crop_box or (0, 0, self.original_size[1], self.original_size[0])

    @property
    def view_size(self) -> tuple[int, int]:
        """(h, w) of the frame region this view covers."""
        x0, y0, x1, y1 = self.box
        return y1 - y0, x1 - x0

    def to_input(self, points: torch.Tensor) -> torch.Tensor:
        """Frame pixels (x, y) -> pixels of the resized model input (segment-anything's apply_coords)."""
        (h_in, w_in), (h, w) = self.input_size, self.view_size
        origin = points.new_tensor(self.box[:2])
        return (points - origin) * points.new_tensor([w_in / w, h_in / h])

    def to_frame(self, points: torch.Tensor) -> torch.Tensor:
        """Pixels of the resized model input (x, y) -> frame pixels."""
        (h_in, w_in), (h, w) = self.input_size, self.view_size
        return points * points.new_tensor([w / w_in, h / h_in]) + points.new_tensor(self.box[:2])


@dataclass
class EncodedViews:
    """All views of one frame (whole frame first, then crops or scales), encoded as one batch."""

    embedding: torch.Tensor                     # (V, C, h, w)
    views: list[EncodedImage]                   # each with its own (1, C, h, w) slice of ``embedding``
    layers: list[int]                           # crop layer of each view (0 = the whole frame)

    def __len__(self) -> int:
        return len(self.views)

    @staticmethod
    def single(encoded: EncodedImage) -> "EncodedViews":
        return EncodedViews(encoded.embedding, [encoded], [0])

    def boxes(self) -> torch.Tensor:
        """(V, 4) crop boxes x0, y0, x1, y1 in frame pixels, on the embedding's device."""
        return torch.tensor([v.box for v in self.views], dtype=torch.float32, device=self.embedding.device)


@dataclass
class MaskBatch:
    """Candidate masks at the decoder's low resolution, with the scores the filters use."""

    logits: torch.Tensor     # (K, s, s) low-res logits over the padded model input of the mask's view
    iou: torch.Tensor        # (K,) predicted IoU
    stability: torch.Tensor  # (K,) stability score (low-res)
    points: torch.Tensor     # (K, 2) the point prompt of each mask, frame pixels (x, y)
    view: torch.Tensor | None = None  # (K,) index of the mask's view in its EncodedViews; None = all view 0

    def __len__(self) -> int:
        return self.logits.shape[0]

    def views(self) -> torch.Tensor:
        """(K,) view index of every mask."""
        if self.view is None:
            return torch.zeros(len(self), dtype=torch.long, device=self.logits.device)
        return self.view

    def select(self, index: torch.Tensor) -> "MaskBatch":
        view = None if self.view is None else self.view[index]
        return MaskBatch(self.logits[index], self.iou[index], self.stability[index], self.points[index], view)

    @staticmethod
    def cat(batches: list["MaskBatch"]) -> "MaskBatch":
        view = None if all(b.view is None for b in batches) else torch.cat([b.views() for b in batches])
        return MaskBatch(*(torch.cat([getattr(b, name) for b in batches]) for name in
                           ("logits", "iou", "stability", "points")), view)
