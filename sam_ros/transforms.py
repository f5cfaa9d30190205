"""A small TF buffer: the transforms from /tf and /tf_static, looked up at a frame's timestamp.

tf2_ros is not installable from PyPI, and the node only needs one lookup per frame (camera optical
frame -> ``target_frame``), so this keeps tf2's semantics for that case: frames form a tree of
parent -> child transforms; static ones hold forever, dynamic ones are interpolated between the two
samples around the requested time (translation linearly, rotation by slerp) and never extrapolated
beyond a small tolerance; a lookup walks both frames up to their common ancestor.
"""
from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

# Dynamic samples kept per child frame (tf2's default cache is 10 s; at ~100 Hz this is ~10 s).
HISTORY = 1000
# How far past the newest (or before the oldest) sample a lookup may be served by that sample.
EXTRAPOLATION_TOLERANCE_NS = 50_000_000


class TransformUnavailable(LookupError):
    """No transform between the frames at that time; the message says why."""


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3x3 rotation of a (normalised) quaternion."""
    q = np.array([x, y, z, w], dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"invalid quaternion {q.tolist()}")
    x, y, z, w = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    q0, q1 = q0 / np.linalg.norm(q0), q1 / np.linalg.norm(q1)
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)


@dataclass(frozen=True)
class Sample:
    stamp_ns: int
    translation: np.ndarray   # (3,)
    rotation: np.ndarray      # (4,) x, y, z, w

    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = quaternion_matrix(*self.rotation)
        m[:3, 3] = self.translation
        return m


class TransformBuffer:
    """Thread-safe: /tf callbacks write while the inference thread looks up."""

    def __init__(self, history: int = HISTORY, tolerance_ns: int = EXTRAPOLATION_TOLERANCE_NS) -> None:
        self._lock = threading.Lock()
        self._parent: dict[str, str] = {}
        self._static: dict[str, Sample] = {}
        self._dynamic: dict[str, deque[Sample]] = {}
        self._history, self._tolerance = history, tolerance_ns

    def set_transform(self, parent: str, child: str, stamp_ns: int, translation, rotation, static: bool) -> None:
        """Add parent -> child (the pose of ``child`` in ``parent``), as in a TransformStamped."""
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"invalid transform {parent!r} -> {child!r}")
        sample = Sample(int(stamp_ns), np.asarray(translation, np.float64), np.asarray(rotation, np.float64))
        quaternion_matrix(*sample.rotation)  # rejects zero / NaN quaternions here, not at lookup time
        if not np.isfinite(sample.translation).all():
            raise ValueError(f"non-finite translation in {parent!r} -> {child!r}")
        with self._lock:
            self._insert(parent, child, sample, static)

    def _insert(self, parent: str, child: str, sample: Sample, static: bool) -> None:
        self._parent[child] = parent
        if static:
            self._static[child] = sample
            self._dynamic.pop(child, None)
            return
        samples = self._dynamic.setdefault(child, deque(maxlen=self._history))
        if samples and sample.stamp_ns < samples[-1].stamp_ns:  # out of order: insert in place
            ordered = sorted([*samples, sample], key=lambda s: s.stamp_ns)
            samples.clear()
            samples.extend(ordered[-self._history:])
        else:
            samples.append(sample)

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """4x4 matrix taking points in ``source`` to ``target`` at ``stamp_ns`` (0 = latest)."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return np.eye(4)
        with self._lock:
            return self._lookup(target, source, stamp_ns)

    def _lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        source_chain, target_chain = self._chain(source), self._chain(target)
        common = next((frame for frame in source_chain if frame in target_chain), None)
        if common is None:
            raise TransformUnavailable(f"no transform from {source!r} to {target!r}: not connected "
                                       f"({source!r} reaches {source_chain[-1]!r}, {target!r} reaches "
                                       f"{target_chain[-1]!r})")
        to_common = self._to_ancestor(source_chain, common, stamp_ns)
        target_to_common = self._to_ancestor(target_chain, common, stamp_ns)
        return np.linalg.inv(target_to_common) @ to_common

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._parent:
            chain.append(self._parent[chain[-1]])
            if len(chain) > 1000:
                raise TransformUnavailable(f"transform loop through {frame!r}")
        return chain

    def _to_ancestor(self, chain: list[str], ancestor: str, stamp_ns: int) -> np.ndarray:
        matrix = np.eye(4)
        for child in chain[:chain.index(ancestor)]:
            matrix = self._sample(child, stamp_ns).matrix() @ matrix
        return matrix

    def _sample(self, child: str, stamp_ns: int) -> Sample:
        if child in self._static:
            return self._static[child]
        samples = self._dynamic[child]
        if stamp_ns == 0:
            return samples[-1]
        stamps = [s.stamp_ns for s in samples]
        i = bisect.bisect_left(stamps, stamp_ns)
        if i < len(samples) and stamps[i] == stamp_ns:
            return samples[i]
        if i == 0 or i == len(samples):
            nearest = samples[0] if i == 0 else samples[-1]
            if abs(nearest.stamp_ns - stamp_ns) <= self._tolerance:
                return nearest
            when = "before the oldest" if i == 0 else "after the newest"
            raise TransformUnavailable(f"{self._parent[child]!r} -> {child!r} at {stamp_ns * 1e-9:.3f} s is "
                                       f"{when} transform ({nearest.stamp_ns * 1e-9:.3f} s): would extrapolate")
        before, after = samples[i - 1], samples[i]
        t = (stamp_ns - before.stamp_ns) / (after.stamp_ns - before.stamp_ns)
        return Sample(stamp_ns, before.translation + t * (after.translation - before.translation),
                      slerp(before.rotation, after.rotation, t))
