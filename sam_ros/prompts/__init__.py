"""Prompt strategies: where to put the point prompts of a segment-everything pass."""
from .base import EncodedImage, PromptStrategy
from .grid import GridPrompts, build_point_grid

__all__ = ["EncodedImage", "GridPrompts", "PromptStrategy", "build_point_grid"]
