"""MobileSAM (TinyViT + SAM prompt encoder and mask decoder), loadable from ``mobile_sam.pt``."""
from .build import (BUNDLED_CHECKPOINT, BUNDLED_PARAMS, TINY, VIT_T, CheckpointNotFoundError, ModelConfig, build_sam, load_sam,
                    resolve_checkpoint, save_checkpoint, with_depth_input)
from .mask_decoder import DecodedTokens
from .sam import Sam

__all__ = ["BUNDLED_CHECKPOINT", "BUNDLED_PARAMS", "TINY", "VIT_T", "CheckpointNotFoundError", "DecodedTokens", "ModelConfig", "Sam",
           "build_sam", "load_sam", "resolve_checkpoint", "save_checkpoint",
           "with_depth_input"]
