"""Stable object ids across frames, from compact host-side track state.

A track keeps only what matching and temporal prompts need: its box, its last valid 3D centroid, a
downsampled mask (``TRACK_MASK_SIDE`` cells on the long side, on the host) and its image motion. It
never holds a frame's mask tensor, so no GPU memory outlives the frame that made it.

Each track predicts where it is now at constant velocity: its centroid moved by its 3D velocity, its
downsampled mask shifted by its image motion (per frame, times the frames since it was seen). The image
motion is that of the box edge that moved least (an occluder or the frame's border clips one edge while
the other moves with the object). Matching is greedy over a cost: when both have valid depth, the distance
from the predicted centroid, or from the last one when that is nearer (a velocity measured on one jump of
a mask's centroid, then extrapolated over missed frames, would lose a still object), gated by
``max_distance`` plus the track's speed for every frame it went unseen (up to twice ``max_distance``),
averaged with 1 - IoU with the shifted mask or the last one, whichever overlaps more (when an object's
mask splits, the piece that covers its region keeps the id, not the piece whose centroid happens to lie
nearer); otherwise 1 - IoU alone (gated by ``min_iou``). Beyond the distance gate a mask that covers the
track's mask (IoU >= ``SAME_REGION_IOU``) at the track's own depth still matches, after every match within
the gate: a centroid jumps when an object comes into view or a mask grows from a part to the whole. A mask
made by a track's own temporal prompt *claims* that track and keeps its id when the same gate allows it,
it overlaps the track's mask (IoU >= ``min_iou``: the prompt came from there, so a mask of a neighbour the
prompt slipped onto is refused) and the depth there is still the track's own, moved at the rate it changed
(a prompt that slipped onto a nearer object hiding the track's is refused too), and a track that went
unseen claims no mask that a track seen in the last frame fits better; the best claimant wins.
The rest are matched as above. Two tracks of one object (twins: last seen in one frame, their masks
covering one region; one's predicted mask lies mostly inside the mask the other's own prompt made, within
the gate, and the depth there is still the twin's) merge into the older; an object that passes in front of
another also covers its predicted mask, but nearer the camera, so the hidden object's track waits for it
to reappear. Given a colour image, a mask whose chromaticity histogram lies far from a track's last one
(``APPEARANCE_CHANGE``) is another object: a neighbour that came into view where a hidden object was, or the
part of an occluder that passes in front of one. Unmatched objects start new tracks; tracks unseen for more
than ``max_age`` frames end.

Masks have roles (a whole object, a part of one, structure) when the scene stage has judged them. A
user follows whole objects' ids, and one object often gives a whole and a part that both fit its track:
so a track passes to a mask of its own role first (a claim across roles waits for the matching, where a
change of role costs more than any match within the gate), and of twins the one that fits the mask's
role keeps the object (it had that role, or the mask is a whole and the track once was one: an object's
mask shrinks to a part for a frame or two while a younger track takes the whole).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import cv2
import numpy as np
import torch
from torch.nn import functional as F

TRACK_MASK_SIDE = 128  # cells on the long side of a track's mask (640x480 -> 128x96: 5x5 pixels a cell)
TWIN_SHARE = 0.5  # a track whose predicted mask lies this much inside another track's mask is the same object
TWIN_DEPTH_CHANGE = 0.05  # ... unless the depth there changed by more than this share of it (an occluder)
SAME_REGION_IOU = 0.5  # a mask this much over a track's predicted mask may keep its id beyond the distance gate
CHROMA_BINS = 8  # bins per axis of the (r, g) chromaticity histogram that describes what an object looks like
# Hellinger distance of those histograms past which a track's object is another one: over the renderer's
# moving sequences (both scene styles, seeds 16-23, outside the benches) one object's views stayed below 0.63 of
# its first view; two objects in one frame lay above 0.7 two times in three
APPEARANCE_CHANGE = 0.7


class Role(IntEnum):
    """What a mask is, as the scene stage judged it."""
    WHOLE = 0
    PART = 1
    STRUCTURE = 2


# added to a match's cost (at most 1 within the gate, 1.5 beyond it) when the mask's role is not the track's
ROLE_CHANGE_COST = 2.0


@dataclass
class Track:
    id: int
    centroid: np.ndarray | None   # last valid 3D centroid
    mask: torch.Tensor            # last mask, downsampled (h, w) bool, on the host
    box: np.ndarray               # last box x0, y0, x1, y1 in frame pixels
    age: int = 0                  # frames since last seen
    motion: np.ndarray | None = None  # image motion of the mask's centre, frame pixels per frame (x, y)
    prompt: np.ndarray | None = None  # the point prompt that produced its last mask, frame pixels (x, y)
    velocity: np.ndarray | None = None  # 3D motion of the centroid per frame (metres)
    role: Role = Role.WHOLE       # what its last mask was
    was_whole: bool = True        # whether any of its masks was a whole object
    depth: float | None = None    # median depth under its last mask (metres); None without valid depth or claims
    depth_rate: float | None = None  # change of that median depth per frame (metres); None until seen twice
    appearance: np.ndarray | None = None  # chromaticity histogram of its last mask; None without a colour image

    def predicted_centroid(self) -> np.ndarray | None:
        """Where the centroid is expected now: moved at constant velocity over the frames since seen."""
        if self.centroid is None or self.velocity is None:
            return self.centroid
        return self.centroid + self.velocity * (1 + self.age)

    def predicted_mask(self, frame_size: tuple[int, int]) -> torch.Tensor:
        """The downsampled mask shifted by the image motion over the frames since seen (whole cells);
        ``frame_size`` (H, W) in pixels."""
        if self.motion is None:
            return self.mask
        cells = np.array([self.mask.shape[1] / frame_size[1], self.mask.shape[0] / frame_size[0]])
        dx, dy = np.rint(self.motion * (1 + self.age) * cells).astype(int)
        return shift_mask(self.mask, int(dx), int(dy))


def compact_size(height: int, width: int, side: int = TRACK_MASK_SIDE) -> tuple[int, int]:
    """(h, w) cells of the compact grid of an (height, width) frame: ``side`` cells on its long side at most."""
    scale = min(1.0, side / max(height, width, 1))
    return max(1, round(height * scale)), max(1, round(width * scale))


def compact_masks(masks: torch.Tensor, side: int = TRACK_MASK_SIDE) -> torch.Tensor:
    """(N, H, W) bool masks -> (N, h, w) bool on the host, a cell set where half its pixels are.

    Area-weighted, so IoUs of compact masks approximate full-resolution ones; a mask smaller than a cell
    keeps its best-covered cell rather than vanishing.
    """
    n, height, width = masks.shape
    size = compact_size(height, width, side)
    if n == 0:
        return torch.zeros(0, *size, dtype=torch.bool)
    pooled = F.adaptive_avg_pool2d(masks[:, None].float(), size)[:, 0]
    compact = pooled >= 0.5
    best = (pooled == pooled.flatten(1).amax(1)[:, None, None]) & (pooled > 0)
    compact = torch.where(compact.flatten(1).any(1)[:, None, None], compact, best)
    return compact.cpu()


def compact_depth(depth: np.ndarray, side: int = TRACK_MASK_SIDE) -> torch.Tensor:
    """(H, W) metres with NaN where invalid -> the mean valid depth of each compact-mask cell (NaN where
    a cell has no valid pixel), on the grid of ``compact_masks``."""
    metres = torch.as_tensor(np.asarray(depth, dtype=np.float32))
    size = compact_size(*metres.shape, side)
    valid = torch.isfinite(metres)
    total = F.adaptive_avg_pool2d(torch.where(valid, metres, 0.0)[None, None], size)[0, 0]
    share = F.adaptive_avg_pool2d(valid.float()[None, None], size)[0, 0]
    return torch.where(share > 0, total / share.clamp(min=1e-9), float("nan"))


def median_depth(depth: torch.Tensor | None, cells: torch.Tensor) -> float | None:
    """The median of a compact depth map over ``cells`` (bool), None where none is valid."""
    if depth is None:
        return None
    values = depth[cells]
    values = values[torch.isfinite(values)]
    return float(values.median()) if len(values) else None


def compact_chroma_bins(image: np.ndarray, side: int = TRACK_MASK_SIDE) -> torch.Tensor:
    """(H, W, 3) colour image -> the (r, g) chromaticity bin (0 .. ``CHROMA_BINS``² - 1) of each compact-mask
    cell's mean colour, on the grid of ``compact_masks``. Chromaticity (a colour's share of each channel)
    does not change with shading or exposure, which scale all three channels alike."""
    colour = torch.as_tensor(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    size = compact_size(*colour.shape[2:], side)
    mean = F.adaptive_avg_pool2d(colour, size)[0] + 1.0  # + 1: black has no chromaticity, call it grey
    share = mean[:2] / mean.sum(0)
    bins = (share * CHROMA_BINS).long().clamp(0, CHROMA_BINS - 1)
    return bins[0] * CHROMA_BINS + bins[1]


def appearances(masks: torch.Tensor, chroma_bins: torch.Tensor) -> np.ndarray:
    """(N, h, w) compact masks -> (N, ``CHROMA_BINS``²) normalised chromaticity histograms of their cells."""
    cells = chroma_bins.flatten()
    one_hot = torch.zeros(len(cells), CHROMA_BINS ** 2).scatter_(1, cells[:, None], 1.0)  # F.one_hot is 5x slower
    counts = masks.flatten(1).float() @ one_hot
    return (counts / counts.sum(1, keepdim=True).clamp(min=1)).numpy()


def appearance_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Hellinger distance of two normalised histograms: 0 for the same, 1 for no colour in common."""
    return float(np.sqrt(max(0.0, 1.0 - float(np.sqrt(a * b).sum()))))


def shift_mask(mask: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """(h, w) mask moved by (dx, dy) cells; what leaves the grid is dropped, what enters is empty."""
    h, w = mask.shape
    out = torch.zeros_like(mask)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0),
                                                                       max(-dx, 0):w - max(dx, 0)]
    return out


def mask_boxes(masks: torch.Tensor, frame_size: tuple[int, int]) -> np.ndarray:
    """Frame-pixel boxes (N, 4) of compact masks: the covered cells' extent, scaled up."""
    n, h, w = masks.shape
    boxes = np.zeros((n, 4))
    if n == 0:
        return boxes
    rows, cols = masks.any(2).numpy(), masks.any(1).numpy()
    sy, sx = frame_size[0] / h, frame_size[1] / w
    for i in range(n):
        ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if len(ys):
            boxes[i] = (xs[0] * sx, ys[0] * sy, (xs[-1] + 1) * sx - 1, (ys[-1] + 1) * sy - 1)
    return boxes


def interior_points(masks: torch.Tensor) -> torch.Tensor:
    """(N, 2) cell coordinates (x, y) of each compact mask's most interior cell (the last to survive
    repeated erosion, nearest the mask's centre among those): a prompt there stays on the object when
    it moves a little, and never lands on a concave shape's hole."""
    n = masks.shape[0]
    deepest = np.zeros(masks.shape, bool)
    for i, mask in enumerate(masks.cpu().numpy().astype(np.uint8)):
        # Erosions a cell survives = its chessboard distance to the nearest empty cell (the frame's outside
        # is not empty, as erosion there counts it as mask): one pass instead of an erosion per cell of depth.
        depth = cv2.distanceTransform(mask, cv2.DIST_C, 3)
        deepest[i] = (depth == depth.max()) & (mask > 0)
    h, w = masks.shape[1:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    weight = masks.float().flatten(1)
    count = weight.sum(1).clamp(min=1)
    centre = torch.stack([(weight * xs.flatten()).sum(1) / count, (weight * ys.flatten()).sum(1) / count], 1)
    distance = (xs.flatten()[None] - centre[:, :1]) ** 2 + (ys.flatten()[None] - centre[:, 1:]) ** 2
    distance = torch.where(torch.from_numpy(deepest).flatten(1), distance, torch.full_like(distance, float("inf")))
    index = distance.argmin(1)
    return torch.stack([index % w, index // w], 1).float() if n else torch.zeros(0, 2)


class ObjectTracker:
    def __init__(self, max_distance: float = 0.3, min_iou: float = 0.1, max_age: int = 10) -> None:
        self.max_distance = max_distance
        self.min_iou = min_iou
        self.max_age = max_age
        self.tracks: list[Track] = []
        self.frame_size: tuple[int, int] | None = None
        self._points: np.ndarray | None = None  # this update's mask prompts
        self._roles: list[Role] = []  # this update's mask roles
        self._depth: torch.Tensor | None = None  # this update's compact depth (metres, NaN where invalid)
        self._appearances: np.ndarray | None = None  # this update's masks' chromaticity histograms
        self._predicted: list[torch.Tensor] = []  # each track's predicted mask, as it was before this update
        self._seen: list[Track] = []  # ... and the track as last seen (renewal replaces a track, never edits it)
        self._next_id = 1

    def update(self, masks: torch.Tensor, centroids: list[np.ndarray | None],
               claims: list[list[int]] | None = None, prompts: torch.Tensor | None = None,
               roles: list[Role] | None = None, depth: np.ndarray | None = None,
               image: np.ndarray | None = None) -> list[int]:
        """Ids for this frame's objects (masks (N, H, W) bool; centroid None where depth was invalid).

        ``claims[i]``: the ids of the tracks whose temporal prompt produced mask ``i`` (tracks may share one);
        ``prompts`` (N, 2) the point prompt of each mask, frame pixels (for the next frame's prompts);
        ``roles[i]``: mask ``i``'s role (all WHOLE when not given); ``depth`` the frame's depth (H, W) in
        metres, NaN where invalid: it tells an occluder from a twin, and lets a mask over a track's predicted
        one keep its id beyond the distance gate when it lies on the track's own surface; ``image`` the frame's
        colour image (H, W, 3): a track's object must look as it did (``_cost``).
        """
        n = masks.shape[0]
        frame_size = self.frame_size = tuple(masks.shape[1:])
        compact = compact_masks(masks)
        boxes = mask_boxes(compact, frame_size)
        self._points = prompts.detach().float().cpu().numpy() if prompts is not None else None
        self._roles = list(roles) if roles is not None else [Role.WHOLE] * n
        if depth is not None and tuple(np.shape(depth)) != frame_size:
            raise ValueError(f"depth {np.shape(depth)} is not the masks' size {frame_size}")
        self._depth = compact_depth(depth) if depth is not None else None
        if image is not None and tuple(np.shape(image)[:2]) != frame_size:
            raise ValueError(f"image {np.shape(image)[:2]} is not the masks' size {frame_size}")
        self._appearances = appearances(compact, compact_chroma_bins(image)) if image is not None else None
        self._predicted = [t.predicted_mask(frame_size) for t in self.tracks]  # before any track is renewed
        self._seen = list(self.tracks)
        overlap, inside = self._overlap(compact)
        cost = self._cost(overlap, centroids, compact)
        ids = [0] * n
        matched: set[int] = set()
        index_of = {t.id: j for j, t in enumerate(self.tracks)}
        claimed = [(i, index_of[c]) for i, ids_i in enumerate(claims or []) for c in ids_i if c in index_of]
        claimed_cost = np.array([cost[i, j] if overlap[i, j] >= self.min_iou and self._roles[i] == self.tracks[j].role
                                 and self._same_surface(j, i, compact) and not self._outbid(i, j, cost) else np.inf
                                 for i, j in claimed])
        for k in np.argsort(claimed_cost, kind="stable"):  # the best claimant of a track keeps its id
            i, j = claimed[k]
            if np.isfinite(claimed_cost[k]) and not ids[i] and j not in matched:
                ids[i] = self._renew(j, i, compact, boxes, centroids)
                matched.add(j)
        for flat in np.argsort(cost, axis=None, kind="stable"):
            i, j = divmod(int(flat), max(len(self.tracks), 1))
            if not np.isfinite(cost[i, j]) or ids[i] or j in matched:
                continue
            ids[i] = self._renew(j, i, compact, boxes, centroids)
            matched.add(j)
        ended = self._merge_twins(ids, claims or [[]] * n, matched, inside, cost, compact, boxes, centroids)
        for j, track in enumerate(self.tracks):
            if j not in matched:
                track.age += 1
        self.tracks = [t for j, t in enumerate(self.tracks) if t.age <= self.max_age and j not in ended]
        for i in range(n):
            if not ids[i]:
                ids[i] = self._next_id
                self._next_id += 1
                self.tracks.append(Track(ids[i], centroids[i], compact[i], boxes[i], prompt=self._prompt(i),
                                         role=self._roles[i], was_whole=self._roles[i] == Role.WHOLE,
                                         depth=median_depth(self._depth, compact[i]), appearance=self._appearance(i)))
        return ids

    def prompts(self) -> tuple[torch.Tensor, list[int]]:
        """Point prompts of the live tracks (frame pixels (x, y), float32) and the id of each one's track.

        Per track: the most interior cell of its mask and the prompt that produced that mask (when known),
        both moved by the track's image motion; when the motion is not negligible, the interior cell where
        it was too, since a mask's centre also moves when only its outline changes. A point moved out of
        the frame stays where it was.
        """
        height, width = self.frame_size or (0, 0)
        shape = compact_size(height, width)
        tracks = [t for t in self.tracks if t.mask.shape == shape]  # not those of another camera geometry
        if not tracks:
            return torch.zeros(0, 2), []
        h, w = shape
        interior = (interior_points(torch.stack([t.mask for t in tracks])) + 0.5) * torch.tensor([width / w, height / h])
        points, ids = [], []
        for track, deepest in zip(tracks, interior.numpy()):
            shift = (track.motion if track.motion is not None else np.zeros(2)) * (1 + track.age)
            candidates = [deepest, track.prompt] if track.prompt is not None else [deepest]
            moved = [p + shift for p in candidates]
            moved = [m if 0 <= m[0] < width and 0 <= m[1] < height else p for m, p in zip(moved, candidates)]
            if np.hypot(*shift) >= 1.0:
                moved.append(deepest)
            points += moved
            ids += [track.id] * len(moved)
        return torch.tensor(np.array(points), dtype=torch.float32), ids

    def _merge_twins(self, ids: list[int], claims: list[list[int]], matched: set[int], inside: np.ndarray,
                     cost: np.ndarray, compact: torch.Tensor, boxes: np.ndarray,
                     centroids: list[np.ndarray | None]) -> set[int]:
        """One object, one track: an unmatched track whose predicted mask lies mostly inside a mask that a
        track's own prompt made (a share >= ``TWIN_SHARE``, within the gate) is a twin of that track: two
        masks of one object (a whole and its part, or two near copies) were kept once, and since then
        each one's prompt gives the part, then the whole, and the tracks take turns. Where the depth under the
        predicted mask moved nearer or farther than the track's own by more than ``TWIN_DEPTH_CHANGE`` of it,
        another object covers it there: not a twin. The oldest twin that fits the mask's role
        (``_fits_role``; the oldest of all when none does) keeps the mask and its id; the others end.
        Returns the indices of the tracks that end."""
        ended: set[int] = set()
        index_of = {t.id: j for j, t in enumerate(self.tracks)}
        for i, track_id in enumerate(ids):
            if not track_id or track_id not in claims[i]:
                continue
            j = index_of[track_id]
            twins = [k for k in range(len(self.tracks)) if k not in matched and k not in ended
                     and inside[i, k] >= TWIN_SHARE and np.isfinite(cost[i, k]) and self._nested(j, k)
                     and self._same_surface(k, i, compact)]
            if not twins:
                continue
            oldest = min([j, *twins], key=lambda k: (not self._fits_role(k, i), self.tracks[k].id))
            if oldest != j:
                ids[i] = self._renew(oldest, i, compact, boxes, centroids)
                matched.add(oldest)
            ended.update(k for k in [j, *twins] if k != oldest)
        return ended

    def _outbid(self, i: int, j: int, cost: np.ndarray) -> bool:
        """Whether a track seen in the last frame fits mask ``i`` better than track ``j``, which was not: an
        unseen track's prompt is a guess at where its object went, and a visible object that moved there is
        its own track's."""
        if not self.tracks[j].age:
            return False
        return any(k != j and not track.age and track.role == self._roles[i] and cost[i, k] < cost[i, j]
                   for k, track in enumerate(self.tracks))

    def _fits_role(self, k: int, i: int) -> bool:
        """Whether track ``k`` fits mask ``i``'s role: it had that role, or the mask is a whole and the track
        once was one (an object's mask shrinks to a part for a frame or two)."""
        track = self.tracks[k]
        return track.role == self._roles[i] or (self._roles[i] == Role.WHOLE and track.was_whole)

    def _nested(self, j: int, k: int) -> bool:
        """Whether tracks ``j`` and ``k`` were last seen in the same frame, covering one region: the smaller
        mask lies at least ``TWIN_SHARE`` inside the larger. Twins are a whole and its part, or two near copies,
        kept in one frame; two tracks whose masks lay apart are two objects even when one mask now spans both
        (an under-segmentation, or one moving next to the other: so the masks where they were seen, not where
        they are predicted), and so are two tracks last seen in different frames (one's mask grew over the
        other's object while that object went unseen)."""
        a, b = self._seen[j].mask, self._seen[k].mask
        if a.shape != b.shape or self._seen[j].age != self._seen[k].age:
            return False
        smaller = min(int(a.sum()), int(b.sum()))
        return smaller > 0 and int((a & b).sum()) >= TWIN_SHARE * smaller

    def _same_surface(self, k: int, i: int, compact: torch.Tensor, unknown: bool = True) -> bool:
        """Whether the depth under track ``k``'s predicted mask, inside mask ``i``, is still the track's own
        (``unknown`` when either depth is unknown)."""
        change = self._depth_change(k, i, compact)
        return unknown if change is None else change <= TWIN_DEPTH_CHANGE

    def _depth_change(self, k: int, i: int, compact: torch.Tensor) -> float | None:
        """How much the depth under track ``k``'s predicted mask, inside mask ``i``, differs from the track's
        own (moved at the rate it changed, measured on depth itself: centroids may be in a target frame whose
        z is not depth), as a share of it; None when either is unknown."""
        track = self.tracks[k]
        before = track.depth
        if before is not None and track.depth_rate is not None:
            before += track.depth_rate * (1 + track.age)
        now = median_depth(self._depth, self._predicted[k] & compact[i])
        return None if before is None or now is None else abs(now - before) / max(before, 1e-9)

    def _renew(self, j: int, i: int, compact: torch.Tensor, boxes: np.ndarray,
               centroids: list[np.ndarray | None]) -> int:
        """Track ``j`` seen again as object ``i``: its state becomes the object's, its motion the change."""
        track = self.tracks[j]
        motion = box_motion(track.box, boxes[i]) / (1 + track.age)
        velocity, depth_rate = track.velocity, track.depth_rate
        if centroids[i] is not None and track.centroid is not None:
            velocity = (centroids[i] - track.centroid) / (1 + track.age)
        depth = median_depth(self._depth, compact[i])
        if depth is not None and track.depth is not None:
            depth_rate = (depth - track.depth) / (1 + track.age)
        self.tracks[j] = Track(track.id, centroids[i] if centroids[i] is not None else track.centroid,
                               compact[i], boxes[i], 0, motion, self._prompt(i), velocity, self._roles[i],
                               track.was_whole or self._roles[i] == Role.WHOLE, depth, depth_rate,
                               self._appearance(i) if self._appearances is not None else track.appearance)
        return track.id

    def _prompt(self, i: int) -> np.ndarray | None:
        return None if self._points is None else self._points[i]

    def _appearance(self, i: int) -> np.ndarray | None:
        return None if self._appearances is None else self._appearances[i]

    def _looks_different(self, track: Track, i: int) -> bool:
        """Whether mask ``i`` looks unlike the track's last mask (``APPEARANCE_CHANGE``); False when either
        is unknown."""
        appearance = self._appearance(i)
        return (appearance is not None and track.appearance is not None
                and appearance_distance(track.appearance, appearance) > APPEARANCE_CHANGE)

    def _overlap(self, compact: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(N, tracks) IoU of this frame's compact masks with each track's predicted (shifted) mask or its last
        one, whichever is larger (as distances take the nearer centroid: a motion measured on one change of
        a mask's outline may be wrong), and the share of that mask inside each one; both 0 for tracks of
        another camera geometry."""
        iou, inside = np.zeros((len(compact), len(self.tracks))), np.zeros((len(compact), len(self.tracks)))
        same = [j for j, t in enumerate(self.tracks) if t.mask.shape == compact.shape[1:]]
        if not len(compact) or not same:
            return iou, inside
        current = compact.flatten(1).float()
        for masks in ([self._predicted[j] for j in same], [self._seen[j].mask for j in same]):
            reference = torch.stack(masks).flatten(1).float()
            inter = current @ reference.T
            area = reference.sum(1)
            union = current.sum(1)[:, None] + area[None, :] - inter
            iou[:, same] = np.maximum(iou[:, same], (inter / union.clamp(min=1)).numpy())
            inside[:, same] = np.maximum(inside[:, same], (inter / area.clamp(min=1)).numpy())
        return iou, inside

    def _gate(self, track: Track) -> float:
        """How far from its centroid a track's object may be now: ``max_distance``, plus the track's speed for
        every frame it went unseen (its position was extrapolated that far from a velocity that a mask's
        change of outline can bias, so the prediction is uncertain by as much), twice ``max_distance`` at
        most (a speed measured on a sliver at the frame's border must not let a long-unseen track reach
        across the room). The cost still counts the distance in ``max_distance``: a wider gate admits a
        match, it does not make a far one cheap."""
        speed = float(np.linalg.norm(track.velocity)) if track.velocity is not None else 0.0
        return self.max_distance + min(speed * track.age, self.max_distance)

    def _cost(self, iou: np.ndarray, centroids: list[np.ndarray | None], compact: torch.Tensor) -> np.ndarray:
        """(N, tracks) match cost: within the gate (``_gate``), the mean of distance (to the nearer of the
        predicted and the last centroid) / ``max_distance`` and 1 - IoU (1 - IoU alone without depth);
        beyond the gate, 2 - IoU where the mask covers the track's (IoU >= ``SAME_REGION_IOU``) on the
        track's own surface (a centroid jumps when an object comes into view or a mask's depth changes, its
        region does not); infinite otherwise, and where the mask looks unlike the track (``_looks_different``);
        plus ``ROLE_CHANGE_COST`` when the mask's role is not the track's."""
        n = iou.shape[0]
        cost = np.full((n, len(self.tracks)), np.inf)
        for j, track in enumerate(self.tracks):
            predicted = track.predicted_centroid()
            gate = self._gate(track)
            for i in range(n):
                if self._looks_different(track, i):
                    continue
                if centroids[i] is not None and predicted is not None:
                    distance = float(min(np.linalg.norm(centroids[i] - predicted),
                                         np.linalg.norm(centroids[i] - track.centroid)))
                    if distance <= gate:
                        cost[i, j] = (distance / max(self.max_distance, 1e-9) + 1.0 - iou[i, j]) / 2
                    elif iou[i, j] >= SAME_REGION_IOU and self._same_surface(j, i, compact, unknown=False):
                        cost[i, j] = 2.0 - iou[i, j]
                elif iou[i, j] >= self.min_iou:
                    cost[i, j] = 1.0 - iou[i, j]
                if self._roles[i] != track.role:
                    cost[i, j] += ROLE_CHANGE_COST
        return cost


def box_motion(before: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Image motion (x, y) from one box to the next: per axis, the move of the edge that moved least, 0 when
    the two edges moved opposite ways. An occluder or the frame's border clips one edge of a mask while the
    other moves with the object, and a mask that grows from a part to the whole moves its edges apart: the
    centre moves in both cases, the object need not."""
    low, high = now[:2] - before[:2], now[2:] - before[2:]
    same_way = np.sign(low) == np.sign(high)
    return np.where(same_way, np.where(np.abs(low) <= np.abs(high), low, high), 0.0)
