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

__all__ = ["EncodedImage", "MaskBatch", "PromptStrategy"]


class PromptStrategy(ABC):
    @abstractmethod
    def propose(self, encoded: EncodedImage, decode: Callable[[torch.Tensor], MaskBatch]) -> MaskBatch:
        """Choose point prompts (N, 2) in frame pixels (x, y), decode them, and return the masks."""
