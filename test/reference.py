"""The reference MobileSAM (segment_anything 1.0 + mobilesam-mirror's TinyViT), for tests and benchmarks.

Puts the local torchvision/timm stand-ins on sys.path first: the real packages do not work on the
CPU-only torch this project pins.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "reference_shims"))

from mobile_sam import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry  # noqa: E402

__all__ = ["SamAutomaticMaskGenerator", "SamPredictor", "reference_mobile_sam", "seeded_state_dict"]


def reference_mobile_sam(seed: int = 0):
    """The reference MobileSAM with a seeded random init, in eval mode on the CPU."""
    torch.manual_seed(seed)
    model = sam_model_registry["vit_t"]()
    _randomise_norms(model)
    return model.eval()


def _randomise_norms(model: torch.nn.Module) -> None:
    """Give BatchNorm statistics and zero-initialised tensors random values so nothing is trivially zero."""
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
        for name, param in model.named_parameters():
            if "attention_biases" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        # Random heads predict IoUs around 0; shift them into (0, 1) so that IoU thresholds behave as
        # they do with trained weights.
        model.mask_decoder.iou_prediction_head.layers[-1].bias.add_(0.5)
        # Random hyper-networks give logits of magnitude << 1, i.e. stability 0 everywhere; scale them up.
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(100.0)
        # Random transposed-convolution kernels paint a checkerboard at the decoder's 256x256 output,
        # which no trained model produces and which makes low-res and full-res stability disagree.
        # Equal taps per 2x2 position keep the upscaling smooth, as trained weights are.
        for layer in model.mask_decoder.output_upscaling:
            if isinstance(layer, torch.nn.ConvTranspose2d):
                layer.weight.copy_(layer.weight.mean(dim=(2, 3), keepdim=True).expand_as(layer.weight).clone())


def seeded_state_dict(seed: int = 0) -> dict:
    return reference_mobile_sam(seed).state_dict()


class _SharedEncoder(torch.nn.Module):
    """Our image encoder behind the attribute the reference predictor reads (``img_size``). An encoder
    with a depth input gets a zero depth channel, as the pipeline gives it for a frame without depth."""

    def __init__(self, encoder: torch.nn.Module, img_size: int, depth_input: bool = False) -> None:
        super().__init__()
        self.encoder, self.img_size, self.depth_input = encoder, img_size, depth_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.depth_input:
            x = torch.cat([x, x.new_zeros(x.shape[0], 1, *x.shape[2:])], dim=1)
        return self.encoder(x)


def reference_sam_around(model):
    """A reference Sam (segment-anything's prompt encoder and mask decoder, loaded key for key) around
    OUR image encoder, for any model size: the AMG stages of a trained small model can then be compared
    with the reference's (the encoder itself is compared with the reference in test_model.py)."""
    from mobile_sam.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    dim = model.prompt_encoder.embed_dim
    encoder = _SharedEncoder(model.image_encoder, model.img_size, model.depth_input)
    emb = encoder(torch.zeros(1, 3, model.img_size, model.img_size)).shape[-1]
    decoder = model.mask_decoder
    block = decoder.transformer.layers[0]
    transformer = TwoWayTransformer(depth=len(decoder.transformer.layers), embedding_dim=dim,
                                    num_heads=block.self_attn.num_heads, mlp_dim=block.mlp.lin1.out_features)
    reference = Sam(image_encoder=encoder,
                    prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(emb, emb),
                                                 input_image_size=(model.img_size, model.img_size), mask_in_chans=16),
                    mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=transformer, transformer_dim=dim,
                                             iou_head_depth=3,
                                             iou_head_hidden_dim=decoder.iou_prediction_head.layers[0].out_features),
                    pixel_mean=model.pixel_mean.flatten().tolist(), pixel_std=model.pixel_std.flatten().tolist())
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith("image_encoder.")}
    missing, unexpected = reference.load_state_dict(ours, strict=False)
    assert not unexpected and all(k.startswith("image_encoder.") for k in missing), (missing, unexpected)
    return reference.eval()
