"""Training samples: rendered scenes with point prompts and the masks they should produce."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from ..image import depth_channel, preprocess
from ..synthetic import (FLOOR_ID, Intrinsics, RenderedScene, add_depth_noise, apply_photometric, render,
                         sample_photometric, sample_scene)
from .augment import jitter_colour

# Segments smaller than this (pixels at the rendered size) vanish at the decoder's 1/4 resolution.
MIN_SEGMENT_PIXELS = 30


@dataclass
class Sample:
    image: torch.Tensor    # (1, 3, S, S) normalised, padded model input
    points: torch.Tensor   # (P, 2) model-input pixels
    targets: torch.Tensor  # (P, S/4, S/4) float {0, 1} low-res target masks
    depth: torch.Tensor | None = None  # (1, 1, S, S) depth channel (sam_ros.image.depth_channel) with Recipe.depth

    def model_input(self, depth_input: bool) -> torch.Tensor:
        """The encoder's input: colour, and the depth channel for a model with a depth input."""
        if not depth_input:
            return self.image
        if self.depth is None:
            raise ValueError("a model with a depth input needs samples made with Recipe(depth=True)")
        return torch.cat([self.image, self.depth], dim=1)


@dataclass(frozen=True)
class Recipe:
    """What the training scenes look like and where their prompts go.

    ``rich_fraction`` of the scenes come from the rich renderer style (photo textures, shadows,
    tables, stacking, camera roll), the rest from the classic one, so the classic look is not
    forgotten. ``camera_effects`` applies the renderer's blur, defocus, exposure, noise and JPEG,
    freshly drawn per image, and ``colour_jitter`` a random white balance, saturation and contrast.
    ``shadow_prompts`` is the share of floor/wall/table prompts put inside a cast shadow when the
    scene has one: the hard negative, whose answer is the whole surface, not the shadow.
    ``depth`` adds the aligned depth as a sensor gives it (noise, edge dropouts, flying pixels), left out
    (all zeros) ``depth_dropout`` of the time so that the model still segments colour alone.
    """

    rich_fraction: float = 0.0
    camera_effects: bool = False
    colour_jitter: bool = False
    object_fraction: float = 0.75
    shadow_prompts: float = 0.0
    depth: bool = False
    depth_dropout: float = 0.2


def segment_targets(scene: RenderedScene) -> tuple[np.ndarray, np.ndarray]:
    """Every segment a prompt can land on, and which of them are objects.

    The floor, walls and table parts are segments too (SAM segments them): a grid point on the floor
    should give the floor, not a fragment or nothing, so that the pipeline keeps one mask for it.
    """
    ids = [i for i in np.unique(scene.instances) if i > 0]
    masks = [scene.instances == i for i in ids]
    is_object = np.array(ids) < FLOOR_ID
    large = np.array([m.sum() >= MIN_SEGMENT_PIXELS for m in masks], bool)
    return np.stack(masks)[large], np.asarray(is_object, bool)[large]


def random_intrinsics(rng: np.random.Generator, width: int) -> Intrinsics:
    """``width`` at 4:3 (most cameras) or 16:9, with a focal length of +-20% around a D435's."""
    height = width * 3 // 4 if rng.random() < 0.75 else width * 9 // 16
    focal = 0.96 * width * float(rng.uniform(0.8, 1.2))
    return Intrinsics(width, height, focal, focal, (width - 1) / 2, (height - 1) / 2)


def render_like_a_camera(rng: np.random.Generator, img_size: int, recipe: Recipe = Recipe()) -> tuple[RenderedScene, int]:
    """A scene and its render scale (1 or 2) relative to the model input.

    Camera frames (640x480) reach the model downscaled with antialiasing, so their textures are
    smooth; a scene rendered straight at the model's size is aliased instead (point-sampled
    textures). A quarter of the scenes are rendered at twice the size and downscaled like a camera
    frame, a quarter are blurred, the rest stay sharp: the model sees all three looks, for a third of
    the rendering cost of supersampling everything. Photometric changes come last, as in a camera.
    """
    look = rng.random()
    scale = 2 if look < 0.25 else 1
    if rng.random() < recipe.rich_fraction:
        spec = sample_scene(rng, style="rich")
    else:
        spec = sample_scene(rng, n_objects=(1, 7))
    scene = render(spec, random_intrinsics(rng, img_size * scale))
    if look >= 0.75:
        sigma = float(rng.uniform(0.5, 1.0))
        scene.rgb = ndimage.gaussian_filter(scene.rgb, sigma=(sigma, sigma, 0))
    if recipe.camera_effects:
        scene.rgb = apply_photometric(scene.rgb, sample_photometric(rng), rng, scene.depth)
    if recipe.colour_jitter:
        scene.rgb = jitter_colour(scene.rgb, rng)
    return scene, scale


def pick_segment(rng: np.random.Generator, masks: np.ndarray, is_object: np.ndarray, shadowed: np.ndarray,
                 recipe: Recipe) -> tuple[int, np.ndarray]:
    """A segment index and the pixels a prompt for it may land on.

    An object with probability ``recipe.object_fraction`` (each object equally likely, so small ones
    are not starved), else a structure segment, inside its shadowed part ``recipe.shadow_prompts``
    of the time.
    """
    objects, others = np.flatnonzero(is_object), np.flatnonzero(~is_object)
    if len(objects) and (rng.random() < recipe.object_fraction or not len(others)):
        index = int(rng.choice(objects))
        return index, masks[index]
    if rng.random() < recipe.shadow_prompts:
        in_shadow = [i for i in others if (masks[i] & shadowed).sum() >= MIN_SEGMENT_PIXELS]
        if in_shadow:
            index = int(rng.choice(in_shadow))
            return index, masks[index] & shadowed
    index = int(rng.choice(others))
    return index, masks[index]


def make_sample(rng: np.random.Generator, img_size: int, pixel_mean: torch.Tensor, pixel_std: torch.Tensor,
                prompts: int = 8, recipe: Recipe = Recipe()) -> Sample:
    """One rendered scene as the model sees it, with prompts drawn uniformly inside their segments."""
    scene, scale = render_like_a_camera(rng, img_size, recipe)
    masks, is_object = segment_targets(scene)
    image, input_size = preprocess(scene.rgb, img_size, pixel_mean, pixel_std, "cpu", torch.float32)
    height, width = scene.labels.shape
    points, targets = [], []
    for _ in range(prompts):
        index, allowed = pick_segment(rng, masks, is_object, scene.shadowed, recipe)
        ys, xs = np.nonzero(allowed)
        k = int(rng.integers(len(ys)))
        points.append(((xs[k] + 0.5) / scale, (ys[k] + 0.5) / scale))
        padded = np.zeros((img_size * scale, img_size * scale), np.float32)
        padded[:height, :width] = masks[index]
        targets.append(padded)
    low = img_size // 4
    target = F.interpolate(torch.from_numpy(np.stack(targets))[:, None], size=(low, low), mode="area")[:, 0]
    depth = None
    if recipe.depth:
        sensed = None if rng.random() < recipe.depth_dropout else add_depth_noise(scene.depth, rng)
        depth = depth_channel(sensed, None, input_size, img_size, "cpu")
    return Sample(image, torch.tensor(points, dtype=torch.float32), (target > 0.5).float(), depth)
