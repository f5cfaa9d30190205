"""Small-region clean-up against segment-anything's helper and a plain flood fill."""
from collections import deque

import numpy as np
import pytest
import torch

import reference  # noqa: F401  (puts the torchvision stand-ins first on sys.path)
from mobile_sam.utils.amg import remove_small_regions as reference_remove
from sam_ros.regions import clean_small_regions, remove_small_regions


def components(mask):
    """8-connected components of True pixels by breadth-first search: a list of pixel lists."""
    seen = np.zeros_like(mask, bool)
    found = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        queue, pixels = deque([start]), []
        while queue:
            y, x = queue.popleft()
            pixels.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        found.append(pixels)
    return found


def random_mask(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((40, 50), bool)
    mask[5:35, 5:40] = True
    for _ in range(12):  # holes and islands of random sizes
        y, x, h, w = rng.integers(0, 38), rng.integers(0, 48), rng.integers(1, 6), rng.integers(1, 6)
        mask[y:y + h, x:x + w] = rng.random() < 0.5
    return mask


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["holes", "islands"])
def test_small_regions_as_segment_anything_and_a_flood_fill(seed, mode):
    mask = random_mask(seed)
    ours, changed = remove_small_regions(mask, 10, mode)
    theirs, their_changed = reference_remove(mask, 10, mode)
    assert np.array_equal(ours, theirs) and changed == their_changed
    expected = mask.copy()
    regions = components(~mask if mode == "holes" else mask)
    small = [r for r in regions if len(r) < 10]
    if mode == "islands" and len(small) == len(regions) and regions:
        small.remove(max(regions, key=len))  # the largest island stays
    for region in small:
        for y, x in region:
            expected[y, x] = mode == "holes"
    assert np.array_equal(ours, expected)


def test_clean_up_reruns_nms_preferring_unchanged_masks():
    base = np.zeros((30, 30), bool)
    base[5:20, 5:20] = True
    speckled = base.copy()
    speckled[25, 25] = True  # an island: after clean-up this mask equals ``base``
    clean_elsewhere = np.zeros((30, 30), bool)
    clean_elsewhere[22:28, 0:6] = True
    masks = torch.from_numpy(np.stack([speckled, base, clean_elsewhere]))
    cleaned, boxes, kept = clean_small_regions(masks, 5, 0.7)
    assert kept.tolist() == [1, 2]  # the changed duplicate goes, the unchanged one stays
    assert torch.equal(cleaned[0], masks[1]) and boxes[0].tolist() == [5, 5, 19, 19]
