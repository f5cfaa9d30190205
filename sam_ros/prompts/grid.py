"""A regular point grid, laid out exactly like segment-anything's ``build_point_grid``."""
from __future__ import annotations

import torch

from .base import EncodedImage, PromptStrategy


def build_point_grid(n_per_side: int) -> torch.Tensor:
    """(n*n, 2) points (x, y) in [0, 1], cell centres, row by row."""
    offset = 1 / (2 * n_per_side)
    side = torch.linspace(offset, 1 - offset, n_per_side, dtype=torch.float64)
    ys, xs = torch.meshgrid(side, side, indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


class GridPrompts(PromptStrategy):
    def __init__(self, n_per_side: int, unit_points: torch.Tensor | None = None) -> None:
        """A regular ``n_per_side`` grid, or custom ``unit_points`` (N, 2) in [0, 1] (segment-anything's point_grids)."""
        if unit_points is None and n_per_side < 1:
            raise ValueError(f"grid size must be >= 1, got {n_per_side}")
        self.unit_points = build_point_grid(n_per_side) if unit_points is None else unit_points.double()

    def points(self, encoded: EncodedImage) -> torch.Tensor:
        """The grid in frame pixels (x, y), on the embedding's device."""
        height, width = encoded.original_size
        scale = torch.tensor([width, height], dtype=torch.float64)
        return (self.unit_points * scale).float().to(encoded.embedding.device)

    def propose(self, encoded: EncodedImage, decode):
        return decode(self.points(encoded))
