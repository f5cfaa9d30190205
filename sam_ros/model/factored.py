"""Prompt-specific image tokens kept factored: the shared image tokens X plus per-prompt low-rank terms.

After the first layer's image-to-token attention, prompt b's image tokens are ``X + A1 V1``: A1 (HW, H*T)
holds each image token's softmax weights over the prompt's H*T head-tokens, V1 (H*T, C) their values
through the output projection. A LayerNorm only rescales rows and re-centres and re-weights channels, and
the second layer adds ``A2 V2``, so up to the output a prompt's image tokens are exactly

    K = diag(rho) (X P + A1 V1 R1) + diag(tau) (A2 V2 R2 + 1 c^T) + 1 d^T

with P, R1, R2 (C, C), c, d shared by all prompts and rho, tau scalars per image token. Whatever reads K
through a projection W becomes one product of all prompts' head-queries with ``X P W^T``, projected once,
plus products with A1, A2 of rank H*T; LayerNorm statistics come from the same pieces (summed in fp32). No
(B, HW, C) tensor is made (only (B, H*T, HW) ones, 4.6 times smaller) and 44% of the FLOPs per prompt
remain (MobileSAM); indexing ``FactoredKeys`` by prompts builds the image tokens of the few whose masks
are drawn.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import Tensor, nn


def per_head_products(a: Tensor, b: Tensor) -> Tensor:
    """a (B, H, T, d) @ b (H, M, d)^T as (B, H, T, M): one GEMM per head for all prompts."""
    bsz, h, t, d = a.shape
    out = torch.bmm(a.transpose(0, 1).reshape(h, bsz * t, d), b.transpose(1, 2))
    return out.view(h, bsz, t, -1).transpose(0, 1)


def _heads(x: Tensor, h: int) -> Tensor:
    """(M, H*d) as (H, M, d)."""
    return x.view(x.shape[0], h, -1).transpose(0, 1)


def _token_products(q: Tensor, y: Tensor) -> Tensor:
    """Head-wise dot products of q (B, H, T, d) with rows of y (B, J, H*d): (B, H*T, J)."""
    b, h, t, d = q.shape
    return torch.einsum("bhtd,bjhd->bhtj", q, y.view(b, -1, h, d)).reshape(b, h * t, -1)


def _own_heads(m: Tensor, h: int) -> Tensor:
    """m (B, H*T, H*d): row (h, t) keeps head h's d columns -> (B, H, T, d)."""
    b, ht, hd = m.shape
    m = m.view(b, h, ht // h, h, hd // h)
    return torch.diagonal(m, dim1=1, dim2=3).permute(0, 3, 1, 2)


def _weighted_sums(a: Tensor, m: Tensor) -> Tensor:
    """``(a * m).sum(1)`` in fp32: (B, J, N) -> (B, N)."""
    return (a * m).sum(1, dtype=torch.float32)


def _centred(m: Tensor) -> Tensor:
    """m (I - 11^T/C): every row of m less its mean over the channels."""
    return m - m.mean(-1, keepdim=True)


@dataclass
class Values:
    """Head-token values through an output projection: ``v`` (B, H, T, d) heads, ``weight`` (C, H*d), and
    ``bias`` / H on every row (each image token's weights sum to one per head, H in all)."""

    v: Tensor
    weight: Tensor
    bias: Tensor

    @classmethod
    def of(cls, attn: nn.Module, v: Tensor) -> "Values":
        return cls(v, attn.out_proj.weight, attn.out_proj.bias / attn.num_heads)

    def dense(self) -> Tensor:
        """(B, H*T, C)."""
        b, h, t, d = self.v.shape
        return torch.einsum("bhtd,chd->bhtc", self.v, self.weight.view(-1, h, d)).reshape(b, h * t, -1) + self.bias

    def against(self, z_weight: Tensor, z_bias: Tensor) -> Tensor:
        """``dense() @ z^T`` (B, H*T, N) for a shared z (N, C), given ``z @ weight`` and ``z @ bias``: through the
        heads, no (B, H*T, C) x (C, N) GEMM."""
        b, h, t, _ = self.v.shape
        out = z_weight.new_empty(b, h * t, z_weight.shape[0])  # contiguous: the sum itself is the layout change
        return torch.add(per_head_products(self.v, _heads(z_weight, h)), z_bias, out=out.view(b, h, t, -1)).view_as(out)


class ChunkedRows:
    """Rows of a batch held as the chunks that made them (all as long as the first): read by prompt index."""

    def __init__(self, chunks: list[Tensor]) -> None:
        self.chunks = chunks

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    def __getitem__(self, index: Tensor) -> Tensor:
        step = len(self.chunks[0])
        return torch.stack([self.chunks[i // step][i % step] for i in index.tolist()])


@dataclass(eq=False)
class Basis:
    """The factors shared by all prompts (P, R1, R2, c, d of the module docstring, over the shared x), and
    the products of x with them, made once per call however many chunks of prompts ask for them."""

    x: Tensor
    p: Tensor
    r1: Tensor
    r2: Tensor | None = None
    c: Tensor | None = None
    d: Tensor | None = None
    memo: dict = field(default_factory=dict)

    @classmethod
    def identity(cls, x: Tensor) -> "Basis":
        """The basis of ``X + A1 V1``: x (N, C) shared."""
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        return cls(x, eye, eye)

    def cached(self, key: tuple, make: Callable[[], object]):
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def projected(self, weight: Tensor) -> Tensor:
        """``x P W^T`` (N, D)."""
        return self.cached(("projected", id(weight)), lambda: self.x @ (self.p @ weight.t()))

    def through(self, values: Values, r: Tensor) -> tuple[Tensor, Tensor]:
        """``x P r^T`` as ``Values.against`` takes it: through the values' output projection and bias."""
        def make():
            z = self.x @ (self.p @ r.t())
            return z @ values.weight, z @ values.bias
        return self.cached(("through", id(values.weight), id(r)), make)

    def centred(self) -> "Basis":
        """The factors of ``K (I - 11^T/C)``."""
        def make():
            r2, c = (None, None) if self.r2 is None else (_centred(self.r2), _centred(self.c))
            return Basis(self.x, _centred(self.p), _centred(self.r1), r2, c)
        return self.cached(("centred",), make)

    def weighted(self, norm: nn.LayerNorm) -> "Basis":
        """A centred basis through a LayerNorm's weight and bias."""
        g = norm.weight
        return self.cached(("weighted", id(norm)), lambda: Basis(
            self.x, self.p * g, self.r1 * g, None if self.r2 is None else self.r2 * g,
            None if self.c is None else self.c * g, norm.bias))

    def plus_tokens(self) -> "Basis":
        """The basis of ``K + A2 V2``: R2 = I, and K's constant row becomes the tau-scaled one."""
        def make():
            eye = torch.eye(self.x.shape[-1], dtype=self.x.dtype, device=self.x.device)
            c = self.d if self.d is not None else self.x.new_zeros(self.x.shape[-1])
            return Basis(self.x, self.p, self.r1, eye, c)
        return self.cached(("plus",), make)

    def mixed(self, r: Tensor, weight: Tensor) -> Tensor:
        """``r W^T`` (C, D)."""
        return self.cached(("mixed", id(r), id(weight)), lambda: r @ weight.t())

    def xp(self) -> Tensor:
        """``x P`` (N, C)."""
        return self.cached(("xp",), lambda: self.x @ self.p)

    def square_norms(self) -> Tensor:
        """Squared row norms (N,) of x P, in fp32."""
        return self.cached(("square_norms",), lambda: self.xp().float().pow(2).sum(-1))

    def row_dots(self, v: Tensor) -> Tensor:
        """``x P v`` (N,) for v (C,)."""
        return self.cached(("row_dots", id(v)), lambda: self.x @ (self.p @ v))


@dataclass
class FactoredKeys:
    """Image tokens of B prompts in the form of the module docstring: the shared ``basis``, per image token
    ``rho``, ``tau`` ((1 or B, N)), and the prompts' ``a1``, ``a2`` (transposed: (B, H*T, N), or their chunks
    once ``cat``) and values."""

    basis: Basis
    rho: Tensor
    a1: Tensor
    v1: Values
    tau: Tensor | None = None
    a2: Tensor | None = None
    v2: Values | None = None

    @classmethod
    def after_first_layer(cls, basis: Basis, a1: Tensor, v1: Values) -> "FactoredKeys":
        """``X + A1 V1`` over ``Basis.identity(X)``; a1 (B, H*T, N)."""
        return cls(basis, basis.x.new_ones(1, basis.x.shape[0]), a1, v1)

    @classmethod
    def cat(cls, parts: list["FactoredKeys"]) -> "FactoredKeys":
        """The keys of chunks of prompts over the same basis, as one; the chunks' weights stay where they are
        (``ChunkedRows``): no second copy of them."""
        scalars = lambda name: torch.cat([getattr(k, name).expand(len(k.a1), -1) for k in parts])  # noqa: E731
        values = lambda name: replace(getattr(parts[0], name), v=torch.cat([getattr(k, name).v for k in parts]))  # noqa: E731
        return replace(parts[0], rho=scalars("rho"), a1=ChunkedRows([k.a1 for k in parts]), v1=values("v1"),
                       tau=scalars("tau"), a2=ChunkedRows([k.a2 for k in parts]), v2=values("v2"))

    def plus_tokens(self, a2: Tensor, v2: Values) -> "FactoredKeys":
        """``K + A2 V2`` (K without a second term)."""
        return replace(self, basis=self.basis.plus_tokens(), tau=self.basis.x.new_ones(1, self.basis.x.shape[0]),
                       a2=a2, v2=v2)

    def scores(self, q: Tensor, weight: Tensor, pe_term: Tensor) -> Tensor:
        """Head-queries q (B, H, T, d) against the keys ``K W^T + pe_term`` (pe_term (N, H*d), with the
        projection's bias): (B, H, T, N)."""
        b, h, t, _ = q.shape
        basis, wt = self.basis, weight.t()
        out = torch.bmm(_token_products(q, self.v1.dense() @ basis.mixed(basis.r1, weight)), self.a1)
        out.view(b, h, t, -1).add_(per_head_products(q, _heads(basis.projected(weight), h))).mul_(self.rho[:, None, None])
        if self.tau is not None:
            second = torch.bmm(_token_products(q, self.v2.dense() @ basis.mixed(basis.r2, weight)), self.a2)
            second += (q * (basis.c @ wt).view(h, 1, -1)).sum(-1).view(b, h * t, 1)
            out += second.mul_(self.tau[:, None])
        const = pe_term if basis.d is None else pe_term + basis.d @ wt
        return out.view(b, h, t, -1).add_(per_head_products(q, _heads(const, h)))

    def pooled(self, weights: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """``weights @ (K W^T + bias)`` per head, weights (B, H, T, N) summing to one: (B, H, T, d)."""
        b, h, t, n = weights.shape
        basis, wt = self.basis, weight.t()
        scaled = weights * self.rho.view(-1, 1, 1, n)
        out = per_head_products(scaled, _heads(basis.projected(weight), h).transpose(1, 2))
        mixed = torch.bmm(torch.bmm(scaled.view(b, h * t, n), self.a1.transpose(1, 2)),
                          self.v1.dense() @ basis.mixed(basis.r1, weight))
        if self.tau is not None:
            scaled = weights.view(b, h * t, n) * self.tau[:, None]
            mixed += torch.bmm(torch.bmm(scaled, self.a2.transpose(1, 2)), self.v2.dense() @ basis.mixed(basis.r2, weight))
            out = out + scaled.sum(-1).view(b, h, t, 1) * (basis.c @ wt).view(h, 1, -1)
        const = bias if basis.d is None else bias + basis.d @ wt
        return out + _own_heads(mixed, h) + const.view(h, 1, -1)

    def layer_norm(self, norm: nn.LayerNorm) -> "FactoredKeys":
        """LayerNorm over channels (statistics in fp32): row scale into rho and tau, centring and weights
        into the basis."""
        if self.basis.d is not None:
            raise ValueError("layer_norm takes keys without a constant row (apply plus_tokens first)")
        centred = self.basis.centred()
        var = self._square_norms(centred) / centred.x.shape[-1]
        scale = torch.rsqrt(var + norm.eps).to(centred.x.dtype)
        out = replace(self, basis=centred.weighted(norm), rho=self.rho * scale)
        return out if self.tau is None else replace(out, tau=self.tau * scale)

    def _square_norms(self, basis: Basis) -> Tensor:
        """Squared norms (B, N) of the rows of these keys over the (centred) ``basis``: products in the keys'
        dtype, sums in fp32."""
        y1 = self.v1.dense() @ basis.r1
        a1 = self.a1
        first = basis.square_norms() + _weighted_sums(a1, self.v1.against(*basis.through(self.v1, basis.r1))
                                                      .baddbmm_(y1 @ y1.transpose(1, 2), a1, beta=2))
        if self.tau is None:
            return first * self.rho.float().pow(2)
        y2, a2 = self.v2.dense() @ basis.r2, self.a2
        second = _weighted_sums(a2, torch.baddbmm((2 * y2 @ basis.c)[..., None], y2 @ y2.transpose(1, 2), a2))
        second += basis.c.float().pow(2).sum()
        cross = _weighted_sums(a2, self.v2.against(*basis.through(self.v2, basis.r2)).baddbmm_(y2 @ y1.transpose(1, 2), a1))
        cross += basis.row_dots(basis.c).float() + _weighted_sums(a1, (y1 @ basis.c)[..., None])
        rho, tau = self.rho.float(), self.tau.float()
        return first * rho.pow(2) + second * tau.pow(2) + 2 * rho * tau * cross

    def __getitem__(self, index: Tensor) -> Tensor:
        """The image tokens (k, N, C) of prompts ``index``, built from the factors."""
        basis = self.basis
        rho = self.rho.expand(len(self.a1), -1)[index, :, None]
        out = torch.mul(basis.xp(), rho) if basis.d is None else torch.addcmul(basis.d, basis.xp(), rho)
        weights, values = self.a1[index] * rho.transpose(1, 2), _rows(self.v1, index) @ basis.r1
        if self.tau is not None:  # both low-rank terms in one product, each row scale on its weights
            tau = self.tau.expand(len(self.a1), -1)[index, :, None]
            out.addcmul_(tau, basis.c)
            weights = torch.cat([weights, self.a2[index] * tau.transpose(1, 2)], dim=1)
            values = torch.cat([values, _rows(self.v2, index) @ basis.r2], dim=1)
        return out.baddbmm_(weights.transpose(1, 2), values)


def _rows(values: Values, index: Tensor) -> Tensor:
    """Dense values (k, H*T, C) of prompts ``index``."""
    return Values(values.v[index], values.weight, values.bias).dense()
