"""Synthetic RGB-D scenes with exact ground truth, for tests, benchmarks, training and the demo."""
from .noise import add_depth_noise, to_16uc1_mm
from .photometric import Photometric, apply_photometric, sample_photometric
from .render import Intrinsics, ObjectTruth, RenderedScene, StructureTruth, render
from .rich import sample_rich_scene
from .scene import FLOOR_ID, Material, SceneObject, SceneSpec, Table, Wall, sample_scene

__all__ = ["FLOOR_ID", "Intrinsics", "Material", "ObjectTruth", "Photometric", "RenderedScene", "SceneObject",
           "SceneSpec", "StructureTruth", "Table", "Wall", "add_depth_noise", "apply_photometric", "render",
           "sample_photometric", "sample_rich_scene", "sample_scene", "to_16uc1_mm"]
