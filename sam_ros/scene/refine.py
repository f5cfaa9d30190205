"""Masks cut to what depth says belongs to them: structure vs objects, and each object's own surface.

A mask whose valid depth lies mostly within the band of one structure plane is structure (the floor,
a wall, a table top). Every other mask is an object, and its 3D geometry comes from its own surface
only: pixels within the band of any structure plane (the floor around its base, the table under it,
the wall behind it) are removed, and so is everything a depth discontinuity separates from the
region its prompt lies in (a mask that bleeds over the silhouette onto the background, or into a
neighbouring object at another depth). Regions are one labelling of the whole image, not one per mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .planes import Plane, plane_band

FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


@dataclass
class Refinement:
    """Per mask (N,): structure or object, its plane, and which of its grid pixels are its own surface."""

    structure: np.ndarray   # (N,) bool
    plane: np.ndarray       # (N,) int index into the planes, -1 for objects
    keep: np.ndarray        # (N, h, w) bool: the refined masks on the grid (structure masks: unchanged)
    removed: np.ndarray     # (N, h, w) bool: what refinement took out of each mask
    on_plane: np.ndarray    # (h, w) bool: grid pixels within the band of a structure plane


def on_planes(points: np.ndarray, z: np.ndarray, planes: list[Plane], sigma_at_1m: float, band_sigmas: float,
              min_band: float) -> np.ndarray:
    """(K, h, w) bool: grid pixels within the noise band of each plane (False where depth is invalid)."""
    if not planes:
        return np.zeros((0, *z.shape), bool)
    band = plane_band(z, sigma_at_1m, band_sigmas, min_band)
    normals = np.stack([p.normal for p in planes])
    offsets = np.array([p.offset for p in planes])
    with np.errstate(invalid="ignore"):
        distance = np.abs(np.einsum("hwc,kc->khw", points, normals) - offsets[:, None, None])
        return distance <= band


def depth_regions(z: np.ndarray, excluded: np.ndarray, jump_ratio: float) -> np.ndarray:
    """(h, w) int labels of depth-continuous regions; 0 = no depth, excluded, or beside a depth jump.

    Neighbours whose depths differ by more than ``jump_ratio`` of the nearer one are on two sides of a
    discontinuity: the farther one is left out (the background, or a flying pixel between the two), so
    the regions on either side are not connected and the near surface keeps its edge.
    """
    valid = np.isfinite(z)
    filled = np.where(valid, z, 0.0)
    jump = np.zeros(z.shape, bool)
    for axis in (0, 1):
        a = filled.take(range(0, z.shape[axis] - 1), axis=axis)
        b = filled.take(range(1, z.shape[axis]), axis=axis)
        both = valid.take(range(0, z.shape[axis] - 1), axis=axis) & valid.take(range(1, z.shape[axis]), axis=axis)
        edge = both & (np.abs(a - b) > jump_ratio * np.minimum(a, b))
        first_far, second_far = edge & (a > b), edge & (b > a)
        if axis == 0:
            jump[:-1] |= first_far
            jump[1:] |= second_far
        else:
            jump[:, :-1] |= first_far
            jump[:, 1:] |= second_far
    labels, _ = ndimage.label(valid & ~excluded & ~jump, structure=FOUR_CONNECTED)
    return labels


def refine(masks: np.ndarray, points: np.ndarray, z: np.ndarray, planes: list[Plane], prompts: np.ndarray, *,
           sigma_at_1m: float, band_sigmas: float, min_band: float, structure_fraction: float,
           jump_ratio: float, min_points: int) -> Refinement:
    """Classify and refine (N, h, w) grid masks; ``prompts`` (N, 2) are their prompt pixels (x, y) on the grid."""
    n, h, w = masks.shape
    planar = on_planes(points, z, planes, sigma_at_1m, band_sigmas, min_band)
    flat = masks.reshape(n, h * w)
    finite = np.isfinite(z).reshape(-1)
    valid_count = np.count_nonzero(flat & finite, axis=1)
    fractions = (flat.astype(np.float32) @ planar.reshape(len(planes), h * w).T.astype(np.float32)
                 if planes else np.zeros((n, 0), np.float32))
    fractions = fractions / np.maximum(valid_count, 1)[:, None]
    best = fractions.argmax(1) if planes else np.zeros(n, np.int64)
    px, py = _prompt_pixels(prompts, h, w)
    # A mask is structure when its depth lies mostly on one plane and so does its prompt: an object's mask
    # that bleeds onto the floor around it is still prompted on the object.
    prompt_on_plane = (~masks[np.arange(n), py, px] | ~np.isfinite(z[py, px]) |
                       (planar[best, py, px] if planes else np.zeros(n, bool)))
    structure = ((fractions.max(1) if planes else np.zeros(n)) >= structure_fraction) & (
        valid_count >= min_points) & prompt_on_plane
    on_plane = planar.any(0)

    regions = depth_regions(z, on_plane, jump_ratio)
    main = _main_regions(masks, regions, prompts)
    # Removed: pixels with depth that are on a plane, beside a jump, or in another region than the prompt's.
    # Pixels without depth stay: depth says nothing about them; so does a mask with no region at all.
    elsewhere = np.isfinite(z)[None] & (regions[None] != main[:, None, None]) & (main[:, None, None] > 0)
    removed = elsewhere & ~structure[:, None, None]
    # Refinement never takes a mask's depth away: one left with too few points keeps its own (what it lies on
    # is then decided from the mask as a whole).
    left = np.count_nonzero((masks & ~removed).reshape(n, h * w) & finite, axis=1)
    removed[(left < min_points) & (valid_count >= min_points)] = False
    return Refinement(structure, np.where(structure, best, -1), masks & ~removed, removed, on_plane)


def refined_masks(masks: np.ndarray, removed: np.ndarray, stride: int) -> np.ndarray:
    """Full-resolution (N, H, W) masks without the grid pixels refinement removed (each covers stride^2 pixels)."""
    h, w = masks.shape[1:]
    out = masks.copy()
    changed = np.nonzero(removed.reshape(len(removed), -1).any(1))[0]
    grown = np.repeat(np.repeat(removed[changed], stride, axis=1), stride, axis=2)[:, :h, :w]
    out[changed] &= ~grown
    return out


def _main_regions(masks: np.ndarray, regions: np.ndarray, prompts: np.ndarray) -> np.ndarray:
    """Per mask, the region its prompt lies in, or (prompt off the mask's depth) the region covering most of it."""
    n, h, w = masks.shape
    px, py = _prompt_pixels(prompts, h, w)
    main = regions[py, px]
    lost = np.nonzero(~(masks[np.arange(n), py, px] & (main > 0)))[0]
    if lost.size:
        count = int(regions.max()) + 1
        index, ys, xs = np.nonzero(masks[lost])
        histogram = np.bincount(index * count + regions[ys, xs], minlength=lost.size * count).reshape(lost.size, count)
        histogram[:, 0] = 0
        main[lost] = np.where(histogram.max(1) > 0, histogram.argmax(1), 0)
    return main


def _prompt_pixels(prompts: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid column and row of each prompt (x, y), clipped to the grid."""
    px = np.clip(np.round(prompts[:, 0]).astype(np.int64), 0, w - 1)
    py = np.clip(np.round(prompts[:, 1]).astype(np.int64), 0, h - 1)
    return px, py
