"""Synthetic RGB-D scenes with exact ground truth, for tests, benchmarks, training and the demo."""
from .noise import add_depth_noise, to_16uc1_mm
from .render import Intrinsics, ObjectTruth, RenderedScene, render
from .scene import SceneObject, SceneSpec, sample_scene

__all__ = ["Intrinsics", "ObjectTruth", "RenderedScene", "SceneObject", "SceneSpec", "add_depth_noise",
           "render", "sample_scene", "to_16uc1_mm"]
