"""SAM's prompt encoder, reduced to what segment-everything needs: point prompts.

Box and mask prompts are not used by sam_ros, but their weights are part of the checkpoint; the
modules are kept (and loaded) so that ``mobile_sam.pt`` loads strictly and stays usable elsewhere.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Fourier features of normalised coordinates with a fixed random frequency matrix."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, num_pos_feats)))

    def _apply(self, fn, recurse=True):
        """Moves with the model but keeps its frequencies in fp32 (see ``_pe_encoding``)."""
        exact = self.positional_encoding_gaussian_matrix
        super()._apply(fn, recurse)
        moved = self.positional_encoding_gaussian_matrix
        self.positional_encoding_gaussian_matrix = exact.to(device=moved.device, dtype=torch.float32)
        return self

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """fp32 (N, C) whatever the model's precision: the phases reach ~30 radians, where fp16's spacing
        (0.016), in the coordinates or the frequencies, would shift the sines by as much."""
        coords = (2 * coords.float() - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of every cell centre of an (h, w) grid, as (C, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encoding of pixel coordinates (..., 2) as x, y in an image of ``image_size`` (h, w)."""
        scale = coords.new_tensor([1.0 / image_size[1], 1.0 / image_size[0]])
        return self._pe_encoding(coords * scale)


class PromptEncoder(nn.Module):
    def __init__(self, embed_dim: int, image_embedding_size: tuple[int, int],
                 input_image_size: tuple[int, int], mask_in_chans: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # negative point, positive point, box corner 1, box corner 2
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans // 4), nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans),
            nn.GELU(), nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid, (1, C, h, w)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0).to(self.no_mask_embed.weight.dtype)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sparse embeddings of point prompts (B, N, 2) in input-image pixels, labels 1/0/-1.

        A padding point is appended, as SAM does when no box is given.
        """
        coords = torch.cat([coords + 0.5, torch.zeros_like(coords[:, :1])], dim=1)
        labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        embedding = self.pe_layer.forward_with_coords(coords, self.input_image_size).to(self.no_mask_embed.weight.dtype)
        label_embeddings = torch.cat([self.not_a_point_embed.weight, self.point_embeddings[0].weight,
                                      self.point_embeddings[1].weight])  # rows for labels -1, 0, 1
        embedding = torch.where((labels == -1).unsqueeze(-1), torch.zeros_like(embedding), embedding)
        return embedding + label_embeddings[(labels + 1).long()]

    def dense_no_mask(self) -> torch.Tensor:
        """Dense embedding without a mask prompt: one learned vector at every cell, (1, C, 1, 1)."""
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1)
