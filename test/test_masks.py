import numpy as np
import torch
from pycocotools import mask as coco

from sam_ros.masks import label_image, rle_counts, rle_from_string, rle_to_mask, rle_to_string


def random_masks(seed, k=6, h=37, w=53):
    rng = np.random.RandomState(seed)
    masks = rng.rand(k, h, w) > 0.6
    masks[0] = False
    masks[1] = True
    masks[2, 0, 0] = True
    return masks


def test_rle_counts_round_trip_and_match_pycocotools():
    masks = random_masks(0)
    counts = rle_counts(torch.from_numpy(masks))
    for mask, run in zip(masks, counts):
        assert sum(run) == mask.size
        assert np.array_equal(rle_to_mask(run, *mask.shape), mask)
        encoded = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle_to_string(run) == encoded["counts"].decode()
        assert rle_from_string(encoded["counts"].decode()) == run


def test_label_image_paints_small_masks_over_large_ones():
    masks = torch.zeros(2, 10, 10, dtype=torch.bool)
    masks[0, 2:5, 2:5] = True   # small, id 7
    masks[1] = True             # everything, id 3
    labels = label_image(masks, torch.tensor([7, 3]))
    assert labels[3, 3] == 7 and labels[0, 0] == 3 and labels.dtype == torch.int32
    assert label_image(torch.zeros(0, 4, 5, dtype=torch.bool), torch.zeros(0)).shape == (4, 5)
