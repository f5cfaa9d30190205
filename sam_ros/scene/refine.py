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
    removed: np.ndarray     # (N, h, w) bool: what refinement took out of each mask (and of the cells around it)
    on_plane: np.ndarray    # (h, w) bool: grid pixels within the band of a structure plane
    kept: MaskEntries       # the pixels of ``keep``, as a list
    depth_coverage: np.ndarray  # (N,) fraction of each mask's grid pixels with valid depth (before refinement)
    whole: MaskEntries      # every pixel of every mask, as it came
    kept_depth: np.ndarray  # (N,) fraction of each mask's depth pixels that refinement kept


@dataclass
class MaskEntries:
    """The pixels of (N, h, w) masks as one list, grouped by mask: per-mask statistics become bincounts over
    a list as long as the masks' total area, not passes over N whole images."""

    index: np.ndarray   # (E,) int64 mask of each entry, ascending
    pixel: np.ndarray   # (E,) int64 flat grid pixel (row * w + col)

    @classmethod
    def of(cls, masks: np.ndarray) -> MaskEntries:
        n = masks.shape[0]
        cells = masks[0].size if n else 0
        flat = np.flatnonzero(masks)  # flat indices are ascending: grouped by mask
        index, pixel = np.divmod(flat, max(cells, 1))
        return cls(index, pixel)

    def select(self, chosen: np.ndarray) -> MaskEntries:
        return MaskEntries(self.index[chosen], self.pixel[chosen])

    def count(self, n: int, chosen: np.ndarray | None = None) -> np.ndarray:
        """(n,) entries per mask (of those ``chosen``)."""
        return np.bincount(self.index if chosen is None else self.index[chosen], minlength=n)

    def dense(self, shape: tuple[int, int, int]) -> np.ndarray:
        out = np.zeros(shape[0] * shape[1] * shape[2], bool)
        out[self.index * (shape[1] * shape[2]) + self.pixel] = True
        return out.reshape(shape)


def on_planes(points: np.ndarray, z: np.ndarray, planes: list[Plane], sigma_at_1m: float, band_sigmas: float,
              min_band: float) -> np.ndarray:
    """(K, h, w) bool: grid pixels within the noise band of each plane (False where depth is invalid)."""
    if not planes:
        return np.zeros((0, *z.shape), bool)
    band = plane_band(z, sigma_at_1m, band_sigmas, min_band)
    x, y, z3 = points[..., 0], points[..., 1], points[..., 2]
    with np.errstate(invalid="ignore"):  # three broadcasts per plane: far faster than einsum, no BLAS threads
        return np.stack([np.abs(x * p.normal[0] + y * p.normal[1] + z3 * p.normal[2] - p.offset) <= band
                         for p in planes])


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
    entries = MaskEntries.of(masks)
    finite = np.isfinite(z).reshape(-1)
    has_depth = finite[entries.pixel]
    valid_count = entries.count(n, has_depth)
    on_each = planar.reshape(len(planes), h * w)
    fractions = (np.stack([entries.count(n, plane[entries.pixel]) for plane in on_each], 1) if planes
                 else np.zeros((n, 0)))
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

    regions = depth_regions(z, on_plane, jump_ratio).reshape(-1)
    main = _main_regions(masks, regions.reshape(h, w), prompts, entries.index, regions[entries.pixel])
    # Removed: pixels with depth that are on a plane, beside a jump, or in another region than the prompt's.
    # Pixels without depth stay: depth says nothing about them; so does a mask with no region at all.
    def elsewhere(cells: MaskEntries) -> np.ndarray:
        owner = main[cells.index]
        return finite[cells.pixel] & (regions[cells.pixel] != owner) & (owner > 0) & ~structure[cells.index]

    removed = elsewhere(entries)
    # Refinement never takes a mask's depth away: one left with too few points keeps its own (what it lies on
    # is then decided from the mask as a whole).
    left = entries.count(n, has_depth & ~removed)
    keeps_all = (left < min_points) & (valid_count >= min_points)
    removed &= ~keeps_all[entries.index]
    # A full-resolution mask also covers cells next to its grid pixels: those are cut where their grid pixel
    # lies elsewhere too (the mask's edge bleeding onto the background).
    ring = MaskEntries.of(_grow(masks) & ~masks)
    ring_removed = elsewhere(ring) & ~keeps_all[ring.index]
    removed_masks = entries.select(removed).dense(masks.shape) | ring.select(ring_removed).dense(masks.shape)
    return Refinement(structure, np.where(structure, best, -1), masks & ~removed_masks, removed_masks, on_plane,
                      entries.select(~removed), valid_count / np.maximum(entries.count(n), 1), entries,
                      left / np.maximum(valid_count, 1))


def _grow(masks: np.ndarray) -> np.ndarray:
    """(N, h, w) masks grown by one cell in all eight directions."""
    grown = masks.copy()
    grown[:, 1:] |= masks[:, :-1]
    grown[:, :-1] |= masks[:, 1:]
    rows = grown.copy()
    grown[:, :, 1:] |= rows[:, :, :-1]
    grown[:, :, :-1] |= rows[:, :, 1:]
    return grown


def refined_masks(masks: np.ndarray, removed: np.ndarray, stride: int) -> np.ndarray:
    """Full-resolution (N, H, W) masks without the grid pixels refinement removed (each covers stride^2 pixels)."""
    h, w = masks.shape[1:]
    grid_h, grid_w = removed.shape[1:]
    out = masks.copy()
    index, cell = np.divmod(np.flatnonzero(removed), grid_h * grid_w)
    rows, cols = np.divmod(cell, grid_w)
    for dy in range(stride):  # the stride^2 full-resolution pixels of each removed grid pixel
        for dx in range(stride):
            y, x = rows * stride + dy, cols * stride + dx
            inside = (y < h) & (x < w)
            out[index[inside], y[inside], x[inside]] = False
    return out


def _main_regions(masks: np.ndarray, regions: np.ndarray, prompts: np.ndarray, index: np.ndarray,
                  region: np.ndarray) -> np.ndarray:
    """Per mask, the region its prompt lies in, or (prompt off the mask's depth) the region covering most of it.

    ``index`` and ``region`` are the mask and the region of every mask pixel (``MaskEntries``)."""
    n, h, w = masks.shape
    px, py = _prompt_pixels(prompts, h, w)
    main = regions[py, px]
    lost = ~(masks[np.arange(n), py, px] & (main > 0))
    if lost.any():
        count = int(regions.max()) + 1
        chosen = lost[index]
        histogram = np.bincount(index[chosen] * count + region[chosen], minlength=n * count).reshape(n, count)
        histogram[:, 0] = 0
        main[lost] = np.where(histogram[lost].max(1) > 0, histogram[lost].argmax(1), 0)
    return main


def _prompt_pixels(prompts: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid column and row of each prompt (x, y), clipped to the grid."""
    px = np.clip(np.round(prompts[:, 0]).astype(np.int64), 0, w - 1)
    py = np.clip(np.round(prompts[:, 1]).astype(np.int64), 0, h - 1)
    return px, py
