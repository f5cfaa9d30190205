from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sam_ros.convert import colour_to_rgb, compressed_to_rgb, depth_image, fill_image, image_to_array


def message(array, encoding, pad=0, bigendian=False):
    array = np.ascontiguousarray(array)
    if bigendian:
        array = array.astype(array.dtype.newbyteorder(">"))
    rows = array.reshape(array.shape[0], -1).view(np.uint8)
    rows = np.pad(rows, ((0, 0), (0, pad)))
    return SimpleNamespace(height=array.shape[0], width=array.shape[1], encoding=encoding, step=rows.shape[1],
                           is_bigendian=int(bigendian), data=rows.tobytes())


RGB = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)


@pytest.mark.parametrize("encoding, array", [
    ("rgb8", RGB), ("bgr8", RGB[..., ::-1]), ("rgba8", np.dstack([RGB, np.full((4, 5), 9, np.uint8)])),
    ("bgra8", np.dstack([RGB[..., ::-1], np.full((4, 5), 9, np.uint8)])),
])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_become_rgb(encoding, array, pad):
    assert np.array_equal(colour_to_rgb(message(array, encoding, pad)), RGB)


def test_mono8_becomes_grey_rgb():
    rgb = colour_to_rgb(message(RGB[..., 0], "mono8"))
    assert rgb.shape == (4, 5, 3) and np.array_equal(rgb[..., 2], RGB[..., 0])


@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_both_units_and_endianness(bigendian):
    mm = np.array([[0, 1000], [65535, 1234]], np.uint16)
    assert np.array_equal(depth_image(message(mm, "16UC1", 2, bigendian)), mm)
    metres = np.array([[0.5, np.nan], [1.25, 3.0]], np.float32)
    out = depth_image(message(metres, "32FC1", 0, bigendian))
    assert out.dtype == np.float32 and np.array_equal(out, metres, equal_nan=True)


@pytest.mark.parametrize("msg, problem", [
    (message(RGB, "yuv422"), "not one of"),
    (message(RGB, "16UC1"), "not one of"),
    (SimpleNamespace(height=0, width=5, encoding="rgb8", step=15, is_bigendian=0, data=b""), "empty"),
    (SimpleNamespace(height=4, width=5, encoding="rgb8", step=10, is_bigendian=0, data=bytes(40)), "step"),
    (SimpleNamespace(height=4, width=5, encoding="rgb8", step=15, is_bigendian=0, data=bytes(30)), "bytes"),
])
def test_bad_images_are_clear_errors(msg, problem):
    with pytest.raises(ValueError, match=problem):
        colour_to_rgb(msg)


def test_fill_image_round_trips():
    for array, encoding in ((RGB, "rgb8"), (np.arange(6, dtype=np.int32).reshape(2, 3), "32SC1"),
                            (np.ones((2, 3), np.float32), "32FC1"), (np.ones((2, 3), np.uint16), "16UC1")):
        msg = fill_image(SimpleNamespace(), array, encoding)
        assert np.array_equal(image_to_array(msg), array)
    with pytest.raises(ValueError, match="does not fit"):
        fill_image(SimpleNamespace(), RGB, "mono8")


def test_compressed_png_and_garbage():
    import io

    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, format="png")
    assert np.array_equal(compressed_to_rgb(SimpleNamespace(format="png", data=buffer.getvalue())), RGB)
    with pytest.raises(ValueError, match="cannot decode"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b"garbage"))


def test_unknown_encoding_in_the_generic_reader():
    with pytest.raises(ValueError, match="unsupported image encoding"):
        image_to_array(message(RGB, "yuv422"))
