"""SAM's two-way transformer, batched over prompts against ONE image embedding.

The reference repeats the image embedding once per prompt before the transformer. Here the image
side stays (1, HW, C) until the first image-to-token attention makes it prompt specific, and the
positional encodings enter each projection as a precomputed term (``W(x + pe) + b = Wx + (W pe + b)``),
so no per-prompt ``keys + pe`` tensor is materialised. Memory traffic, not arithmetic, dominates here.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from .common import MLPBlock


class Attention(nn.Module):
    """Multi-head attention with an optional down-projection of the internal width."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide the attention's internal dimension")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def merge(self, x: Tensor) -> Tensor:
        b, h, n, d = x.shape
        return self.out_proj(x.transpose(1, 2).reshape(b, n, h * d))

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = self.heads(self.q_proj(q)), self.heads(self.k_proj(k)), self.heads(self.v_proj(v))
        return self.merge(F.scaled_dot_product_attention(q, k, v))


def _project(layer: nn.Linear, x: Tensor, pe_term: Tensor) -> Tensor:
    """``layer(x + pe)`` given ``pe_term = layer(pe)``, without materialising ``x + pe``."""
    return F.linear(x, layer.weight).add_(pe_term)


def _attend_shared_keys(attn: Attention, queries: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Attention of every prompt's queries (B, T, C) to keys/values shared by all prompts (1, heads, N, d).

    Softmax is per query row, so folding the prompts into the query axis is exact and avoids
    broadcasting the shared keys B times.
    """
    b, t, _ = queries.shape
    q = attn.heads(attn.q_proj(queries).reshape(1, b * t, -1))
    out = F.scaled_dot_product_attention(q, k, v)  # (1, heads, B*T, d)
    return attn.merge(out).view(b, t, -1)


class TwoWayAttentionBlock(nn.Module):
    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int, attention_downsample_rate: int,
                 skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor]:
        """queries (B, T, C); keys (1 or B, HW, C); key_pe (1, HW, C). Returns keys as (B, HW, C)."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        t2i = self.cross_attn_token_to_image
        k = t2i.heads(_project(t2i.k_proj, keys, t2i.k_proj(key_pe)))
        v = t2i.heads(t2i.v_proj(keys))
        if keys.shape[0] == 1:
            attn_out = _attend_shared_keys(t2i, queries + query_pe, k, v)
        else:
            q = t2i.heads(t2i.q_proj(queries + query_pe))
            attn_out = t2i.merge(F.scaled_dot_product_attention(q, k, v))
        queries = self.norm2(queries + attn_out)
        queries = self.norm3(queries + self.mlp(queries))

        i2t = self.cross_attn_image_to_token
        q = i2t.heads(_project(i2t.q_proj, keys, i2t.q_proj(key_pe)))  # (1 or B, heads, HW, d)
        k = i2t.heads(i2t.k_proj(queries + query_pe))
        v = i2t.heads(i2t.v_proj(queries))
        if q.shape[0] != k.shape[0]:
            q = q.expand(k.shape[0], -1, -1, -1)
        keys = self.norm4(keys + i2t.merge(F.scaled_dot_product_attention(q, k, v)))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int,
                 attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate, i == 0)
            for i in range(depth))
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor) -> tuple[Tensor, Tensor]:
        """image_embedding (1 or B, C, h, w), image_pe (1, C, h, w), point_embedding (B, T, C).

        Returns the processed tokens (B, T, C) and image tokens (B, h*w, C).
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        final = self.final_attn_token_to_image
        q = final.heads(final.q_proj(queries + point_embedding))
        k = final.heads(_project(final.k_proj, keys, final.k_proj(key_pe)))
        v = final.heads(final.v_proj(keys))
        queries = self.norm_final_attn(queries + final.merge(F.scaled_dot_product_attention(q, k, v)))
        return queries, keys
