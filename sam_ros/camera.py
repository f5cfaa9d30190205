"""The pinhole camera of a CameraInfo: pixel rays (with undistortion) and depth-to-colour alignment."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PinholeCamera:
    width: int
    height: int
    K: np.ndarray                     # (3, 3)  # noqa: N815 (the ROS field name)
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))  # noqa: N815
    distortion_model: str = "plumb_bob"
    frame_id: str = ""

    def __post_init__(self):
        k = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        if k[0, 0] <= 0 or k[1, 1] <= 0 or not np.isfinite(k).all():
            raise ValueError("camera intrinsics K are invalid (zero or non-finite focal length: "
                             "is the CameraInfo filled in?)")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size {self.width}x{self.height} is invalid")
        object.__setattr__(self, "K", k)
        object.__setattr__(self, "D", np.asarray(self.D, dtype=np.float64).ravel())

    @classmethod
    def from_camera_info(cls, msg: Any) -> "PinholeCamera":
        """From a sensor_msgs/CameraInfo (any object with its field names)."""
        return cls(int(msg.width), int(msg.height), np.asarray(msg.k, dtype=np.float64),
                   np.asarray(msg.d, dtype=np.float64), str(msg.distortion_model or "plumb_bob"),
                   str(msg.header.frame_id))

    @property
    def distorted(self) -> bool:
        return self.D.size > 0 and bool(np.any(self.D != 0))

    def rays(self) -> np.ndarray:
        """(H, W, 2) normalised image coordinates (x/z, y/z) of every pixel centre, undistorted."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        x = (u - self.K[0, 2]) / self.K[0, 0]
        y = (v - self.K[1, 2]) / self.K[1, 1]
        if self.distorted:
            x, y = self._undistort(x, y)
        return np.stack([x, y], axis=-1).astype(np.float32)

    def _undistort(self, xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Invert plumb_bob / rational_polynomial distortion by fixed-point iteration (as OpenCV does)."""
        if self.distortion_model not in ("plumb_bob", "rational_polynomial"):
            raise ValueError(f"distortion model {self.distortion_model!r} is not supported "
                             "(plumb_bob, rational_polynomial)")
        d = np.zeros(8)
        d[:min(8, self.D.size)] = self.D[:8]
        k1, k2, p1, p2, k3, k4, k5, k6 = d
        x, y = xd.copy(), yd.copy()
        for _ in range(20):
            r2 = x * x + y * y
            radial = (1 + ((k3 * r2 + k2) * r2 + k1) * r2) / (1 + ((k6 * r2 + k5) * r2 + k4) * r2)
            dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            x, y = (xd - dx) / radial, (yd - dy) / radial
        return x, y

    def distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forward distortion model (used to test the inverse)."""
        d = np.zeros(8)
        d[:min(8, self.D.size)] = self.D[:8]
        k1, k2, p1, p2, k3, k4, k5, k6 = d
        r2 = x * x + y * y
        radial = (1 + ((k3 * r2 + k2) * r2 + k1) * r2) / (1 + ((k6 * r2 + k5) * r2 + k4) * r2)
        return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def align_depth_to_colour(depth: np.ndarray, depth_camera: PinholeCamera, colour_camera: PinholeCamera) -> np.ndarray:
    """Depth resampled onto the colour image's pixels (nearest), for cameras sharing one optical frame.

    Drivers often publish depth "aligned to colour" at another resolution: same frame, scaled K.
    Different frames need the extrinsics and a reprojection, which this refuses rather than guesses.
    """
    if depth.shape != (depth_camera.height, depth_camera.width):
        raise ValueError(f"depth image is {depth.shape[1]}x{depth.shape[0]} but its CameraInfo says "
                         f"{depth_camera.width}x{depth_camera.height}")
    if depth_camera.frame_id != colour_camera.frame_id:
        raise ValueError(f"depth frame {depth_camera.frame_id!r} differs from colour frame "
                         f"{colour_camera.frame_id!r}: publish depth aligned to colour (same optical frame)")
    if (depth_camera.width, depth_camera.height) == (colour_camera.width, colour_camera.height) and \
            np.allclose(depth_camera.K, colour_camera.K):
        return depth
    rays = colour_camera.rays()
    u = np.rint(rays[..., 0] * depth_camera.K[0, 0] + depth_camera.K[0, 2]).astype(np.int64)
    v = np.rint(rays[..., 1] * depth_camera.K[1, 1] + depth_camera.K[1, 2]).astype(np.int64)
    inside = (u >= 0) & (u < depth_camera.width) & (v >= 0) & (v < depth_camera.height)
    out = np.zeros((colour_camera.height, colour_camera.width), dtype=depth.dtype)
    out[inside] = depth[v[inside], u[inside]]
    return out
