"""Input validation and preprocessing: uint8 HxWx3 -> the model's normalised, padded square, on the device."""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .transfer import PinnedStaging

MAX_PIXELS = 8192 * 8192  # anything larger is a corrupt message, not a camera frame


def validate_image(rgb: np.ndarray) -> None:
    """Raise ValueError naming what is wrong with a colour frame."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {rgb.dtype}")
    if rgb.ndim != 3:
        raise ValueError(f"image must be HxWx3 RGB, got shape {rgb.shape} (grayscale? convert to RGB first)")
    if rgb.shape[2] != 3:
        raise ValueError(f"image must have 3 channels (RGB), got {rgb.shape[2]} (RGBA? drop the alpha channel)")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"image is empty: {rgb.shape[0]}x{rgb.shape[1]}")
    if rgb.shape[0] * rgb.shape[1] > MAX_PIXELS:
        raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]}: larger than {MAX_PIXELS} pixels")


def resized_shape(height: int, width: int, target: int) -> tuple[int, int]:
    """Size after scaling the longest side to ``target`` (segment-anything's ResizeLongestSide)."""
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


# Log depth relative to the view's median in units of DEPTH_LOG_UNIT, clipped: a scale-free input (a room
# and a table top look alike to it) in the range of the normalised colour channels; 0 is also "no depth".
DEPTH_LOG_UNIT = 0.5
DEPTH_CLIP = 3.0


def depth_channel(depth_m: np.ndarray | None, box: tuple[int, int, int, int] | None, size: tuple[int, int],
                  img_size: int, device: torch.device | str) -> torch.Tensor:
    """(1, 1, img_size, img_size) depth input of a model with ``depth_input`` for one view of the frame.

    ``depth_m`` is metres aligned to the colour frame (NaN or <= 0 invalid; None: no depth, all zeros, as
    trained with depth dropout); ``box`` the view (x0, y0, x1, y1; None = the whole frame), resized to
    ``size`` (h, w) and padded like the colour channels. Invalid pixels are left out of the averaging
    resize, so a dropout at an edge does not pull the object towards 0 m.
    """
    channel = torch.zeros(1, 1, img_size, img_size, device=device)
    if depth_m is None:
        return channel
    x0, y0, x1, y1 = box or (0, 0, depth_m.shape[1], depth_m.shape[0])
    depth = torch.from_numpy(np.ascontiguousarray(depth_m[y0:y1, x0:x1], np.float32)).to(device)[None, None]
    valid = (torch.isfinite(depth) & (depth > 0)).float()
    log_depth = torch.where(valid > 0, depth, torch.ones_like(depth)).log() * valid
    if size != tuple(depth.shape[-2:]):
        valid = F.interpolate(valid, size=size, mode="area")
        log_depth = F.interpolate(log_depth, size=size, mode="area") / valid.clamp(min=1e-6)
        valid = (valid >= 0.5).float()
    if valid.any():
        log_depth = ((log_depth - log_depth[valid > 0].median()) / DEPTH_LOG_UNIT).clamp(-DEPTH_CLIP, DEPTH_CLIP)
    channel[:, :, :size[0], :size[1]] = log_depth * valid
    return channel


def preprocess(rgb: np.ndarray, img_size: int, pixel_mean: torch.Tensor, pixel_std: torch.Tensor,
               device: torch.device | str, dtype: torch.dtype,
               staging: PinnedStaging | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """Resize (longest side = img_size), normalise and pad to a (1, 3, img_size, img_size) tensor.

    The antialiased bilinear resize matches PIL's, which the reference applies on the host; the result
    is rounded to uint8 levels like PIL's output so both see the same pixels. Returns the tensor and the
    resized (h, w) inside the padded square. ``staging`` keeps the pinned upload buffer between frames.
    """
    validate_image(rgb)
    h, w = resized_shape(rgb.shape[0], rgb.shape[1], img_size)
    staging = staging or PinnedStaging()
    image = staging.upload(rgb, torch.device(device))
    image = image.permute(2, 0, 1).unsqueeze(0).float()
    if (h, w) != rgb.shape[:2]:
        image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        image = image.round_().clamp_(0, 255)
    image = (image - pixel_mean.to(image.device)) / pixel_std.to(image.device)
    image = F.pad(image, (0, img_size - w, 0, img_size - h))
    return image.to(dtype), (h, w)


def preprocess_views(rgb: np.ndarray, boxes: list[tuple[int, int, int, int]], long_sides: list[int], img_size: int,
                     pixel_mean: torch.Tensor, pixel_std: torch.Tensor, device: torch.device | str,
                     dtype: torch.dtype) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Views of one frame (crops x0, y0, x1, y1 and the long side each is resized to) as one (V, 3, S, S) batch.

    The frame is moved to the device once; each view is cut, resized and normalised there exactly as
    ``preprocess`` treats a whole frame (segment-anything crops the uint8 image, then resizes).
    """
    validate_image(rgb)
    frame = torch.from_numpy(np.require(rgb, requirements=("C", "W"))).to(device, non_blocking=True)
    frame = frame.permute(2, 0, 1).unsqueeze(0).float()
    images, sizes = [], []
    for (x0, y0, x1, y1), long_side in zip(boxes, long_sides):
        if not (0 <= x0 < x1 <= rgb.shape[1] and 0 <= y0 < y1 <= rgb.shape[0]) or not 0 < long_side <= img_size:
            raise ValueError(f"view {(x0, y0, x1, y1)} at {long_side} px does not fit a {rgb.shape[1]}x{rgb.shape[0]} "
                             f"frame in a {img_size} px model input")
        image = frame[:, :, y0:y1, x0:x1]
        h, w = resized_shape(y1 - y0, x1 - x0, long_side)
        if (h, w) != (y1 - y0, x1 - x0):
            image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            image = image.round_().clamp_(0, 255)
        image = (image - pixel_mean.to(image.device)) / pixel_std.to(image.device)
        images.append(F.pad(image, (0, img_size - w, 0, img_size - h)))
        sizes.append((h, w))
    return torch.cat(images).to(dtype), sizes
