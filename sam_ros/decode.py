"""One batched prompt-encoder + mask-decoder pass over all point prompts, filtered before upscaling."""
from __future__ import annotations

import torch

from .datatypes import EncodedImage, EncodedViews, MaskBatch
from .filters import stability_score
from .model import Sam
from .model.mask_decoder import MaskDecoder

__all__ = ["MaskBatch", "decode_points", "prompts_per_call", "transformer_copies", "upscale_prompts_per_pass",
           "valid_region"]

# Working memory per prompt, in copies of its image tokens (MobileSAM fp32: 64x64x256 = 4 MiB), as measured:
FACTORED_COPIES = 1.25  # the transformer on a CPU with one shared embedding, 0.87-1.0 (fp32 and bf16, varying
                        # with the allocator): its image tokens stay factored (model/factored.py), two (7 x 8,
                        # 64x64) attention maps and chunk temporaries; the chunks' fixed 9-18 MB fit the margin
TRANSFORMER_COPIES = 2.25  # the materialised transformer's peak (a GPU, several views), 2.1 (its image-side
                           # projections are folded into the tokens)
GATHERED_COPIES = 2     # with several views: each prompt's own view embedding, and it plus the dense prompt
UPSCALE_COPIES = 4      # the channels-last output upscaling of one prompt
# Prompts are upscaled in passes of this many bytes: on a CPU small enough to stay in cache (three times
# faster than one large pass, measured), on a GPU large enough to keep it busy; and at most this share of
# the cap, so a small cap (a Jetson's) still decodes many prompts per call.
UPSCALE_PASS_BYTES = {"cpu": 32 * 2**20, "cuda": 256 * 2**20}
UPSCALE_PASS_SHARE = 0.25
# Share of the cap left to the device's allocator: CUDA's caching allocator rounds blocks up (to 2 MiB
# above 1 MiB) and keeps freed blocks reserved for reuse, so it holds more than the tensors need.
# An estimate until measured on a GPU (bench/gpu_check.py prints peak reserved memory against the cap).
ALLOCATOR_HEADROOM = {"cpu": 0.0, "cuda": 0.2}


def upscale_prompts_per_pass(embedding: torch.Tensor, max_memory_mb: int) -> int:
    """How many prompts one upscaling pass takes (see ``UPSCALE_PASS_BYTES``)."""
    budget = min(UPSCALE_PASS_BYTES.get(embedding.device.type, UPSCALE_PASS_BYTES["cuda"]),
                 UPSCALE_PASS_SHARE * _usable_bytes(embedding, max_memory_mb))
    return max(1, int(budget // (UPSCALE_COPIES * _token_bytes(embedding))))


def prompts_per_call(embedding: torch.Tensor, max_memory_mb: int, shared: bool = True) -> int:
    """How many prompts one decoder call may take within ``max_memory_mb`` (at least one), the allocator's
    headroom (``ALLOCATOR_HEADROOM``) included.

    ``shared`` False: prompts of several views, each with its own copy of its view's embedding.
    """
    upscale = upscale_prompts_per_pass(embedding, max_memory_mb) * UPSCALE_COPIES * _token_bytes(embedding)
    copies = transformer_copies(embedding, shared) + (0 if shared else GATHERED_COPIES)
    return max(1, int((_usable_bytes(embedding, max_memory_mb) - upscale) // (copies * _token_bytes(embedding))))


def _usable_bytes(embedding: torch.Tensor, max_memory_mb: int) -> float:
    """The cap less the allocator's headroom on this device."""
    return max_memory_mb * 2**20 * (1.0 - ALLOCATOR_HEADROOM.get(embedding.device.type, ALLOCATOR_HEADROOM["cuda"]))


def transformer_copies(embedding: torch.Tensor, shared: bool) -> float:
    """The transformer's working memory per prompt, in copies of its image tokens: factored on a CPU when all
    prompts share one embedding (the path ``TwoWayTransformer`` takes there), materialised otherwise."""
    return FACTORED_COPIES if shared and embedding.device.type == "cpu" else TRANSFORMER_COPIES


def _token_bytes(embedding: torch.Tensor) -> int:
    return embedding[0].numel() * embedding.element_size()


@torch.inference_mode()
def decode_points(model: Sam, encoded: EncodedImage | EncodedViews, points: torch.Tensor, *, pred_iou_thresh: float,
                  stability_thresh: float, stability_offset: float, mask_threshold: float,
                  max_memory_mb: int, view_index: torch.Tensor | None = None,
                  multimask_output: bool = True) -> MaskBatch:
    """Decode every point (N, 2, frame pixels) and keep masks passing IoU and stability.

    All prompts go through ONE decoder call unless their working memory exceeds ``max_memory_mb``,
    then through as few equal chunks as fit. Predicted IoU is known before the output upscaling, so
    hopeless (prompt, mask) pairs are never upscaled. With several views of the frame (crops, scales:
    ``EncodedViews``), ``view_index`` (N,) names each point's view, and each prompt attends to its own
    view's embedding within the same call. ``multimask_output`` off keeps the single-mask output only.
    """
    views = encoded if isinstance(encoded, EncodedViews) else EncodedViews.single(encoded)
    device = views.embedding.device
    points = points.to(device=device, dtype=torch.float32)
    view_index = (torch.zeros(points.shape[0], dtype=torch.long, device=device) if view_index is None
                  else view_index.to(device=device, dtype=torch.long))
    if points.numel() == 0:
        return _empty(views)
    shared = len(views) == 1  # one image embedding for all prompts: never copied per prompt
    fits = prompts_per_call(views.embedding[:1], max_memory_mb, shared)
    per_pass = upscale_prompts_per_pass(views.embedding, max_memory_mb)
    chunk = -(-points.shape[0] // -(-points.shape[0] // fits))  # ceil(N / number of chunks)
    encoder, decoder = model.prompt_encoder, model.mask_decoder
    dense_pe = encoder.get_dense_pe().to(views.embedding.dtype)
    no_mask = encoder.dense_no_mask()
    origin, scale = _view_mapping(views)
    batches = []
    for start in range(0, points.shape[0], chunk):  # each chunk's image tokens are freed before the next
        part, part_views = points[start:start + chunk], view_index[start:start + chunk]
        coords = ((part - origin[part_views]) * scale[part_views])[:, None, :]
        labels = torch.ones(coords.shape[:2], device=device, dtype=torch.int64)
        sparse = encoder.embed_points(coords, labels).to(views.embedding.dtype)
        embedding = views.embedding if shared else views.embedding[part_views]
        batches.append(_decode_chunk(decoder, views, embedding, sparse, part, part_views, dense_pe, no_mask,
                                     pred_iou_thresh, stability_thresh, stability_offset, mask_threshold,
                                     multimask_output, per_pass))
    return MaskBatch.cat(batches)


def _view_mapping(views: EncodedViews) -> tuple[torch.Tensor, torch.Tensor]:
    """Per view: the frame-pixel origin (V, 2) and the frame -> model-input scale (V, 2), both as x, y."""
    origin = views.boxes()[:, :2]
    scale = torch.tensor([[v.input_size[1] / v.view_size[1], v.input_size[0] / v.view_size[0]] for v in views.views],
                         device=origin.device)
    return origin, scale


def _decode_chunk(decoder: MaskDecoder, views: EncodedViews, embedding: torch.Tensor, sparse: torch.Tensor,
                  points: torch.Tensor, point_views: torch.Tensor, dense_pe: torch.Tensor, no_mask: torch.Tensor,
                  pred_iou_thresh: float, stability_thresh: float, stability_offset: float, mask_threshold: float,
                  multimask_output: bool, upscale_per_pass: int) -> MaskBatch:
    decoded = decoder.decode_tokens(embedding, dense_pe, sparse, no_mask)
    first = 1 if multimask_output else 0  # token 0 is the single-mask output, 1..3 the multimask ones
    last = decoder.num_mask_tokens if multimask_output else 1
    iou = decoded.iou_pred[:, first:last].float()
    prompt_index, token_index = torch.nonzero(iou > pred_iou_thresh, as_tuple=True)
    if prompt_index.numel() == 0:
        return _empty(views)
    logits = decoder.upscale_masks(decoded, prompt_index, token_index + first,
                                   upscale_per_pass).float()
    mask_views = point_views[prompt_index]
    stability = stability_score(_valid_logits(logits, views, mask_views), mask_threshold, stability_offset)
    keep = stability >= stability_thresh
    return MaskBatch(logits[keep], iou[prompt_index, token_index][keep], stability[keep], points[prompt_index[keep]],
                     mask_views[keep] if len(views) > 1 else None)


def _valid_logits(logits: torch.Tensor, views: EncodedViews, mask_views: torch.Tensor) -> torch.Tensor:
    """The logits restricted to the frame part of each mask's view (padding excluded from the scores)."""
    if len(views) == 1:
        return valid_region(logits, views.views[0])
    valid = torch.zeros(len(views), *logits.shape[1:], dtype=torch.bool, device=logits.device)
    for i, view in enumerate(views.views):
        h_in, w_in = view.input_size
        valid[i, :(h_in + 3) // 4, :(w_in + 3) // 4] = True
    return logits.masked_fill(~valid[mask_views], float("-inf"))


def valid_region(lowres: torch.Tensor, encoded: EncodedImage) -> torch.Tensor:
    """The part of low-res masks (K, s, s) that covers the view rather than the padding."""
    h_in, w_in = encoded.input_size
    return lowres[:, :(h_in + 3) // 4, :(w_in + 3) // 4]


def _empty(views: EncodedViews) -> MaskBatch:
    s = 4 * views.embedding.shape[-1]
    device = views.embedding.device
    return MaskBatch(torch.empty(0, s, s, device=device), torch.empty(0, device=device),
                     torch.empty(0, device=device), torch.empty(0, 2, device=device),
                     None if len(views) == 1 else torch.empty(0, dtype=torch.long, device=device))
