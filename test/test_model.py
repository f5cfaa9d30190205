"""Our MobileSAM against the reference implementation, with the same seeded weights."""
import pytest
import torch

from reference import reference_mobile_sam
from sam_ros.model import TINY, VIT_T, CheckpointNotFoundError, build_sam, load_sam, save_checkpoint

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    reference = reference_mobile_sam(seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "mobile_sam.pt"
    torch.save(reference.state_dict(), path)  # the official file is a raw state dict like this
    ours, config = load_sam(path)
    assert config == VIT_T
    return reference, ours


@pytest.fixture(scope="module")
def embedding(models):
    reference, ours = models
    image = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference.image_encoder(image)
        actual = ours.image_encoder(image)
    return expected, actual


def test_image_encoder_matches_reference(embedding):
    expected, actual = embedding
    assert actual.shape == (1, 256, 64, 64)
    assert torch.allclose(actual, expected, atol=1e-4, rtol=1e-4), (actual - expected).abs().max()


@pytest.mark.parametrize("multimask", [True, False])
def test_batched_decoder_matches_reference_per_prompt(models, embedding, multimask):
    reference, ours = models
    image_embedding = embedding[0]
    points = torch.rand(12, 1, 2, generator=torch.Generator().manual_seed(1)) * 1024
    labels = torch.ones(12, 1)
    with torch.no_grad():
        sparse, dense = reference.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        expected_masks, expected_iou = reference.mask_decoder(
            image_embeddings=image_embedding, image_pe=reference.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask)
        our_sparse = ours.prompt_encoder.embed_points(points, labels)
        assert torch.allclose(our_sparse, sparse, atol=1e-5)
        masks, iou = ours.mask_decoder(image_embedding, ours.prompt_encoder.get_dense_pe(), our_sparse,
                                       ours.prompt_encoder.dense_no_mask(), multimask)
    assert masks.shape == expected_masks.shape and iou.shape == expected_iou.shape
    assert torch.allclose(iou, expected_iou, atol=1e-4), (iou - expected_iou).abs().max()
    assert torch.allclose(masks, expected_masks, atol=1e-3, rtol=1e-4), (masks - expected_masks).abs().max()


def test_upscaling_only_selected_pairs_gives_the_same_logits(models, embedding):
    _, ours = models
    points = torch.rand(5, 1, 2, generator=torch.Generator().manual_seed(2)) * 1024
    decoder, encoder = ours.mask_decoder, ours.prompt_encoder
    with torch.no_grad():
        decoded = decoder.decode_tokens(embedding[1], encoder.get_dense_pe(),
                                        encoder.embed_points(points, torch.ones(5, 1)), encoder.dense_no_mask())
        full, _ = decoder(embedding[1], encoder.get_dense_pe(), encoder.embed_points(points, torch.ones(5, 1)),
                          encoder.dense_no_mask(), True)
        prompt_index, token_index = torch.tensor([4, 0, 2, 4]), torch.tensor([1, 3, 3, 2])
        some = decoder.upscale_masks(decoded, prompt_index, token_index)
        tiled = decoder.upscale_masks(decoded, prompt_index, token_index, prompts_per_pass=2)
    expected = torch.stack([full[4, 0], full[0, 2], full[2, 2], full[4, 1]])
    assert torch.allclose(some, expected, atol=1e-4)
    assert torch.allclose(tiled, expected, atol=1e-4)


def test_tiny_config_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(3)
    model = build_sam(TINY)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, TINY, note="test")
    loaded, config = load_sam(path)
    assert config == TINY
    image = torch.randn(1, 3, TINY.img_size, TINY.img_size)
    with torch.no_grad():
        assert torch.equal(loaded.image_encoder(image), model.image_encoder(image))
        assert loaded.image_encoder(image).shape == (1, TINY.prompt_embed_dim, TINY.embedding_size,
                                                     TINY.embedding_size)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_forward_stays_close_to_float32(half):
    """float16 is the GPU's dtype; the CPU runs it too (slowly), which checks its numerics without a GPU."""
    torch.manual_seed(4)
    model = build_sam(TINY)
    image = torch.randn(1, 3, TINY.img_size, TINY.img_size)
    points = torch.rand(4, 1, 2) * TINY.img_size
    with torch.no_grad():
        outputs = []
        for dtype in (torch.float32, half):
            m = model.to(dtype)
            emb = m.image_encoder(image.to(dtype))
            enc = m.prompt_encoder
            masks, iou = m.mask_decoder(emb, enc.get_dense_pe(), enc.embed_points(points, torch.ones(4, 1)),
                                        enc.dense_no_mask(), True)
            assert masks.dtype == dtype
            outputs.append(masks.float())
    assert torch.allclose(outputs[0], outputs[1], atol=0.15 * outputs[0].abs().max().item())


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_channel_layer_norm_keeps_fp32_statistics_in_half_precision(half):
    """Activations of a few hundred: their squared deviations overflow fp16 (max 65504); the output must
    still match fp32 to the half type's resolution (checked on the CPU, as the GPU would compute it)."""
    from sam_ros.model.common import LayerNorm2d

    torch.manual_seed(7)
    norm = LayerNorm2d(16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 16, 8, 8) * 400
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    expected = norm.weight[:, None, None] * (x - mean) / torch.sqrt(var + norm.eps) + norm.bias[:, None, None]
    out = norm.to(half)(x.to(half))
    assert out.dtype == half and torch.isfinite(out).all()
    assert torch.allclose(out.float(), expected, atol=0.05)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_point_encoding_in_half_precision_matches_float64_to_its_resolution(half):
    """MobileSAM's point encoding: phases of up to ~30 radians, where fp16's spacing (0.016) in the points or
    the frequencies would move the sines by as much; in a half-precision model the encoding must match a
    float64 computation to the half type's output resolution."""
    torch.manual_seed(5)
    encoder = build_sam(TINY).prompt_encoder
    gaussian = encoder.pe_layer.positional_encoding_gaussian_matrix.double()
    points = torch.rand(200, 1, 2) * TINY.img_size  # fp32, as the decoder passes them
    phases = 2 * torch.pi * ((2 * (points.double() + 0.5) / TINY.img_size - 1) @ gaussian)
    expected = torch.cat([phases.sin(), phases.cos()], dim=-1)
    encoder.to(half)
    out = encoder.embed_points(points, torch.ones(200, 1))[:, :1] - encoder.point_embeddings[1].weight
    assert out.dtype == half
    assert torch.allclose(out.double(), expected, atol=2 * torch.finfo(half).eps)


def test_missing_checkpoint_says_where_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv("SAM_ROS_CHECKPOINT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(CheckpointNotFoundError, match="mobile_sam.pt") as error:
        load_sam(None)
    assert "MobileSAM" in str(error.value) and "SAM_ROS_CHECKPOINT" in str(error.value)
    with pytest.raises(CheckpointNotFoundError, match="nowhere.pt"):
        load_sam(tmp_path / "nowhere.pt")


def test_environment_variable_selects_the_checkpoint(tmp_path, monkeypatch):
    torch.manual_seed(5)
    path = tmp_path / "env.pt"
    save_checkpoint(path, build_sam(TINY), TINY)
    monkeypatch.setenv("SAM_ROS_CHECKPOINT", str(path))
    assert load_sam(None)[1] == TINY


def test_corrupt_and_mismatched_checkpoints_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_sam(garbage)
    partial = tmp_path / "partial.pt"
    state = build_sam(TINY).state_dict()
    state.pop("mask_decoder.iou_token.weight")
    torch.save(state, partial)  # a raw state dict is taken as MobileSAM: wrong shapes and keys
    with pytest.raises(ValueError, match="missing keys"):
        load_sam(partial)


def test_transformer_leaves_the_callers_image_embedding_untouched():
    """Later layers accumulate into their own image tokens in place; the caller's embedding is never written."""
    torch.manual_seed(6)
    model = build_sam(TINY)
    c, s = TINY.prompt_embed_dim, TINY.embedding_size
    embedding = torch.randn(3, c, s, s)  # prompt-specific, as with mask prompts
    before = embedding.clone()
    tokens = torch.randn(3, 7, c)
    with torch.inference_mode():
        model.mask_decoder.transformer(embedding, model.prompt_encoder.get_dense_pe(), tokens)
    assert torch.equal(embedding, before)
