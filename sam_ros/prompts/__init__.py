"""Prompt strategies: where to put the point prompts of a segment-everything pass."""
from .adaptive import AdaptiveGridPrompts, needs_dense
from .aop import AoPPrompts, PromptPredictor, load_predictor, predictor_beside, save_predictor
from .base import EncodedImage, PromptStrategy
from .grid import GridPrompts, build_point_grid

__all__ = ["AdaptiveGridPrompts", "needs_dense", "AoPPrompts", "EncodedImage", "PromptPredictor", "load_predictor", "predictor_beside", "save_predictor", "GridPrompts", "PromptStrategy", "build_point_grid"]
