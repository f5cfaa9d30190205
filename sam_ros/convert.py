"""sensor_msgs/Image and CameraInfo <-> numpy, without cv_bridge and without importing ROS.

Functions read and fill message fields by name (duck typing), so they work on rclpy messages,
rosbags messages and plain objects alike, and are tested without a ROS installation.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

# encoding -> (numpy dtype, channels)
ENCODINGS = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3),
    "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1), "32SC1": (np.int32, 1),
}
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def image_to_array(msg: Any) -> np.ndarray:
    """The pixels of an Image message as (H, W) or (H, W, C), honouring step padding and endianness."""
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ValueError(f"empty image: {width}x{height}")
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ValueError(f"step {step} is smaller than a row of {width} {encoding} pixels ({row_bytes} bytes)")
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray, memoryview, np.ndarray))
                         else msg.data, dtype=np.uint8)
    if data.size < step * height:
        raise ValueError(f"image data has {data.size} bytes, expected step*height = {step * height}")
    rows = data[:step * height].reshape(height, step)[:, :row_bytes]
    array = rows.copy().view(np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<"))
    array = array.astype(np.dtype(dtype).newbyteorder("="), copy=False)
    return array.reshape(height, width, channels) if channels > 1 else array.reshape(height, width)


def colour_to_rgb(msg: Any) -> np.ndarray:
    """Any supported colour Image as uint8 RGB (H, W, 3): the pipeline's input."""
    if msg.encoding not in COLOUR_ENCODINGS:
        raise ValueError(f"colour image encoding {msg.encoding!r} is not one of {', '.join(COLOUR_ENCODINGS)}")
    array = image_to_array(msg)
    if msg.encoding == "mono8":
        return np.repeat(array[..., None], 3, axis=2)
    if msg.encoding.startswith("bgr"):
        array = array[..., 2::-1]
    return np.ascontiguousarray(array[..., :3])


def depth_image(msg: Any) -> np.ndarray:
    """A depth Image as stored: uint16 (16UC1/mono16, driver units, usually mm) or float32 metres (32FC1)."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth encoding {msg.encoding!r} is not one of {', '.join(DEPTH_ENCODINGS)}")
    return image_to_array(msg)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (png/jpeg) as uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(bytes(msg.data)))
        return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot decode compressed image (format {msg.format!r}): {error}") from error


def fill_image(msg: Any, array: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Fill an Image message from an array in ``encoding``; returns ``msg``."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}")
    dtype, channels = ENCODINGS[encoding]
    array = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    if array.ndim != (3 if channels > 1 else 2) or (channels > 1 and array.shape[2] != channels):
        raise ValueError(f"array of shape {array.shape} does not fit encoding {encoding}")
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(array.shape[1] * channels * array.itemsize)
    msg.data = array.tobytes()
    return msg
