"""Model configurations, construction, and checkpoint files.

``mobile_sam.pt`` (a raw state dict) loads into the ``VIT_T`` configuration key for key. sam_ros's own
checkpoints carry their configuration, so a smaller model of the same architecture loads the same way.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

MOBILE_SAM_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
DEFAULT_CHECKPOINT = Path("~/.cache/sam_ros/mobile_sam.pt")
BUNDLED_CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "sam_ros_tiny.pt"
BUNDLED_PARAMS = BUNDLED_CHECKPOINT.with_suffix(".yaml")  # its filter thresholds (a ROS params file)
CHECKPOINT_ENV = "SAM_ROS_CHECKPOINT"
# The classification head of TinyViT is in mobile_sam.pt but never used for segmentation.
UNUSED_KEY_PREFIXES = ("image_encoder.head.", "image_encoder.norm_head.")


class CheckpointNotFoundError(FileNotFoundError):
    """No model file where one was looked for; the message says where to get and put one."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture sizes of a MobileSAM-style model (TinyViT encoder + SAM prompt encoder/decoder)."""

    img_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    # Stride of the merging after stages 0..n-2; MobileSAM keeps 1/16 resolution by not striding the last.
    merge_strides: tuple[int, ...] = (2, 2, 1)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    # A fourth encoder input channel: the aligned depth as ``sam_ros.image.depth_channel`` makes it
    # (shadows and floor textures do not exist in depth). MobileSAM has no such channel.
    depth_input: bool = False

    @property
    def embedding_size(self) -> int:
        size = self.img_size // 4
        for stride in self.merge_strides:
            size = (size + stride - 1) // stride
        return size

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown model config field(s): {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


VIT_T = ModelConfig()
# A small model of the same architecture for 256-px synthetic scenes (trained by sam_ros.train).
TINY = ModelConfig(img_size=256, embed_dims=(32, 64, 96, 128), depths=(1, 1, 2, 1), num_heads=(1, 2, 3, 4),
                   window_sizes=(7, 7, 8, 8), prompt_embed_dim=128, decoder_mlp_dim=512, decoder_num_heads=4,
                   iou_head_hidden_dim=128)


def build_sam(config: ModelConfig = VIT_T) -> Sam:
    """A randomly initialised model of ``config`` (use ``torch.manual_seed`` for a fixed init)."""
    emb = config.embedding_size
    encoder = TinyViT(config.embed_dims, config.depths, config.num_heads, config.window_sizes, config.merge_strides,
                      config.mlp_ratio, config.mbconv_expand_ratio, config.local_conv_size, config.prompt_embed_dim,
                      in_chans=4 if config.depth_input else 3)
    prompt_encoder = PromptEncoder(config.prompt_embed_dim, (emb, emb), (config.img_size, config.img_size),
                                   config.mask_in_chans)
    transformer = TwoWayTransformer(config.decoder_depth, config.prompt_embed_dim, config.decoder_num_heads,
                                    config.decoder_mlp_dim)
    decoder = MaskDecoder(config.prompt_embed_dim, transformer, 3, config.iou_head_depth, config.iou_head_hidden_dim)
    return Sam(encoder, prompt_encoder, decoder, config.img_size, config.pixel_mean, config.pixel_std,
               config.depth_input).eval()


def with_depth_input(model: Sam, config: ModelConfig) -> tuple[Sam, ModelConfig]:
    """The same model with a depth input channel whose weights are zero: it answers exactly as before
    until fine-tuning teaches it to use depth."""
    if config.depth_input:
        return model, config
    config = dataclasses.replace(config, depth_input=True)
    widened = build_sam(config)
    state = model.state_dict()
    key = "image_encoder.patch_embed.seq.0.c.weight"
    rgb_weight = state[key]
    state[key] = torch.cat([rgb_weight, rgb_weight.new_zeros(rgb_weight.shape[0], 1, *rgb_weight.shape[2:])], dim=1)
    widened.load_state_dict(state)
    return widened.to(rgb_weight.device).train(model.training), config


def save_checkpoint(path: str | Path, model: Sam, config: ModelConfig, **extra) -> None:
    """Write a checkpoint that carries its configuration (and any ``extra`` metadata)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"model_config": dataclasses.asdict(config), "state_dict": state, **extra}, path)


def resolve_checkpoint(checkpoint: str | Path | None = None) -> Path:
    """Explicit path > $SAM_ROS_CHECKPOINT > ~/.cache/sam_ros/mobile_sam.pt; 'bundled' = the shipped small model."""
    if checkpoint == "bundled":
        candidates = [BUNDLED_CHECKPOINT]
    elif checkpoint:
        candidates = [Path(checkpoint).expanduser()]
    else:
        candidates = [Path(p).expanduser() for p in (os.environ.get(CHECKPOINT_ENV), DEFAULT_CHECKPOINT) if p]
    for path in candidates:
        if path.is_file():
            return path
    searched = ", ".join(str(p) for p in candidates)
    raise CheckpointNotFoundError(
        f"no model checkpoint found (looked at: {searched}). Download MobileSAM's weights from {MOBILE_SAM_URL} "
        f"and put the file at {DEFAULT_CHECKPOINT}, or set ${CHECKPOINT_ENV} / the 'checkpoint' parameter to its "
        f"path. checkpoint='bundled' uses the small model shipped with sam_ros (synthetic scenes only).")


def load_sam(checkpoint: str | Path | None = None, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32) -> tuple[Sam, ModelConfig]:
    """Load a model file: the official ``mobile_sam.pt`` state dict or a sam_ros checkpoint."""
    path = resolve_checkpoint(checkpoint)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and truncation errors all mean the same to a user
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(data).__name__}")
    if "state_dict" in data and "model_config" in data:
        config, state = ModelConfig.from_dict(data["model_config"]), data["state_dict"]
    else:
        config, state = VIT_T, data
    state = {k: v for k, v in state.items() if not k.startswith(UNUSED_KEY_PREFIXES)}
    model = build_sam(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: does not match the {'MobileSAM' if config == VIT_T else 'configured'} "
                         f"architecture; missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: tensor shapes do not match the architecture ({error})") from error
    return model.to(device=device, dtype=dtype).eval(), config
