"""Temporal prompts: a video's objects are where they were, so prompt them there first.

On a frame after a scan, the first decoder batch is the live tracks' prompts (from the tracker: inside
each one's last mask, moved by its image motion). The second batch is every point of the base strategy
(grid, or AoP's predicted prompts and fill grid) that those masks leave uncovered: a new object, or one
whose track lost it, is found on the frame it shows up on a point no track explains. Every
``rescan_every`` frames, and on any frame without tracks, the base strategy runs in full (the track
prompts riding in its first decoder batch, so their masks still claim their tracks); when the track
masks cover clearly less of the frame than the last frame's kept masks (``coverage_drop``: the tracks no
longer explain the frame), the rest of that frame is a full scan too. So a frame costs a few prompts
per object instead of a grid, and an object is found within ``rescan_every`` frames at the latest.

A point of the base strategy that no kept mask covered (a textured floor the model gives no confident
mask for, say) gives the same nothing again while the image there is the same: between scans it is
skipped while the image embedding under it stays within ``skip_similarity`` (cosine) of what it was
when the point was last decoded. An object that moves in changes the embedding, so it is still found at
once; the thresholds are deterministic, so skipping an unchanged point loses nothing.

Masks made by a track's prompt claim that track's id (``claims``); the tracker checks the claim. Tracks
that share a prompt (one point made a whole and its part) share its decode and its claims.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..datatypes import EncodedImage, MaskBatch
from .aop import AoPPrompts
from .base import PromptStrategy, at_points, distinct_cover
from .grid import GridPrompts


def candidate_points(strategy: PromptStrategy, encoded: EncodedImage) -> torch.Tensor:
    """The points (N, 2 frame pixels (x, y)) a full scan of ``strategy`` would consider: the grid, or AoP's fill
    grid and its predicted prompts for this frame."""
    device = encoded.embedding.device
    if isinstance(strategy, GridPrompts):
        return strategy.points(encoded)
    if isinstance(strategy, AoPPrompts):
        predicted, fill = strategy.candidates(encoded)
        return torch.cat([fill.to(device), predicted.to(device)])
    return torch.zeros(0, 2, device=device)


def same_points(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) bool: which points of ``a`` are exactly points of ``b`` (prompts pass unchanged)."""
    return (a[:, None, :] == b[None, :, :].to(a.device)).all(-1)


class TemporalPrompts(PromptStrategy):
    """Track prompts first, the base strategy only where they leave the frame uncovered."""

    def __init__(self, base: PromptStrategy, rescan_every: int = 8, coverage_drop: float = 0.05,
                 mask_threshold: float = 0.0, nms_thresh: float = 1.0, skip_similarity: float = 0.98) -> None:
        self.base = base
        self.rescan_every, self.coverage_drop, self.mask_threshold = rescan_every, coverage_drop, mask_threshold
        self.nms_thresh, self.skip_similarity = nms_thresh, skip_similarity
        self._next_tracks: tuple[torch.Tensor, list[int]] = (torch.zeros(0, 2), [])
        self.track_points = torch.zeros(0, 2)    # the track prompts of the frame just decoded, each once
        self.track_ids: list[list[int]] = []     # the tracks each of those prompts belongs to
        self._since_scan: int | None = None      # frames since the last full scan (None: none yet)
        self._coverage = 0.0                     # fraction of the frame the last frame's kept masks covered
        self.full_scan = True                    # whether the frame just decoded was a full scan
        # Base-strategy points of this frame (frame pixels) and the embedding under each when last decoded;
        # after the frame, those no kept mask covers are the barren points the next frame may skip.
        self._tried = (torch.zeros(0, 2), torch.zeros(0, 0))
        self._barren = (torch.zeros(0, 2), torch.zeros(0, 0))
        self.skipped = 0                         # barren points the frame just decoded did not decode again

    def set_tracks(self, points: torch.Tensor, ids: list[int]) -> None:
        """The live tracks' prompts (N, 2 frame pixels) and ids, for the next frame only."""
        self._next_tracks = (points, list(ids))

    def record_kept(self, masks: torch.Tensor) -> None:
        """The masks (N, H, W) the frame kept (after NMS and area filters): the next frame's track masks
        are held against the share of the frame these cover, and the base points decoded this frame that
        none of them covers are barren."""
        union = masks.any(0) if len(masks) else None
        self._coverage = float(union.float().mean()) if union is not None else 0.0
        points, vectors = self._tried
        if union is not None and len(points):
            xy = points.long()
            hit = union[xy[:, 1].clamp(0, union.shape[0] - 1), xy[:, 0].clamp(0, union.shape[1] - 1)]
            points, vectors = points[~hit], vectors[~hit]
        self._barren = (points, vectors)

    def claims(self, points: torch.Tensor) -> list[list[int]]:
        """For each mask's prompt (N, 2): the ids of the tracks whose prompt it was (none: not a track's)."""
        if not self.track_ids or len(points) == 0:
            return [[] for _ in range(len(points))]
        match = same_points(points, self.track_points)
        found, index = match.any(1).tolist(), match.float().argmax(1).tolist()
        return [self.track_ids[k] if hit else [] for hit, k in zip(found, index)]

    def propose(self, encoded: EncodedImage, decode):
        points, ids = self._next_tracks
        self._next_tracks = (torch.zeros(0, 2), [])
        self._set_track_points(points, ids, encoded.embedding.device)
        due = self._since_scan is None or self._since_scan + 1 >= self.rescan_every
        self.skipped = 0
        if not ids or due:
            return self._full_scan(encoded, decode, self.track_points)
        first = decode(self.track_points)
        covered = self._covered(first)
        if self._fraction(covered, encoded) < self._coverage - self.coverage_drop:
            return MaskBatch.cat([first, self._full_scan(encoded, decode, self.track_points[:0])])
        self.full_scan, self._since_scan = False, self._since_scan + 1
        candidates = candidate_points(self.base, encoded)
        rest = candidates[~at_points(covered, candidates, encoded)]
        vectors = embedding_at(encoded, rest)
        unchanged, before = self._unchanged_barren(rest, vectors)
        self.skipped = int(unchanged.sum())
        # A skipped point stays barren against the embedding it was last decoded on, so slow drift adds up.
        self._tried = (rest, torch.where(unchanged[:, None], before, vectors))
        rest = rest[~unchanged]
        return MaskBatch.cat([first, decode(rest)]) if len(rest) else first

    def _unchanged_barren(self, points: torch.Tensor, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Which of ``points`` are barren points whose embedding (``vectors``, (N, C)) is within
        ``skip_similarity`` of the one they were decoded on (N,) bool, and that embedding (N, C)."""
        barren_points, barren_vectors = self._barren
        unchanged, before = torch.zeros(len(points), dtype=torch.bool, device=points.device), vectors.clone()
        if not len(points) or not len(barren_points) or barren_vectors.shape[1] != vectors.shape[1]:
            return unchanged, before
        match = same_points(points, barren_points)
        known = match.any(1)
        before[known] = barren_vectors[match[known].float().argmax(1)]
        similarity = F.cosine_similarity(vectors, before, dim=1).clamp(max=1.0)
        return known & (similarity > self.skip_similarity), before

    def _set_track_points(self, points: torch.Tensor, ids: list[int], device: torch.device) -> None:
        """Each distinct track prompt once, with the ids of all the tracks it belongs to."""
        unique, inverse = torch.unique(points.reshape(-1, 2), dim=0, return_inverse=True)
        self.track_points = unique.to(device)
        self.track_ids = [[] for _ in range(len(unique))]
        for k, track_id in zip(inverse.tolist(), ids):
            if track_id not in self.track_ids[k]:
                self.track_ids[k].append(track_id)

    def _full_scan(self, encoded: EncodedImage, decode, track_points: torch.Tensor):
        """The base strategy in full, ``track_points`` riding in its first decoder batch (one pass)."""
        pending, tried = [track_points], []

        def with_tracks(points: torch.Tensor):
            tried.append(points)
            if not pending:
                return decode(points)
            tracks = pending.pop()
            points = points.to(tracks.device)
            return decode(torch.cat([tracks, points[~same_points(points, tracks).any(1)]]))

        self.full_scan, self._since_scan = True, 0
        batch = self.base.propose(encoded, with_tracks)
        points = torch.cat(tried).to(encoded.embedding.device) if tried else torch.zeros(0, 2, device=encoded.embedding.device)
        self._tried = (points, embedding_at(encoded, points))
        return batch

    def _covered(self, batch: MaskBatch) -> torch.Tensor:
        """(s, s) bool: cells of the low-res grid that a mask of ``batch`` surviving box NMS covers."""
        return distinct_cover(batch.logits, batch.iou, self.mask_threshold, self.nms_thresh) > 0

    @staticmethod
    def _fraction(covered: torch.Tensor, encoded: EncodedImage) -> float:
        """Covered fraction of the low-res cells that show the frame (not the padding)."""
        h_in, w_in = encoded.input_size
        rows = -(-h_in * covered.shape[0] // encoded.image.shape[-2])
        cols = -(-w_in * covered.shape[1] // encoded.image.shape[-1])
        return float(covered[:rows, :cols].float().mean())


def embedding_at(encoded: EncodedImage, points: torch.Tensor) -> torch.Tensor:
    """(N, C) float32: the image embedding under frame-pixel ``points`` (on the embedding's device)."""
    return at_points(encoded.embedding[0], points, encoded).T.float()


def temporal_wrapped(strategy: PromptStrategy, previous: PromptStrategy | None, rescan_every: int,
                     coverage_drop: float, mask_threshold: float, nms_thresh: float = 1.0,
                     skip_similarity: float = 0.98) -> TemporalPrompts:
    """``strategy`` behind temporal prompts; a ``previous`` temporal wrapper hands over its state only when
    its base is of the same kind (so a threshold change does not force a full scan). Its barren points are
    not handed over: under new thresholds they may give masks."""
    temporal = TemporalPrompts(strategy, rescan_every, coverage_drop, mask_threshold, nms_thresh, skip_similarity)
    if isinstance(previous, TemporalPrompts) and type(previous.base) is type(strategy):
        temporal._since_scan, temporal._coverage = previous._since_scan, previous._coverage
    return temporal
