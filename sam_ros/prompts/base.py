"""The prompt-strategy interface.

A strategy sees the encoded image and a ``decode`` function that runs one batched decoder pass over
point prompts. A grid calls it once; AoP calls it twice (confident prompts first, then the prompts
its elimination step did not drop). Filtering and NMS across all batches stay in the pipeline.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from ..decode import MaskBatch


@dataclass
class EncodedImage:
    """What the encoder produced for one frame, and the geometry needed to map points."""

    embedding: torch.Tensor            # (1, C, h, w)
    image: torch.Tensor                # (1, 3, S, S) the normalised, padded model input
    original_size: tuple[int, int]     # (H, W) of the camera frame
    input_size: tuple[int, int]        # (h, w) of the resized frame inside the S x S square

    def to_input(self, points: torch.Tensor) -> torch.Tensor:
        """Frame pixels (x, y) -> pixels of the resized model input (segment-anything's apply_coords)."""
        (h_in, w_in), (h, w) = self.input_size, self.original_size
        return points * points.new_tensor([w_in / w, h_in / h])

    def to_frame(self, points: torch.Tensor) -> torch.Tensor:
        """Pixels of the resized model input (x, y) -> frame pixels."""
        (h_in, w_in), (h, w) = self.input_size, self.original_size
        return points * points.new_tensor([w / w_in, h / h_in])


class PromptStrategy(ABC):
    @abstractmethod
    def propose(self, encoded: EncodedImage, decode: Callable[[torch.Tensor], "MaskBatch"]) -> "MaskBatch":
        """Choose point prompts (N, 2) in frame pixels (x, y), decode them, and return the masks."""
