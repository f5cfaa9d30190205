"""SAM's mask decoder, split so that hopeless prompts can be dropped before the costly upscaling.

``decode_tokens`` runs the transformer and the IoU head for all prompts; ``upscale_masks`` turns the
surviving (prompt, mask-token) pairs into low-resolution mask logits. ``forward`` chains both and
returns what the reference returns.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .common import MLP, LayerNorm2d
from .factored import FactoredKeys
from .transformer import TwoWayTransformer


@dataclass
class DecodedTokens:
    """Transformer output of a batch of prompts: enough to score them and, later, to draw masks."""

    iou_pred: Tensor           # (B, num_mask_tokens) predicted IoU of every mask token
    mask_tokens: Tensor        # (B, num_mask_tokens, C)
    image_tokens: Tensor | FactoredKeys  # (B, h*w, C) prompt-specific image tokens, or their factors (CPU)
    embedding_size: tuple[int, int]


class MaskDecoder(nn.Module):
    def __init__(self, transformer_dim: int, transformer: TwoWayTransformer, num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4), nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def decode_tokens(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                      dense_prompt_embeddings: Tensor) -> DecodedTokens:
        """Run the transformer for B prompts against one image embedding (1, C, h, w).

        ``dense_prompt_embeddings`` is (1, C, 1, 1) (no mask prompt: the same for every prompt) or
        (B, C, h, w); the image embedding is never copied per prompt in the first case.
        """
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings], dim=1)
        src = image_embeddings + dense_prompt_embeddings
        hs, image_tokens = self.transformer(src, image_pe, tokens)
        return DecodedTokens(iou_pred=self.iou_prediction_head(hs[:, 0, :]),
                             mask_tokens=hs[:, 1:1 + self.num_mask_tokens, :],
                             image_tokens=image_tokens, embedding_size=tuple(src.shape[-2:]))

    def upscale_masks(self, decoded: DecodedTokens, prompt_index: Tensor, token_index: Tensor,
                      prompts_per_pass: int | None = None) -> Tensor:
        """Low-res mask logits (K, 4h, 4w) of the K pairs (prompt_index[k], token_index[k]).

        Each prompt's image tokens are upscaled once, however many of its tokens are asked for, in passes of
        ``prompts_per_pass`` prompts (all at once if None), which bounds its working memory (four copies of
        a prompt's image tokens) and, on a CPU, keeps it in cache.
        """
        prompts, inverse = torch.unique(prompt_index, return_inverse=True)
        h, w = decoded.embedding_size
        # The hyper-network MLPs are tiny: run all of them for the selected prompts, then pick.
        hyper = torch.stack([mlp(decoded.mask_tokens[prompts, i])
                             for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)  # (P, T, C/8)
        step = prompts_per_pass or len(prompts)
        out = hyper.new_empty(len(prompt_index), 4 * h, 4 * w)
        for start in range(0, len(prompts), step):
            features = self._upscale_tokens(decoded.image_tokens[prompts[start:start + step]])  # (p, h*w, 4, 4, C/8)
            p = features.shape[0]
            masks = torch.bmm(hyper[start:start + step], features.view(p, -1, features.shape[-1]).transpose(1, 2))
            pairs = torch.nonzero((inverse >= start) & (inverse < start + p)).squeeze(1)
            masks = masks[inverse[pairs] - start, token_index[pairs]].view(-1, h, w, 2, 2, 2, 2)  # (k, y, x, i, j, k, l)
            # output pixel (4y + 2i + k, 4x + 2j + l)
            out[pairs] = masks.permute(0, 1, 3, 5, 2, 4, 6).reshape(-1, 4 * h, 4 * w)
        return out

    def _upscale_tokens(self, tokens: Tensor) -> Tensor:
        """``output_upscaling`` computed on tokens (P, h*w, C) in channels-last form.

        A 2x2-stride-2 transposed convolution is one matrix product per token, so the upscaling needs no
        NCHW layout changes and its LayerNorm runs over the last axis (same weights, same arithmetic).
        """
        conv1, norm, _, conv2, _ = self.output_upscaling
        c1, c2 = conv1.out_channels, conv2.out_channels
        x = F.linear(tokens, conv1.weight.permute(2, 3, 1, 0).reshape(4 * c1, -1),
                     conv1.bias.repeat(4))  # (P, hw, [i, j, c1])
        x = x.view(*tokens.shape[:2], 4, c1)
        x = F.gelu(F.layer_norm(x, (c1,), norm.weight, norm.bias, norm.eps))
        x = F.linear(x, conv2.weight.permute(2, 3, 1, 0).reshape(4 * c2, c1), conv2.bias.repeat(4))
        return F.gelu(x).view(*tokens.shape[:2], 2, 2, 2, 2, c2)  # (P, hw, i, j, k, l, c2)

    def forward(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                dense_prompt_embeddings: Tensor, multimask_output: bool) -> tuple[Tensor, Tensor]:
        """Reference-compatible: masks (B, 3 or 1, 4h, 4w) and IoU predictions (B, 3 or 1)."""
        decoded = self.decode_tokens(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
        tokens = list(range(1, self.num_mask_tokens)) if multimask_output else [0]
        b = sparse_prompt_embeddings.shape[0]
        token_index = torch.tensor(tokens, device=image_pe.device).repeat(b)
        prompt_index = torch.arange(b, device=image_pe.device).repeat_interleave(len(tokens))
        masks = self.upscale_masks(decoded, prompt_index, token_index)
        return masks.view(b, len(tokens), *masks.shape[1:]), decoded.iou_pred[:, tokens]
