"""SAM's two-way transformer, batched over prompts against ONE image embedding.

The reference repeats the image embedding once per prompt and projects every prompt's 4096 image
tokens to queries, keys and values. Here the image side stays (1, HW, C) until the first image-to-token
attention makes it prompt specific, and from then on the projections move to the token side: a prompt
has T = 7 tokens, so ``(q Wk) X^T`` costs a fraction of ``q (X Wk^T)^T`` for X of HW x C, and likewise
for values (``softmax(s) (X Wv^T + bv) = (softmax(s) X) Wv^T + bv``, rows of softmax summing to one) and
for the image-side queries and output projection. The same arithmetic, reassociated: it halves the
decoder's per-prompt FLOPs. Positional encodings enter as terms projected once per image.

On a CPU, for one shared embedding and without autograd, the prompts' image tokens are not even made: from
the first layer's image-to-token attention on they stay factored over the shared image tokens
(``factored.py``: under half the FLOPs again, in cache-sized chunks of prompts). Autograd (training),
prompt-specific embeddings (several views, mask prompts) and GPUs take the materialised path.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .common import MLPBlock
from .factored import Basis, FactoredKeys, Values, per_head_products

# Prompts per chunk of the factored path: its per-prompt tensors ((chunk, 56, 4096) each) stay in cache.
FACTORED_CHUNK = 8


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

    def head_weights(self, layer: nn.Linear) -> Tensor:
        """A projection's weight as (heads, head_dim, C)."""
        return layer.weight.view(self.num_heads, -1, layer.weight.shape[-1])

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = self.heads(self.q_proj(q)), self.heads(self.k_proj(k)), self.heads(self.v_proj(v))
        return self.merge(F.scaled_dot_product_attention(q, k, v))


def _project(layer: nn.Linear, x: Tensor, pe_term: Tensor) -> Tensor:
    """``layer(x + pe)`` given ``pe_term = layer(pe)``, without materialising ``x + pe``."""
    return F.linear(x, layer.weight).add_(pe_term)


def image_key_heads(attn: Attention, keys: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor | None]:
    """What ``token_to_image`` needs of the image side: shared image tokens (1, HW, C) get their key and
    value heads once; prompt-specific ones only the projected positional term (keys, values stay unprojected)."""
    if keys.shape[0] == 1:
        return attn.heads(_project(attn.k_proj, keys, attn.k_proj(key_pe))), attn.heads(attn.v_proj(keys))
    return attn.k_proj(key_pe), None


def token_to_image(attn: Attention, queries: Tensor, keys: Tensor, k_heads: Tensor, v_heads: Tensor | None) -> Tensor:
    """Attention of tokens ``queries`` (B, T, C; positional term already added) to image tokens ``keys``.

    ``k_heads``, ``v_heads`` come from ``image_key_heads``. For prompt-specific image tokens the key and
    value projections are applied on the token side.
    """
    b, t, _ = queries.shape
    h = attn.num_heads
    if keys.shape[0] == 1:  # folding prompts into the query axis is exact: softmax is per query row
        q = attn.heads(attn.q_proj(queries).reshape(1, b * t, -1))
        out = F.scaled_dot_product_attention(q, k_heads, v_heads)  # (1, heads, B*T, d)
        return attn.merge(out).view(b, t, -1)
    q = attn.heads(attn.q_proj(queries))  # (B, H, T, d)
    q = q * q.shape[-1] ** -0.5
    scores = torch.matmul(q, attn.head_weights(attn.k_proj)).view(b, h * t, -1)  # (B, HT, C)
    scores = torch.bmm(scores, keys.transpose(1, 2)).view(b, h, t, -1)  # (B, H, T, HW)
    scores += per_head_products(q, attn.heads(k_heads)[0])
    weights = scores.softmax(-1).view(b, h * t, -1)
    pooled = torch.bmm(weights, keys).view(b, h, t, -1)  # (B, H, T, C)
    out = torch.matmul(pooled, attn.head_weights(attn.v_proj).transpose(1, 2))  # (B, H, T, d)
    out = out + attn.v_proj.bias.view(h, 1, -1)
    return attn.merge(out)


def token_keys_values(attn: Attention, queries: Tensor, query_pe: Tensor) -> tuple[Tensor, Tensor]:
    """The token side of an image-to-token attention: key heads (scaled) and value heads (B, H, T, d)."""
    k = attn.heads(attn.k_proj(queries + query_pe))
    return k * k.shape[-1] ** -0.5, attn.heads(attn.v_proj(queries))


def factored_token_to_image(attn: Attention, queries: Tensor, keys: FactoredKeys, k_pe: Tensor) -> Tensor:
    """``token_to_image`` against factored image tokens; ``k_pe`` is ``k_proj(key_pe)`` (HW, D)."""
    q = attn.heads(attn.q_proj(queries))
    weights = keys.scores(q * q.shape[-1] ** -0.5, attn.k_proj.weight, k_pe).softmax(-1)
    return attn.merge(keys.pooled(weights, attn.v_proj.weight, attn.v_proj.bias))


def image_to_token(attn: Attention, keys: Tensor, q_pe: Tensor, queries: Tensor, query_pe: Tensor,
                   overwrite_keys: bool = False) -> Tensor:
    """Image tokens ``keys`` (1 or B, HW, C) attend to each prompt's tokens; returns ``keys + attention``.

    ``q_pe`` is ``q_proj(image_pe)`` (1, HW, D). Shared image tokens are projected once; prompt-specific
    ones meet the token side's keys folded through the query projection, and the output projection is
    folded into the values, so no (B, HW, D) tensor is made. With ``overwrite_keys`` (keys the caller no
    longer needs) and no autograd, the sum is accumulated into ``keys`` itself.
    """
    b, t, _ = queries.shape
    h = attn.num_heads
    k, v = token_keys_values(attn, queries, query_pe)
    if keys.shape[0] == 1:  # queries projected once for all prompts
        scores = per_head_products(k, attn.heads(_project(attn.q_proj, keys, q_pe))[0]).contiguous()
    else:
        folded = torch.matmul(k, attn.head_weights(attn.q_proj)).view(b, h * t, -1)  # (B, HT, C)
        scores = torch.bmm(folded, keys.transpose(1, 2)).view(b, h, t, -1)
        scores += per_head_products(k, attn.heads(q_pe)[0])
    weights = scores.softmax(2).view(b, h * t, -1)  # (B, HT, HW): each image token over each head's T tokens
    out_weight = attn.out_proj.weight.view(-1, h, v.shape[-1])  # (C, H, d)
    # The output bias rides on the values: each image token's weights sum to one per head, H in all.
    values = torch.einsum("bhtd,chd->bhtc", v, out_weight).reshape(b, h * t, -1) + attn.out_proj.bias / h
    if overwrite_keys and keys.shape[0] > 1 and not torch.is_grad_enabled():
        return keys.baddbmm_(weights.transpose(1, 2), values)
    return torch.baddbmm(keys, weights.transpose(1, 2), values)


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

    def attend_tokens(self, queries: Tensor, query_pe: Tensor, to_image: Callable[[Tensor], Tensor]) -> Tensor:
        """The token side of the block: self-attention, ``to_image`` (token-to-image attention of tokens with
        their positional term), MLP, with their norms."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        queries = self.norm2(queries + to_image(queries + query_pe))
        return self.norm3(queries + self.mlp(queries))

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor,
                overwrite_keys: bool = False) -> tuple[Tensor, Tensor]:
        """queries (B, T, C); keys (1 or B, HW, C); key_pe (1, HW, C). Returns keys as (B, HW, C).

        ``overwrite_keys``: the input keys may be reused for the output (they were made by an earlier layer).
        """
        t2i = self.cross_attn_token_to_image
        queries = self.attend_tokens(queries, query_pe,
                                     lambda q: token_to_image(t2i, q, keys, *image_key_heads(t2i, keys, key_pe)))
        i2t = self.cross_attn_image_to_token
        keys = self.norm4(image_to_token(i2t, keys, i2t.q_proj(key_pe), queries, query_pe, overwrite_keys))
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

    def forward(self, image_embedding: Tensor, image_pe: Tensor,
                point_embedding: Tensor) -> tuple[Tensor, Tensor | FactoredKeys]:
        """image_embedding (1 or B, C, h, w), image_pe (1, C, h, w), point_embedding (B, T, C).

        Returns the processed tokens (B, T, C) and image tokens (B, h*w, C): on a CPU, for one shared image
        embedding and without autograd, as ``FactoredKeys`` (indexing by prompts materialises them); a GPU
        keeps the materialised path (the chunked factored one is unmeasured there).
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        if (keys.shape[0] == 1 and keys.device.type == "cpu" and len(self.layers) == 2 and len(point_embedding)
                and not torch.is_grad_enabled()):
            return self._factored(keys, key_pe, point_embedding)
        queries = point_embedding
        for i, layer in enumerate(self.layers):  # the first layer's keys are the caller's: never overwritten
            queries, keys = layer(queries, keys, point_embedding, key_pe, overwrite_keys=i > 0)
        final = self.final_attn_token_to_image
        attn_out = token_to_image(final, queries + point_embedding, keys, *image_key_heads(final, keys, key_pe))
        queries = self.norm_final_attn(queries + attn_out)
        return queries, keys

    def _factored(self, image: Tensor, key_pe: Tensor, tokens: Tensor) -> tuple[Tensor, FactoredKeys]:
        """``forward`` for one shared image embedding, without autograd: the prompts' image tokens stay
        factored (``factored.py``) from the first layer's image-to-token attention on, and prompts go in
        chunks of ``FACTORED_CHUNK`` whose per-prompt tensors stay in cache; the image side is projected once."""
        first, second = self.layers
        i2t = first.cross_attn_image_to_token
        shared = dict(basis=Basis.identity(image[0]),
                      heads=image_key_heads(first.cross_attn_token_to_image, image, key_pe),
                      image_q=i2t.heads(_project(i2t.q_proj, image, i2t.q_proj(key_pe)))[0],
                      pe=(second.cross_attn_token_to_image.k_proj(key_pe)[0],
                          self.final_attn_token_to_image.k_proj(key_pe)[0],
                          second.cross_attn_image_to_token.q_proj(key_pe)[0]))
        parts = [self._factored_chunk(image, tokens[i:i + FACTORED_CHUNK], shared)
                 for i in range(0, tokens.shape[0], FACTORED_CHUNK)]
        return torch.cat([q for q, _ in parts]), FactoredKeys.cat([k for _, k in parts])

    def _factored_chunk(self, image: Tensor, tokens: Tensor, shared: dict) -> tuple[Tensor, FactoredKeys]:
        """``_factored`` for one chunk of prompts, given the image side's ``shared`` projections."""
        first, second = self.layers
        b, n = tokens.shape[0], image.shape[1]
        t2i_pe, final_pe, i2t_pe = shared["pe"]
        t2i = first.cross_attn_token_to_image
        queries = first.attend_tokens(tokens, tokens, lambda q: token_to_image(t2i, q, image, *shared["heads"]))
        i2t = first.cross_attn_image_to_token
        k, v = token_keys_values(i2t, queries, tokens)
        a1 = per_head_products(k, shared["image_q"]).softmax(2).reshape(b, -1, n)
        keys = FactoredKeys.after_first_layer(shared["basis"], a1, Values.of(i2t, v)).layer_norm(first.norm4)
        t2i = second.cross_attn_token_to_image
        queries = second.attend_tokens(queries, tokens, lambda q: factored_token_to_image(t2i, q, keys, t2i_pe))
        i2t = second.cross_attn_image_to_token
        k, v = token_keys_values(i2t, queries, tokens)
        a2 = keys.scores(k, i2t.q_proj.weight, i2t_pe).softmax(2).reshape(b, -1, n)
        keys = keys.plus_tokens(a2, Values.of(i2t, v)).layer_norm(second.norm4)
        final = self.final_attn_token_to_image
        attn_out = factored_token_to_image(final, queries + tokens, keys, final_pe)
        return self.norm_final_attn(queries + attn_out), keys
