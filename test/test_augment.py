"""Colour jitter of training images: deterministic, shape-preserving, and doing what each knob says."""
import numpy as np

from sam_ros.train.augment import ColourJitter, jitter_colour

IDENTITY = ColourJitter(white_balance=0.0, saturation=(1.0, 1.0), contrast=(1.0, 1.0))


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_same_seed_same_image_and_shape_and_dtype_kept():
    a = jitter_colour(_image(), np.random.default_rng(5))
    b = jitter_colour(_image(), np.random.default_rng(5))
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, _image())


def test_identity_ranges_leave_the_image_alone():
    assert np.array_equal(jitter_colour(_image(), np.random.default_rng(1), IDENTITY), _image())


def test_zero_saturation_gives_grey_pixels():
    out = jitter_colour(_image(), np.random.default_rng(3), ColourJitter(0.0, (0.0, 0.0), (1.0, 1.0))).astype(int)
    assert np.abs(out - out.mean(axis=2, keepdims=True)).max() <= 1


def test_contrast_scales_deviations_from_the_mean_like_a_plain_formula():
    image = _image()
    out = jitter_colour(image, np.random.default_rng(4), ColourJitter(0.0, (1.0, 1.0), (0.5, 0.5)))
    values = image.astype(np.float64)
    expected = np.round(values.mean() + 0.5 * (values - values.mean()))
    assert np.abs(out - expected).max() <= 1
