"""AoP prompts (AoP-SAM, Chen et al.): a learned prompt-confidence map instead of a blind grid.

1. ``PromptPredictor``: a small CNN on the image encoder's embedding outputs a prompt-confidence map
   (PCM) over the padded model input: where a point prompt would yield a good, distinct mask.
2. Coarse sampling: Gaussian smoothing (``smooth_confidence``), then local maxima above a confidence
   threshold, at least a minimum spacing apart, mapped back to frame pixels (``sample_prompts``).
3. Fine filtering (``eliminate_redundant``): the predicted prompts are decoded first; their masks make
   a prompt-elimination map (PEM: cosine similarity of each embedding cell to the mean embedding of
   the accepted mask covering it, 0 where none does). The points of a coarse grid (``fill_grid``) are
   the second batch's candidates: one whose PEM exceeds an adaptive threshold (``elim_thresh`` times
   the PEM's mean over the frame) lies on an object already segmented and is not decoded. What the
   predictor missed is still found, at the cost of a few prompts, not of a whole grid. Fill points
   where the smoothed PCM is below ``fill_min_conf`` are not candidates: where the predictor expects
   no mask at all (a textured floor, a blank wall), a decoded point gives none.

Smoothing and spacing are in cells of a 64-cell grid over the model input (MobileSAM's embedding
grid, where the paper's factors apply), whatever the PCM's own resolution, so the same parameter
values mean the same image distances for every model.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..datatypes import MaskBatch
from ..filters import greedy_keep
from .base import EncodedImage, PromptStrategy, at_points
from .grid import GridPrompts

REFERENCE_CELLS = 64  # the grid the smoothing and spacing factors are expressed in


class PromptPredictor(nn.Module):
    """Embedding (B, C, h, w) -> PCM logits (B, 1, h * upscale, w * upscale).

    Two convolutions at embedding resolution, a learned upsampling when the embedding grid is coarse
    (the small model's is 16x16), and a 1x1 head: a few percent of the encoder's work.
    """

    def __init__(self, embed_dim: int, hidden: int = 64, upscale: int = 1) -> None:
        super().__init__()
        self.embed_dim, self.hidden, self.upscale = embed_dim, hidden, upscale
        self.body = nn.Sequential(
            nn.Conv2d(embed_dim, hidden, 1), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
        )
        self.up = (nn.Sequential(nn.ConvTranspose2d(hidden, hidden, upscale, stride=upscale), nn.GELU())
                   if upscale > 1 else nn.Identity())
        self.head = nn.Conv2d(hidden, 1, 3, padding=1)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(self.body(embedding)))

    def config(self) -> dict:
        return {"embed_dim": self.embed_dim, "hidden": self.hidden, "upscale": self.upscale}


def predictor_beside(model_file: str | Path) -> Path:
    """Where a model's predictor lives by default: ``mobile_sam.pt`` -> ``mobile_sam_aop.pt``."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.stem + "_aop.pt")


def save_predictor(path: str | Path, predictor: PromptPredictor, **metadata) -> None:
    torch.save({"config": predictor.config(), "state_dict": predictor.state_dict(), **metadata}, Path(path))


def load_predictor(path: str | Path, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[PromptPredictor, dict]:
    """A trained predictor and its file's metadata; clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AoP prompt predictor {path} not found: train one for your model with "
                                "`python -m sam_ros.train.train_aop --checkpoint <model> --out <file>` and "
                                "set aop_checkpoint to it")
    stored = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(stored, dict) or "state_dict" not in stored or "config" not in stored:
        raise ValueError(f"{path} is not an AoP prompt predictor file (no config/state_dict)")
    predictor = PromptPredictor(**stored["config"])
    predictor.load_state_dict(stored["state_dict"])
    metadata = {k: v for k, v in stored.items() if k not in ("config", "state_dict")}
    return predictor.to(device, dtype).eval(), metadata


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of (B, 1, H, W), truncated at 3 sigma, edges replicated."""
    if sigma <= 0:
        return image
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(image, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(rows, kernel.view(1, 1, -1, 1))


def valid_cells(pcm_size: int, encoded: EncodedImage) -> tuple[int, int]:
    """Rows and columns of a PCM over the padded input that cover the frame (the rest is padding)."""
    side = encoded.image.shape[-1]
    h_in, w_in = encoded.input_size
    return math.ceil(h_in * pcm_size / side), math.ceil(w_in * pcm_size / side)


def smooth_confidence(pcm: torch.Tensor, smoothing: float) -> torch.Tensor:
    """(S, S) probabilities over the padded model input, Gaussian-smoothed with sigma ``smoothing`` in cells
    of the 64-cell reference grid (whatever S is)."""
    return gaussian_blur(pcm.float()[None, None], smoothing * pcm.shape[-1] / REFERENCE_CELLS)[0, 0]


def sample_prompts(smooth: torch.Tensor, encoded: EncodedImage, conf_thresh: float,
                   spacing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coarse sampling: prompts (N, 2) in frame pixels (x, y) and their confidences, most confident first.

    ``smooth`` is the (S, S) smoothed confidence over the padded model input (``smooth_confidence``);
    ``spacing`` (minimum distance between prompts) is in cells of the 64-cell reference grid.
    """
    size = smooth.shape[-1]
    cells = size / REFERENCE_CELLS
    rows, cols = valid_cells(size, encoded)
    smooth = smooth[:rows, :cols]
    peaks = (smooth == F.max_pool2d(smooth[None, None], 3, 1, 1)[0, 0]) & (smooth >= conf_thresh)
    ys, xs = torch.nonzero(peaks, as_tuple=True)
    confidence = smooth[ys, xs]
    order = torch.argsort(confidence, descending=True, stable=True)
    centres = torch.stack([xs[order], ys[order]], dim=1).float() + 0.5
    confidence = confidence[order]
    if spacing > 0 and len(centres) > 1:
        keep = greedy_keep(torch.cdist(centres, centres) < spacing * cells)
        centres, confidence = centres[keep], confidence[keep]
    # PCM cells -> model-input pixels -> frame pixels (inside the frame).
    height, width = encoded.original_size
    points = encoded.to_frame(centres * (encoded.image.shape[-1] / size))
    points = torch.minimum(points, points.new_tensor([width - 0.5, height - 0.5]))
    return points, confidence


def embedding_features(encoded: EncodedImage) -> torch.Tensor:
    """(h, w, C) unit-length embedding vectors: cosine similarity is then a dot product."""
    return F.normalize(encoded.embedding[0].float().permute(1, 2, 0), dim=-1)


def eliminate_redundant(candidates: torch.Tensor, reference_logits: torch.Tensor, encoded: EncodedImage,
                        elim_thresh: float, mask_threshold: float = 0.0) -> torch.Tensor:
    """Fine filtering: which ``candidates`` (N, 2 frame pixels) still need decoding, as a (N,) bool.

    ``reference_logits`` (M, s, s) are the accepted masks of the first batch over the padded input.
    The prompt-elimination map (PEM) at a cell is the cosine similarity between its embedding and the
    mean embedding of the accepted mask covering it (the best such mask; 0 where none covers it). A
    candidate is redundant when its PEM value exceeds ``elim_thresh`` times the PEM's mean over the
    frame: adaptive, so that images whose embeddings are all alike do not lose every prompt.
    """
    keep = torch.ones(len(candidates), dtype=torch.bool, device=candidates.device)
    if len(candidates) == 0 or len(reference_logits) == 0:
        return keep
    features = embedding_features(encoded)                                          # (h, w, C)
    h, w = features.shape[:2]
    coverage = F.adaptive_avg_pool2d((reference_logits > mask_threshold).float()[:, None], (h, w))[:, 0] > 0.5
    sums = torch.einsum("mhw,hwc->mc", coverage.to(features.dtype), features)
    present = coverage.flatten(1).any(1)
    if not present.any():
        return keep
    means = F.normalize(sums[present], dim=-1)                                     # (M', C)
    coverage = coverage[present]
    similarity = torch.einsum("hwc,mc->mhw", features, means)                       # (M', h, w)
    pem = torch.where(coverage, similarity, similarity.new_zeros(())).amax(0).clamp(min=0)
    rows, cols = valid_cells(h, encoded)
    threshold = elim_thresh * pem[:rows, :cols].mean()
    cells = encoded.to_input(candidates.float()) * (h / encoded.image.shape[-1])  # frame pixels -> embedding cells
    cx = cells[:, 0].long().clamp(0, w - 1)
    cy = cells[:, 1].long().clamp(0, h - 1)
    return ~(pem[cy, cx] > threshold)


class AoPPrompts(PromptStrategy):
    """Prompts where a trained predictor expects distinct objects; redundant ones are never decoded."""

    def __init__(self, predictor: PromptPredictor, smoothing: float = 2.0, conf_thresh: float = 0.2,
                 spacing: float = 6.0, elim_thresh: float = 1.0, fill_grid: int = 16,
                 mask_threshold: float = 0.0, fill_min_conf: float = 0.0) -> None:
        self.predictor = predictor
        self.smoothing, self.conf_thresh, self.spacing = smoothing, conf_thresh, spacing
        self.elim_thresh, self.fill_grid, self.mask_threshold = elim_thresh, fill_grid, mask_threshold
        self.fill_min_conf = fill_min_conf

    @torch.inference_mode()
    def confidence_map(self, encoded: EncodedImage) -> torch.Tensor:
        """(S, S) prompt confidence in [0, 1] over the padded model input."""
        return self.predictor(encoded.embedding.to(next(self.predictor.parameters()).dtype))[0, 0].float().sigmoid()

    def candidates(self, encoded: EncodedImage) -> tuple[torch.Tensor, torch.Tensor]:
        """This frame's predicted prompts and the fill-grid points where the smoothed confidence reaches
        ``fill_min_conf`` (frame pixels): the points a full AoP pass considers."""
        smooth = smooth_confidence(self.confidence_map(encoded), self.smoothing)
        points, _ = sample_prompts(smooth, encoded, self.conf_thresh, self.spacing)
        if not self.fill_grid:
            return points, points.new_zeros(0, 2)
        grid = GridPrompts(self.fill_grid).points(encoded).to(points.device)
        if self.fill_min_conf > 0:
            grid = grid[at_points(smooth, grid, encoded) >= self.fill_min_conf]
        return points, grid

    def propose(self, encoded: EncodedImage, decode):
        points, grid = self.candidates(encoded)
        reference = decode(points)
        if not len(grid):
            return reference
        rest = grid[eliminate_redundant(grid, reference.logits, encoded, self.elim_thresh, self.mask_threshold)]
        if len(rest) == 0:
            return reference
        return MaskBatch.cat([reference, decode(rest)])
