"""One batched prompt-encoder + mask-decoder pass over all point prompts, filtered before upscaling."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .filters import stability_score
from .model import Sam
from .model.mask_decoder import MaskDecoder
from .prompts.base import EncodedImage

# Working memory per prompt, in copies of its image tokens (MobileSAM fp32: 64x64x256 = 4 MiB), as measured:
TRANSFORMER_COPIES = 2.25  # the transformer's peak, 2.1 (its image-side projections are folded into the tokens)
UPSCALE_COPIES = 4      # the channels-last output upscaling of one prompt
# Prompts are upscaled in passes of this many bytes: on a CPU small enough to stay in cache (three times
# faster than one large pass, measured), on a GPU large enough to keep it busy.
UPSCALE_PASS_BYTES = {"cpu": 32 * 2**20, "cuda": 256 * 2**20}
# Share of the cap left to the device's allocator: CUDA's caching allocator rounds blocks up (to 2 MiB
# above 1 MiB) and keeps freed blocks reserved for reuse, so it holds more than the tensors need.
# An estimate until measured on a GPU (bench/gpu_check.py prints peak reserved memory against the cap).
ALLOCATOR_HEADROOM = {"cpu": 0.0, "cuda": 0.2}


@dataclass
class MaskBatch:
    """Candidate masks at the decoder's low resolution, with the scores the filters use."""

    logits: torch.Tensor     # (K, s, s) low-res logits over the padded model input
    iou: torch.Tensor        # (K,) predicted IoU
    stability: torch.Tensor  # (K,) stability score (low-res)
    points: torch.Tensor     # (K, 2) the point prompt of each mask, frame pixels (x, y)

    def __len__(self) -> int:
        return self.logits.shape[0]

    def select(self, index: torch.Tensor) -> "MaskBatch":
        return MaskBatch(self.logits[index], self.iou[index], self.stability[index], self.points[index])

    @staticmethod
    def cat(batches: list["MaskBatch"]) -> "MaskBatch":
        return MaskBatch(*(torch.cat([getattr(b, name) for b in batches]) for name in
                           ("logits", "iou", "stability", "points")))


def upscale_prompts_per_pass(embedding: torch.Tensor) -> int:
    """How many prompts one upscaling pass takes (see ``UPSCALE_PASS_BYTES``)."""
    budget = UPSCALE_PASS_BYTES.get(embedding.device.type, UPSCALE_PASS_BYTES["cuda"])
    return max(1, budget // (UPSCALE_COPIES * _token_bytes(embedding)))


def prompts_per_call(embedding: torch.Tensor, max_memory_mb: int) -> int:
    """How many prompts one decoder call may take within ``max_memory_mb`` (at least one), the
    allocator's headroom (``ALLOCATOR_HEADROOM``) included."""
    upscale = upscale_prompts_per_pass(embedding) * UPSCALE_COPIES * _token_bytes(embedding)
    usable = max_memory_mb * 2**20 * (1.0 - ALLOCATOR_HEADROOM.get(embedding.device.type, ALLOCATOR_HEADROOM["cuda"]))
    return max(1, int((usable - upscale) // (TRANSFORMER_COPIES * _token_bytes(embedding))))


def _token_bytes(embedding: torch.Tensor) -> int:
    return embedding[0].numel() * embedding.element_size()


@torch.inference_mode()
def decode_points(model: Sam, encoded: EncodedImage, points: torch.Tensor, *, pred_iou_thresh: float,
                  stability_thresh: float, stability_offset: float, mask_threshold: float,
                  max_memory_mb: int) -> MaskBatch:
    """Decode every point (N, 2) with multimask output and keep masks passing IoU and stability.

    All prompts go through ONE decoder call unless their working memory exceeds ``max_memory_mb``,
    then through as few equal chunks as fit. Predicted IoU is known before the output upscaling, so
    hopeless (prompt, mask) pairs are never upscaled.
    """
    device = encoded.embedding.device
    points = points.to(device=device, dtype=torch.float32)
    if points.numel() == 0:
        return _empty(encoded)
    fits = prompts_per_call(encoded.embedding, max_memory_mb)
    chunk = -(-points.shape[0] // -(-points.shape[0] // fits))  # ceil(N / number of chunks)
    encoder, decoder = model.prompt_encoder, model.mask_decoder
    dense_pe = encoder.get_dense_pe().to(encoded.embedding.dtype)
    no_mask = encoder.dense_no_mask()
    batches = []
    for start in range(0, points.shape[0], chunk):  # each chunk's image tokens are freed before the next
        part = points[start:start + chunk]
        coords = encoded.to_input(part)[:, None, :]
        labels = torch.ones(coords.shape[:2], device=device, dtype=torch.int64)
        sparse = encoder.embed_points(coords, labels).to(encoded.embedding.dtype)
        batches.append(_decode_chunk(decoder, encoded, sparse, part, dense_pe, no_mask, pred_iou_thresh,
                                     stability_thresh, stability_offset, mask_threshold))
    return MaskBatch.cat(batches)


def _decode_chunk(decoder: MaskDecoder, encoded: EncodedImage, sparse: torch.Tensor, points: torch.Tensor,
                  dense_pe: torch.Tensor, no_mask: torch.Tensor, pred_iou_thresh: float, stability_thresh: float,
                  stability_offset: float, mask_threshold: float) -> MaskBatch:
    decoded = decoder.decode_tokens(encoded.embedding, dense_pe, sparse, no_mask)
    iou = decoded.iou_pred[:, 1:].float()  # the three multimask outputs
    prompt_index, token_index = torch.nonzero(iou > pred_iou_thresh, as_tuple=True)
    if prompt_index.numel() == 0:
        return _empty(encoded)
    logits = decoder.upscale_masks(decoded, prompt_index, token_index + 1,
                                   upscale_prompts_per_pass(encoded.embedding)).float()
    stability = stability_score(valid_region(logits, encoded), mask_threshold, stability_offset)
    keep = stability >= stability_thresh
    return MaskBatch(logits[keep], iou[prompt_index, token_index][keep], stability[keep], points[prompt_index[keep]])


def valid_region(lowres: torch.Tensor, encoded: EncodedImage) -> torch.Tensor:
    """The part of low-res masks (K, s, s) that covers the frame rather than the padding."""
    h_in, w_in = encoded.input_size
    return lowres[:, :(h_in + 3) // 4, :(w_in + 3) // 4]


def _empty(encoded: EncodedImage) -> MaskBatch:
    s = 4 * encoded.embedding.shape[-1]
    device = encoded.embedding.device
    return MaskBatch(torch.empty(0, s, s, device=device), torch.empty(0, device=device),
                     torch.empty(0, device=device), torch.empty(0, 2, device=device))
