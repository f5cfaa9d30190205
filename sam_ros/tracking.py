"""Stable object ids across frames: what a robot's behaviour code holds on to.

Each frame's objects are matched to the tracks of the previous frames, greedily by cost: 3D centroid
distance when both have valid depth (gated by ``max_distance``), otherwise 1 - mask IoU (gated by
``min_iou``). Unmatched objects start new tracks; tracks unseen for more than ``max_age`` frames end.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Track:
    id: int
    centroid: np.ndarray | None   # last valid 3D centroid
    mask: torch.Tensor            # last mask (H, W) bool
    age: int = 0                  # frames since last seen


class ObjectTracker:
    def __init__(self, max_distance: float = 0.3, min_iou: float = 0.1, max_age: int = 5) -> None:
        self.max_distance = max_distance
        self.min_iou = min_iou
        self.max_age = max_age
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, masks: torch.Tensor, centroids: list[np.ndarray | None]) -> list[int]:
        """Ids for this frame's objects (masks (N, H, W) bool; centroid None where depth was invalid)."""
        n = masks.shape[0]
        cost = np.full((n, len(self.tracks)), np.inf)
        if n and self.tracks:
            iou = self._mask_iou(masks, torch.stack([t.mask.to(masks.device) for t in self.tracks]))
            for j, track in enumerate(self.tracks):
                for i in range(n):
                    if centroids[i] is not None and track.centroid is not None:
                        distance = float(np.linalg.norm(centroids[i] - track.centroid))
                        if distance <= self.max_distance:
                            cost[i, j] = distance / max(self.max_distance, 1e-9)
                    elif iou[i, j] >= self.min_iou:
                        cost[i, j] = 1.0 - iou[i, j]
        ids = [0] * n
        matched_tracks: set[int] = set()
        for flat in np.argsort(cost, axis=None, kind="stable"):
            i, j = divmod(int(flat), max(len(self.tracks), 1))
            if not np.isfinite(cost[i, j]) or ids[i] or j in matched_tracks:
                continue
            ids[i] = self.tracks[j].id
            matched_tracks.add(j)
            self.tracks[j] = Track(self.tracks[j].id, centroids[i] if centroids[i] is not None
                                   else self.tracks[j].centroid, masks[i])
        for j, track in enumerate(self.tracks):
            if j not in matched_tracks:
                track.age += 1
        self.tracks = [t for t in self.tracks if t.age <= self.max_age]
        for i in range(n):
            if not ids[i]:
                ids[i] = self._next_id
                self._next_id += 1
                self.tracks.append(Track(ids[i], centroids[i], masks[i]))
        return ids

    @staticmethod
    def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        if a.shape[1:] != b.shape[1:]:
            return np.zeros((a.shape[0], b.shape[0]))
        fa, fb = a.flatten(1).float(), b.flatten(1).float()
        inter = fa @ fb.T
        union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
        return (inter / union.clamp(min=1)).cpu().numpy()
