"""The factored two-way transformer (sam_ros/model/factored.py) against segment-anything's, which copies the
image embedding per prompt and materialises every prompt's image tokens."""
import copy

import pytest
import torch

from reference import reference_sam_around
from sam_ros.model import TINY, build_sam
from sam_ros.model.factored import FactoredKeys

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def models():
    """A tiny model whose transformer weights are all random, LayerNorm weights and biases included (they
    enter the factors), and the reference transformer holding the same weights."""
    torch.manual_seed(11)
    model = build_sam(TINY).eval()
    generator = torch.Generator().manual_seed(12)
    with torch.no_grad():
        for module in model.mask_decoder.transformer.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.5)
    return model, reference_sam_around(model).mask_decoder.transformer


def _inputs(batch: int, per_prompt: bool):
    generator = torch.Generator().manual_seed(batch)
    c, s = TINY.prompt_embed_dim, TINY.embedding_size
    embedding = torch.randn(batch if per_prompt else 1, c, s, s, generator=generator)
    return embedding, torch.randn(batch, 7, c, generator=generator)


def _reference(reference, model, embedding, tokens):
    pe = model.prompt_encoder.get_dense_pe()
    with torch.no_grad():
        return reference(embedding.expand(len(tokens), -1, -1, -1), pe, tokens)


def _ours(model, embedding, tokens, dtype=torch.float32):
    transformer = copy.deepcopy(model.mask_decoder.transformer).to(dtype)
    with torch.inference_mode():
        queries, keys = transformer(embedding.to(dtype), model.prompt_encoder.get_dense_pe().to(dtype),
                                    tokens.to(dtype))
        order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(0))
        picked = keys[order]  # survivors in any order, materialised from the factors
        return queries.float(), torch.empty_like(picked).index_copy_(0, order, picked).float(), keys


@pytest.mark.parametrize("batch", [1, 5, 19])  # 19: more than one chunk of prompts, the last one partial
def test_factored_transformer_matches_the_reference_in_fp32(models, batch):
    model, reference = models
    embedding, tokens = _inputs(batch, per_prompt=False)
    expected_queries, expected_keys = _reference(reference, model, embedding, tokens)
    queries, keys, factored = _ours(model, embedding, tokens)
    assert isinstance(factored, FactoredKeys)
    assert torch.allclose(queries, expected_queries, atol=1e-5), (queries - expected_queries).abs().max()
    assert torch.allclose(keys, expected_keys, atol=1e-5), (keys - expected_keys).abs().max()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_factored_transformer_in_half_precision_stays_near_fp32(models, dtype):
    """LayerNorm statistics are summed in fp32; the rest carries the half type's rounding (2^-8 for bf16)."""
    model, reference = models
    embedding, tokens = _inputs(6, per_prompt=False)
    expected_queries, expected_keys = _reference(reference, model, embedding, tokens)
    queries, keys, _ = _ours(model, embedding, tokens, dtype)
    tolerance = 0.03 if dtype == torch.bfloat16 else 0.005  # measured: 1.1% and 0.16% of the largest value
    assert (queries - expected_queries).abs().max() < tolerance * expected_queries.abs().max()
    assert (keys - expected_keys).abs().max() < tolerance * expected_keys.abs().max()


def test_prompt_specific_embeddings_and_autograd_keep_materialised_tokens(models):
    """Prompts attending to their own view's embedding (or a dense mask prompt), and training under autograd,
    take the materialised path: image tokens as a tensor, equal to the reference's."""
    model, reference = models
    embedding, tokens = _inputs(4, per_prompt=True)
    expected_queries, expected_keys = _reference(reference, model, embedding, tokens)
    with torch.inference_mode():
        queries, keys = model.mask_decoder.transformer(embedding, model.prompt_encoder.get_dense_pe(), tokens)
    assert isinstance(keys, torch.Tensor)
    assert torch.allclose(queries, expected_queries, atol=1e-5) and torch.allclose(keys, expected_keys, atol=1e-5)
    shared, tokens = _inputs(3, per_prompt=False)
    expected_queries, expected_keys = _reference(reference, model, shared, tokens)
    queries, keys = model.mask_decoder.transformer(shared, model.prompt_encoder.get_dense_pe(), tokens)
    assert keys.requires_grad and torch.allclose(keys.detach(), expected_keys, atol=1e-5)
