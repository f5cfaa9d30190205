import numpy as np
import pytest
import torch
from PIL import Image

from sam_ros.image import preprocess, resized_shape, validate_image

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


@pytest.mark.parametrize("size", [(480, 640), (720, 1280), (1080, 1920), (237, 301), (1024, 1024), (5, 3)])
def test_preprocess_resizes_longest_side_and_pads(size):
    rgb = (np.random.RandomState(0).rand(*size, 3) * 255).astype(np.uint8)
    tensor, (h, w) = preprocess(rgb, 1024, MEAN, STD, "cpu", torch.float32)
    assert tensor.shape == (1, 3, 1024, 1024)
    assert max(h, w) == 1024 and (h, w) == resized_shape(*size, 1024)
    assert torch.all(tensor[..., h:, :] == 0) and torch.all(tensor[..., :, w:] == 0)


def test_resize_matches_pil_like_the_reference():
    rgb = (np.random.RandomState(1).rand(480, 640, 3) * 255).astype(np.uint8)
    tensor, (h, w) = preprocess(rgb, 256, torch.zeros(3, 1, 1), torch.ones(3, 1, 1), "cpu", torch.float32)
    pil = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR)).astype(np.float32)
    ours = tensor[0, :, :h, :w].permute(1, 2, 0).numpy()
    assert np.abs(ours - pil).mean() < 1.0


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4, 3), np.float32), "uint8"),
    (np.zeros((4, 4), np.uint8), "grayscale"),
    (np.zeros((4, 4, 4), np.uint8), "RGBA"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    ([[1, 2, 3]], "numpy array"),
])
def test_bad_images_are_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_image(bad)


def test_huge_image_is_refused_without_allocating():
    huge = np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), shape=(20000, 20000, 3), strides=(0, 0, 1))
    with pytest.raises(ValueError, match="larger than"):
        validate_image(huge)
