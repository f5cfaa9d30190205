import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference  # noqa: F401  (puts the torchvision stand-in on the path)
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from sam_ros.decode import FACTORED_COPIES, decode_points, prompts_per_call, valid_region
from sam_ros.filters import stability_score
from sam_ros.model import TINY, build_sam
from sam_ros.prompts import EncodedImage

FILTERS = dict(stability_offset=1.0, mask_threshold=0.0)


@pytest.fixture(scope="module")
def model():
    """A seeded random small model whose masks have logits well away from 0 (as trained ones do).

    A random hyper-network gives logits of magnitude << 1, hence stability 0 everywhere; scaled up, the
    stability filter has something to decide (test/reference.py does the same to the reference).
    """
    torch.manual_seed(0)
    model = build_sam(TINY).eval()
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(100.0)
    return model


@pytest.fixture(scope="module")
def encoded(model):
    """A random image embedding of a 120x160 frame (resized to 192x256 inside the 256 model input)."""
    side = TINY.embedding_size
    embedding = torch.randn(1, TINY.prompt_embed_dim, side, side, generator=torch.Generator().manual_seed(1))
    return EncodedImage(embedding, torch.zeros(1, 3, 256, 256), (120, 160), (192, 256))


@pytest.fixture(scope="module")
def points():
    return torch.rand(12, 2, generator=torch.Generator().manual_seed(2)) * torch.tensor([160.0, 120.0])


def test_dropping_before_upscaling_equals_filtering_all_masks(model, encoded, points):
    """The early exit must not change any surviving mask: compare with decoding everything, then filtering."""
    iou_thresh, stability_thresh = 0.0, 0.9
    with torch.inference_mode():
        coords = encoded.to_input(points)[:, None, :]
        sparse = model.prompt_encoder.embed_points(coords, torch.ones(12, 1, dtype=torch.int64))
        all_masks, all_iou = model.mask_decoder(encoded.embedding, model.prompt_encoder.get_dense_pe(), sparse,
                                                model.prompt_encoder.dense_no_mask(), multimask_output=True)
    all_masks, all_iou = all_masks.flatten(0, 1), all_iou.flatten()
    all_stability = stability_score(valid_region(all_masks, encoded), 0.0, 1.0)
    by_iou = all_iou > iou_thresh
    keep = by_iou & (all_stability >= stability_thresh)
    assert 0 < keep.sum() < by_iou.sum() < len(keep), "each threshold should drop some masks"

    batch = decode_points(model, encoded, points, pred_iou_thresh=iou_thresh, stability_thresh=stability_thresh,
                          max_memory_mb=1024, **FILTERS)
    assert len(batch) == keep.sum()
    assert torch.allclose(batch.logits, all_masks[keep], atol=1e-4)
    assert torch.allclose(batch.iou, all_iou[keep], atol=1e-6)
    assert torch.allclose(batch.stability, all_stability[keep])
    assert torch.equal(batch.points, points.repeat_interleave(3, dim=0)[keep])


def test_one_decoder_call_unless_the_memory_cap_forces_chunks(model, encoded, points, monkeypatch):
    calls = []
    decode_tokens = model.mask_decoder.decode_tokens

    def counted(*args):
        calls.append(args[2].shape[0])  # prompts in this call
        return decode_tokens(*args)

    monkeypatch.setattr(model.mask_decoder, "decode_tokens", counted)
    kwargs = dict(pred_iou_thresh=-10.0, stability_thresh=0.0, **FILTERS)
    one = decode_points(model, encoded, points, max_memory_mb=1024, **kwargs)
    assert calls == [12]
    fits = prompts_per_call(encoded.embedding, 1)
    assert fits < 12, "a 1 MB cap must split this model's 12 prompts"
    calls.clear()
    single = decode_points(model, encoded, points, max_memory_mb=1, **kwargs)
    assert len(calls) == -(-12 // fits) and sum(calls) == 12 and max(calls) <= fits
    assert len(one) == len(single) == 36
    assert torch.allclose(one.logits, single.logits, atol=1e-4) and torch.allclose(one.iou, single.iou, atol=1e-6)
    assert torch.equal(one.points, single.points)


def test_hopeless_prompts_are_never_upscaled(model, encoded, points, monkeypatch):
    upscaled = []
    upscale_masks = model.mask_decoder.upscale_masks

    def counted(decoded, prompt_index, token_index, prompts_per_pass=None):
        upscaled.append(len(prompt_index))
        return upscale_masks(decoded, prompt_index, token_index, prompts_per_pass)

    monkeypatch.setattr(model.mask_decoder, "upscale_masks", counted)
    batch = decode_points(model, encoded, points, pred_iou_thresh=0.0, stability_thresh=0.0, max_memory_mb=1024,
                          **FILTERS)
    assert upscaled == [len(batch)] and len(batch) < 36
    upscaled.clear()
    nothing = decode_points(model, encoded, points, pred_iou_thresh=10.0, stability_thresh=0.0, max_memory_mb=1024,
                            **FILTERS)
    assert upscaled == [] and len(nothing) == 0 and nothing.logits.shape[1:] == (64, 64)


def test_no_prompts_give_an_empty_batch(model, encoded):
    batch = decode_points(model, encoded, torch.zeros(0, 2), pred_iou_thresh=0.0, stability_thresh=0.0,
                          max_memory_mb=1024, **FILTERS)
    assert len(batch) == 0 and batch.logits.shape == (0, 64, 64) and batch.points.shape == (0, 2)


@pytest.mark.parametrize("size", [(480, 640), (1080, 1920), (237, 301)])
def test_points_map_to_the_model_input_like_the_reference(size):
    transform = ResizeLongestSide(1024)
    h_in, w_in = transform.get_preprocess_shape(*size, 1024)
    encoded = EncodedImage(torch.zeros(1, 1, 1, 1), torch.zeros(1), size, (h_in, w_in))
    pts = np.random.RandomState(0).rand(20, 2) * np.array([size[1], size[0]])
    expected = transform.apply_coords(pts.copy(), size)
    assert np.allclose(encoded.to_input(torch.from_numpy(pts)).numpy(), expected)
    assert np.allclose(encoded.to_frame(encoded.to_input(torch.from_numpy(pts))).numpy(), pts)


def test_memory_cap_counts_the_measured_working_set():
    """MobileSAM-sized tokens (64x64x256 fp32 = 4 MiB): 1.25 copies per prompt in the factored transformer beside
    one 32 MiB upscaling pass on a CPU; half as much per prompt in bf16; a tiny cap still decodes one prompt at a
    time. Prompts of several views (own embeddings, materialised tokens) take 2.25 + 2 copies."""
    cpu = torch.empty(1, 256, 64, 64)
    assert prompts_per_call(cpu, 2048) == (2048 - 32) // 5
    assert prompts_per_call(cpu, 1) == 1
    assert prompts_per_call(cpu.bfloat16(), 2048) == (2048 - 32) * 2 // 5
    assert prompts_per_call(cpu, 2048, shared=False) == (2048 - 32) // 17


def test_factored_transformer_stays_within_its_memory_figure():
    """The factored transformer's peak (RSS, in a fresh process) grows by at most FACTORED_COPIES copies of a
    prompt's image tokens per prompt: 64 more MobileSAM-size prompts."""
    script = """
import resource, sys, torch
from sam_ros.model import VIT_T, build_sam
torch.manual_seed(0)
decoder, encoder = (lambda m: (m.mask_decoder.eval(), m.prompt_encoder))(build_sam(VIT_T))
embedding = torch.randn(1, 256, 64, 64)
with torch.inference_mode():
    args = (embedding, encoder.get_dense_pe(), encoder.embed_points(torch.rand(80, 1, 2) * 1024, torch.ones(80, 1)),
            encoder.dense_no_mask())
    decoder.decode_tokens(*args[:2], args[2][:16], args[3])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    decoder.decode_tokens(*args)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""
    grown_mb = float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                    cwd=Path(__file__).resolve().parents[1],
                                    env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout)
    assert grown_mb <= 64 * FACTORED_COPIES * 4, grown_mb


def test_memory_cap_leaves_the_gpu_allocator_its_headroom():
    """On a GPU (any device but the CPU; 'meta' stands in here) the transformer's working set and one
    upscaling pass fit in the cap less the allocator's share, and a small cap (a Jetson's) still decodes
    several prompts per call: the upscaling pass shrinks with it."""
    from sam_ros.decode import ALLOCATOR_HEADROOM, TRANSFORMER_COPIES, UPSCALE_COPIES, upscale_prompts_per_pass

    gpu = torch.empty(1, 256, 64, 64, device="meta", dtype=torch.float16)
    token_mb = 2.0  # 64 x 64 x 256 fp16
    for cap in (64, 256, 1024, 2048, 8192):
        n = prompts_per_call(gpu, cap)
        used = n * TRANSFORMER_COPIES * token_mb + upscale_prompts_per_pass(gpu, cap) * UPSCALE_COPIES * token_mb
        usable = cap * (1 - ALLOCATOR_HEADROOM["cuda"])
        assert used <= usable < used + TRANSFORMER_COPIES * token_mb
        assert n * TRANSFORMER_COPIES * token_mb >= usable / 2, "the upscaling pass takes at most a quarter"
