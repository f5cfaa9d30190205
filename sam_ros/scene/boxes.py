"""The oriented-box convention, and boxes that keep their orientation from frame to frame.

Every oriented box is a yaw about "up": its local x is the major horizontal axis when first seen,
y the minor horizontal axis, z up; ``size`` is the extent along exactly those axes, and the rotation
maps local axes to the frame the box is expressed in (columns x, y, z). Yaw is measured about up
from the frame's x axis projected onto the horizontal plane (from its z axis when x is vertical).

A rectangle seen from above is the same box at yaw + k * 90 degrees with x and y extents swapped
for odd k, so a nearly square box can flip by 90 degrees between frames when noise swaps which
side is longer. ``nearest_equivalent`` picks, of those four equivalent boxes, the one whose yaw is
closest to the track's last yaw; ``BoxContinuity`` holds that yaw per track id, and optionally
smooths each track's centroid and box exponentially, restarting when the object moved farther than
a gate (a real move is followed at once, noise is averaged out).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def reference_axes(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal axes (yaw 0 and yaw 90 degrees) of a frame whose unit vertical is ``up``."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(up[0]) <= 0.9 else np.array([0.0, 0.0, 1.0])
    axis_a = helper - (helper @ up) * up
    axis_a /= np.linalg.norm(axis_a)
    return axis_a, np.cross(up, axis_a)


def box_rotation(up: np.ndarray, yaw: float) -> np.ndarray:
    """(3, 3) rotation whose columns are the box's x (yaw direction), y (up x x) and z (up) axes."""
    axis_a, axis_b = reference_axes(up)
    major = math.cos(yaw) * axis_a + math.sin(yaw) * axis_b
    return np.stack([major, np.cross(up, major), up], axis=1)


def box_rotations(up: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """(n, 3, 3) ``box_rotation`` of each yaw, at once."""
    axis_a, axis_b = reference_axes(up)
    c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
    major = c * axis_a + s * axis_b
    minor = -s * axis_a + c * axis_b  # = up x major
    return np.stack([major, minor, np.broadcast_to(up, major.shape)], axis=2)


def rotation_quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) unit quaternion of a proper rotation matrix (Shepperd's method)."""
    m = rotation
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    norm = math.sqrt(sum(v * v for v in q))
    return tuple(float(v / norm) for v in q)


def wrap_angle(angle: float) -> float:
    """The angle in [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def nearest_equivalent(last_yaw: float, yaw: float, size: np.ndarray) -> tuple[float, np.ndarray]:
    """Of the four yaws that describe the same box (yaw + k * 90 degrees, x/y extents swapped for odd k),
    the one nearest ``last_yaw``, with its (x, y, z) size."""
    steps = round(wrap_angle(last_yaw - yaw) / (math.pi / 2))
    new_yaw = wrap_angle(yaw + steps * math.pi / 2)
    size = np.asarray(size, dtype=np.float64)
    return new_yaw, (size[[1, 0, 2]] if steps % 2 else size.copy())


@dataclass
class TrackBox:
    """What a track's published box is: centroid, box centre, size (x, y, z) and yaw."""

    centroid: np.ndarray
    center: np.ndarray
    size: np.ndarray
    yaw: float


class BoxContinuity:
    """Per track id, the last published box: each new box is its nearest equivalent, optionally smoothed.

    ``smoothing`` in [0, 1) is the weight of the past (0: none); a box whose centroid moved more than
    ``gate`` metres from the smoothed one restarts the average.
    """

    def __init__(self, smoothing: float = 0.0, gate: float = 0.1) -> None:
        self.smoothing, self.gate = smoothing, gate
        self.last: dict[int, TrackBox] = {}

    def update(self, track_id: int, box: TrackBox) -> TrackBox:
        """This frame's box of ``track_id`` as published: continuous in yaw, smoothed when asked."""
        last = self.last.get(track_id)
        if last is not None:
            box.yaw, box.size = nearest_equivalent(last.yaw, box.yaw, box.size)
            if self.smoothing > 0 and np.linalg.norm(box.centroid - last.centroid) <= self.gate:
                keep = self.smoothing
                box = TrackBox(keep * last.centroid + (1 - keep) * box.centroid,
                               keep * last.center + (1 - keep) * box.center,
                               keep * last.size + (1 - keep) * box.size,
                               wrap_angle(last.yaw + (1 - keep) * wrap_angle(box.yaw - last.yaw)))
        self.last[track_id] = box
        return box

    def forget_except(self, alive: set[int]) -> None:
        """Drop the boxes of tracks that ended."""
        self.last = {k: v for k, v in self.last.items() if k in alive}
