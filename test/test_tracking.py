import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_cdt

from sam_ros.tracking import (CHROMA_BINS, TRACK_MASK_SIDE, ObjectTracker, Role, appearance_distance, appearances,
                              compact_chroma_bins, compact_depth, compact_masks, interior_points)


def rectangle(h, w, x0, y0, x1, y1):
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def iou(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return (a & b).sum() / max((a | b).sum(), 1)


def test_compact_masks_are_small_host_tensors_whose_iou_matches_full_resolution():
    rng = np.random.default_rng(0)
    masks = []
    for _ in range(12):
        x0, y0 = rng.integers(0, 400), rng.integers(0, 300)
        masks.append(rectangle(480, 640, x0, y0, x0 + rng.integers(40, 240), y0 + rng.integers(40, 180)))
    masks = torch.stack(masks)
    compact = compact_masks(masks)
    assert compact.device.type == "cpu" and compact.dtype == torch.bool
    assert max(compact.shape[1:]) == TRACK_MASK_SIDE and compact.shape[1:] == (96, 128)
    for i in range(0, 12, 2):
        full = iou(masks[i], masks[i + 1])
        assert abs(iou(compact[i], compact[i + 1]) - full) < 0.05


def test_compact_depth_is_the_mean_valid_depth_of_each_cell():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 4.0, (480, 640)).astype(np.float32)
    depth[rng.random((480, 640)) < 0.3] = np.nan
    depth[:5, :5] = np.nan  # one cell with no valid pixel
    compact = compact_depth(depth).numpy()
    assert compact.shape == (96, 128) and np.isnan(compact[0, 0])
    cells = depth.reshape(96, 5, 128, 5).transpose(0, 2, 1, 3).reshape(96, 128, 25)
    valid = np.isfinite(cells)
    expected = np.where(valid, cells, 0).sum(2) / np.maximum(valid.sum(2), 1)
    np.testing.assert_allclose(compact[1:, 1:], expected[1:, 1:], rtol=1e-5)


def test_appearances_are_the_chromaticity_histograms_of_the_masks_cells():
    """Against a plain loop over 5x5-pixel cells: each cell's mean colour binned by its red and green shares."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    masks = torch.stack([rectangle(480, 640, 100, 50, 300, 200), rectangle(480, 640, 0, 0, 640, 480)])
    compact = compact_masks(masks)
    histograms = appearances(compact, compact_chroma_bins(image))
    expected = np.zeros((2, CHROMA_BINS ** 2))
    for y in range(96):
        for x in range(128):
            mean = image[5 * y:5 * y + 5, 5 * x:5 * x + 5].reshape(-1, 3).astype(np.float64).mean(0) + 1.0
            r, g = (np.minimum(mean[:2] / mean.sum() * CHROMA_BINS, CHROMA_BINS - 1)).astype(int)
            for k in range(2):
                expected[k, r * CHROMA_BINS + g] += bool(compact[k, y, x])
    np.testing.assert_allclose(histograms, expected / expected.sum(1, keepdims=True), atol=1e-6)
    assert appearance_distance(histograms[0], histograms[0]) == pytest.approx(0.0, abs=1e-6)
    red, blue = np.eye(CHROMA_BINS ** 2)[[CHROMA_BINS * (CHROMA_BINS - 1), 0]]
    assert appearance_distance(red, blue) == pytest.approx(1.0)


def test_a_mask_smaller_than_a_cell_keeps_one_cell():
    tiny = rectangle(480, 640, 101, 201, 103, 203)[None]
    compact = compact_masks(tiny)
    assert compact.sum() == 1
    y, x = torch.nonzero(compact[0])[0].tolist()
    assert (x, y) == (101 * 128 // 640, 201 * 96 // 480)


@pytest.mark.parametrize("seed", range(4))
def test_interior_point_is_the_deepest_cell_nearest_the_centre(seed):
    """Against scipy's chessboard distance transform (the frame's outside counts as mask, as in erosion) and a
    plain search of the deepest cells for the one nearest the mask's centre; masks reach the frame's edge."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((6, 40, 50), bool)
    for mask in masks[:4]:
        for _ in range(3):  # a union of rectangles: concave shapes too
            x0, y0 = rng.integers(0, 45), rng.integers(0, 35)
            mask[y0:y0 + rng.integers(4, 15), x0:x0 + rng.integers(4, 15)] = True
    masks[4, 30:] = True  # a band along the bottom edge
    masks[5] = True  # the whole frame: every cell is deepest
    points = interior_points(torch.from_numpy(masks)).long().tolist()
    for mask, (x, y) in zip(masks, points):
        depth = distance_transform_cdt(np.pad(mask, 1, constant_values=True), metric="chessboard")[1:-1, 1:-1]
        ys, xs = np.nonzero(mask & (depth == depth[mask].max()))
        centre_y, centre_x = np.nonzero(mask)[0].mean(), np.nonzero(mask)[1].mean()
        nearest = min(zip(ys, xs), key=lambda c: ((c[1] - centre_x) ** 2 + (c[0] - centre_y) ** 2, c[0], c[1]))
        assert (y, x) == nearest


def test_claims_keep_ids_within_the_gate_and_the_best_claimant_wins():
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.2, max_age=2)
    a, b = rectangle(120, 160, 10, 10, 50, 50), rectangle(120, 160, 90, 60, 140, 110)
    first = tracker.update(torch.stack([a, b]), [None, None])
    # Two masks claim track first[0]: the one overlapping it more keeps the id, the other is matched normally.
    part = rectangle(120, 160, 10, 10, 25, 25)
    second = tracker.update(torch.stack([part, a, b]), [None, None, None], claims=[[first[0]], [first[0]], []])
    assert second[1] == first[0] and second[2] == first[1] and second[0] not in first
    # A claim outside the gate (no overlap, no depth) is refused: a new id, not the claimed one.
    far = rectangle(120, 160, 60, 80, 80, 100)
    third = tracker.update(torch.stack([far]), [None], claims=[[first[1]]])
    assert third[0] not in first + second


def test_claims_are_checked_in_3d_when_depth_is_valid():
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.2, max_age=2)
    mask = rectangle(120, 160, 10, 10, 50, 50)
    [track] = tracker.update(mask[None], [np.array([0.0, 0.0, 2.0])])
    assert tracker.update(mask[None], [np.array([0.1, 0.0, 2.0])], claims=[[track]]) == [track]
    assert tracker.update(mask[None], [np.array([1.5, 0.0, 2.0])], claims=[[track]]) != [track]


def test_a_mask_over_the_predicted_one_at_the_tracks_depth_keeps_its_id_beyond_the_gate():
    """An object coming into view: its mask grows over the last one and its visible centroid jumps 0.5 m,
    beyond the 0.3 m gate, at the same depth: it keeps its id. Where the depth there changed (another
    object now stands in that region) or is unknown, the jump ends the match."""
    def run(depth_after):
        tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=2)
        sliver, whole = rectangle(120, 160, 0, 40, 30, 80), rectangle(120, 160, 0, 40, 40, 80)
        before = np.full((120, 160), 2.0, np.float32)
        [first] = tracker.update(sliver[None], [np.array([-1.0, 0.0, 2.0])], depth=before)
        after = None if depth_after is None else np.full((120, 160), depth_after, np.float32)
        return first, tracker.update(whole[None], [np.array([-0.5, 0.0, 2.0])], depth=after)[0]

    first, now = run(2.0)
    assert now == first
    first, now = run(1.5)
    assert now != first
    first, now = run(None)
    assert now != first


def test_a_prompt_that_slipped_onto_an_occluder_does_not_claim_it():
    """An object moves behind a nearer one; its track's prompt lands on the occluder and gives the
    occluder's mask, the object's visible rest is found by another prompt. The depth under the track's
    predicted mask is now the occluder's, nearer than the track's own, so the claim is refused: each keeps
    its id (without depth the claim would hand the occluder the hidden object's id)."""
    def run(with_depth):
        tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=5)
        near = rectangle(120, 160, 70, 30, 110, 90)
        far = [rectangle(120, 160, 20 + 15 * k, 40, 60 + 15 * k, 80) for k in range(3)]
        centre_near = np.array([0.15, 0.0, 1.9])
        centre_far = [np.array([-0.2 + 0.08 * k, 0.0, 2.05]) for k in range(3)]
        ids = []
        for k in range(3):
            visible_far = far[k] & ~near
            depth = np.full((120, 160), 4.0, np.float32)
            depth[far[k].numpy()] = 2.05
            depth[near.numpy()] = 1.9
            if k < 2:
                claims = [ids[-1][:1], ids[-1][1:]] if ids else None
                ids.append(tracker.update(torch.stack([visible_far, near]), [centre_far[k], centre_near],
                                          claims=claims, depth=depth if with_depth else None))
            else:  # the far track's prompt gave the occluder's mask; its rest came from another prompt
                now = tracker.update(torch.stack([near, visible_far]), [centre_near, centre_far[k]],
                                     claims=[[ids[-1][0]], []], depth=depth if with_depth else None)
                ids.append(now[::-1])
        return ids

    ids = run(with_depth=True)
    assert ids[2] == ids[1] == ids[0]
    blind = run(with_depth=False)
    assert blind[2][1] == blind[0][0]  # without depth the occluder takes the hidden object's id


def test_prompts_follow_the_motion_onto_the_object():
    """A 30x30 square moving 12 px right per frame, found by a prompt near its corner: the prompts for
    the next frame (its deepest cell and the prompt that found it, both moved) lie inside it there; the
    deepest cell where it was comes last."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.05, max_age=2)
    position = lambda k: rectangle(240, 320, 40 + 12 * k, 100, 70 + 12 * k, 130)  # noqa: E731
    for k in range(3):
        tracker.update(position(k)[None], [None], prompts=torch.tensor([[44.0 + 12 * k, 104.0]]))
    points, ids = tracker.prompts()
    assert ids == [1, 1, 1] and points.shape == (3, 2) and points.dtype == torch.float32
    for x, y in points[:2].long().tolist():
        assert position(3)[y, x]
    assert abs(points[0, 0].item() - (55 + 12 * 3)) <= 5  # the centre of the square in frame 3
    assert torch.allclose(points[1], torch.tensor([44.0 + 12 * 3, 104.0]), atol=2.5)  # motion from 2.5 px cells
    assert abs(points[2, 0].item() - (55 + 12 * 2)) <= 3  # the centre in frame 2


def test_a_prompt_moved_out_of_the_frame_stays_put():
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.05, max_age=2)
    for k in range(2):
        tracker.update(rectangle(120, 160, 100 + 40 * k, 40, 159, 80)[None], [None])
    points, _ = tracker.prompts()
    assert ((points[:, 0] >= 0) & (points[:, 0] < 160)).all()


def test_tracks_hold_no_frame_tensor():
    tracker = ObjectTracker()
    masks = torch.stack([rectangle(480, 640, 10, 10, 200, 200)])
    tracker.update(masks, [None])
    [track] = tracker.tracks
    assert track.mask.device.type == "cpu" and track.mask.numel() < masks[0].numel() / 20
    assert track.mask.untyped_storage().data_ptr() != masks.untyped_storage().data_ptr()


def test_two_movers_passing_each_other_keep_their_ids_at_constant_velocity():
    """A and B cross at 0.2 m per frame, B 0.1 m behind A: where they pass, each one's last position is
    nearer the other's detection; predicted positions (constant velocity) are not."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=2)
    masks = torch.stack([rectangle(120, 160, 10, 10, 40, 40), rectangle(120, 160, 100, 10, 130, 40)])
    history = []
    for k in range(4):
        a, b = np.array([-0.3 + 0.2 * k, 0.0, 2.0]), np.array([0.3 - 0.2 * k, 0.0, 2.1])
        history.append(tracker.update(masks, [a, b]))
    assert all(ids == history[0] for ids in history)


def test_a_track_whose_velocity_was_wrong_is_still_found_where_it_was_last_seen():
    """One centroid jump (its mask merged with a neighbour's for a frame) gives a still object a 0.25 m/frame
    velocity; missed the next frame, it is predicted 0.5 m away, outside the gate, but it is where it was."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=3)
    mask = rectangle(120, 160, 40, 40, 80, 80)[None]
    still = np.array([0.0, 0.0, 2.0])
    first = tracker.update(mask, [still])
    assert tracker.update(mask, [still + [0.25, 0.0, 0.0]]) == first  # the jump, within the gate
    tracker.update(torch.zeros(0, 120, 160, dtype=torch.bool), [])
    assert np.linalg.norm(tracker.tracks[0].predicted_centroid() - (still + [0.25, 0, 0])) > 0.3
    assert tracker.update(mask, [still + [0.25, 0.0, 0.0]]) == first


def test_a_claim_that_slipped_onto_a_neighbour_is_refused():
    """A track's prompt can land on the object next to it: its mask then claims the track although it does
    not overlap where the track's mask went; the claim is refused even within the 3D gate."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=2)
    own, neighbour = rectangle(120, 160, 10, 10, 40, 40), rectangle(120, 160, 45, 10, 75, 40)
    [track, other] = tracker.update(torch.stack([own, neighbour]), [np.array([0.0, 0.0, 2.0]), np.array([0.2, 0.0, 2.0])])
    ids = tracker.update(torch.stack([neighbour]), [np.array([0.2, 0.0, 2.0])], claims=[[track]])
    assert ids == [other]


def test_a_tracks_mask_is_predicted_where_its_motion_takes_it():
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=2)
    for k in range(2):
        tracker.update(rectangle(480, 640, 100 + 50 * k, 100, 200 + 50 * k, 200)[None], [None])
    [track] = tracker.tracks
    expected = compact_masks(rectangle(480, 640, 200, 100, 300, 200)[None])[0]
    assert iou(track.predicted_mask((480, 640)), expected) > 0.9


def test_twin_tracks_of_one_object_merge_into_the_older():
    """Two masks of one object kept in one frame start two tracks; when a later frame keeps one mask of
    it, the older track keeps the object whichever twin's prompt made that mask, and the other ends."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=5)
    box, slightly_larger = rectangle(120, 160, 20, 20, 60, 60), rectangle(120, 160, 20, 20, 62, 62)
    centre = np.array([0.0, 0.0, 2.0])
    [older] = tracker.update(box[None], [centre])
    [_, younger] = tracker.update(torch.stack([box, slightly_larger]), [centre, centre + 0.01], claims=[[older], []])
    assert younger != older
    ids = [tracker.update(box[None], [centre], claims=[[younger]])[0] for _ in range(3)]
    assert ids == [older] * 3 and [t.id for t in tracker.tracks] == [older]


def test_two_objects_one_mask_spanned_for_a_frame_keep_their_ids():
    """Two objects side by side, each with its track; for one frame the first one's prompt gives a mask
    spanning both (under-segmentation, same depth). Their masks lay apart, so the second track is no twin
    of the first: it waits and gets its object back when the two are segmented apart again."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=5)
    left, right = rectangle(120, 160, 20, 40, 60, 80), rectangle(120, 160, 62, 40, 102, 80)
    centres = [np.array([-0.1, 0.0, 2.0]), np.array([0.1, 0.0, 2.0])]
    depth = np.full((120, 160), 2.0, np.float32)
    first = tracker.update(torch.stack([left, right]), centres, depth=depth)
    again = tracker.update(torch.stack([left, right]), centres, claims=[[first[0]], [first[1]]], depth=depth)
    [spanning] = tracker.update((left | right)[None], [np.array([0.0, 0.0, 2.0])], claims=[[first[0]]], depth=depth)
    apart = tracker.update(torch.stack([left, right]), centres, claims=[[first[0]], [first[1]]], depth=depth)
    assert again == first and spanning == first[0]
    assert apart == first


def test_an_object_passing_in_front_of_another_is_no_twin_of_it():
    """A mover passes in front of a still object and hides it; in the last frame the still object is seen,
    the mover's mask spans both (they touch at one depth edge), so the two were seen nested, as twins are.
    The mover's next mask, made by its own prompt, covers the hidden track's predicted mask as a twin's
    would, but nearer the camera: the mover keeps its id, the hidden track waits, and the still object gets
    its id back when it reappears. Without depth the older (hidden) track takes the mover's mask."""
    def depth_of(*objects):
        depth = np.full((120, 160), 3.0, np.float32)
        for mask, z in objects:
            depth[mask.numpy()] = z
        return depth

    def run(with_depth):
        """{'still': id, 'mover': id} per frame (no 'still' while it is hidden)."""
        tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=5)
        still, still_centre = rectangle(120, 160, 60, 40, 90, 70), np.array([0.0, 0.0, 1.9])
        frames = []
        for k in range(6):
            mover, mover_centre = rectangle(120, 160, 10 + 20 * k, 35, 50 + 20 * k, 75), np.array([-0.3 + 0.08 * k, 0, 1.7])
            seen = {"still": (still & ~mover, still_centre)} if k not in (2, 3) else {}  # hidden behind the mover
            seen["mover"] = (mover | still, mover_centre) if k == 1 else (mover, mover_centre)
            claims = [[frames[-1][name]] if frames and frames[-1].get(name) else [] for name in seen]
            depth = depth_of((still, 1.9), (mover, 1.7)) if with_depth else None
            ids = tracker.update(torch.stack([m for m, _ in seen.values()]), [c for _, c in seen.values()],
                                 claims=claims, depth=depth)
            frames.append(dict(zip(seen, ids)))
        return frames

    frames = run(with_depth=True)
    assert [f["mover"] for f in frames] == [frames[0]["mover"]] * 6
    assert frames[4]["still"] == frames[5]["still"] == frames[0]["still"] != frames[0]["mover"]
    blind = run(with_depth=False)
    assert blind[2]["mover"] == blind[0]["still"]


def test_a_track_whose_mask_grew_over_an_unseen_object_is_no_twin_of_it():
    """Two objects side by side at one depth, each with its track. For a frame one mask spans both (made by
    the left one's prompt) and the right one is not seen on its own; the next frame the right one's prompt
    gives its own mask, over which the left track's predicted (spanning) mask now mostly lies, and the left
    object is missed. The two tracks were never seen nested in one frame, so the left one is no twin: it
    waits and gets its object back. (Judged by the last masks alone, the right one's lies inside the
    spanning one, and the left track would end.)"""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=5)
    left, right = rectangle(120, 160, 30, 40, 60, 80), rectangle(120, 160, 62, 40, 110, 80)
    centres = [np.array([-0.1, 0.0, 2.0]), np.array([0.1, 0.0, 2.0])]
    depth = np.full((120, 160), 2.0, np.float32)
    first = tracker.update(torch.stack([left, right]), centres, depth=depth)
    [spanning] = tracker.update((left | right)[None], [np.array([0.03, 0.0, 2.0])], claims=[[first[0]]], depth=depth)
    [alone] = tracker.update(right[None], [centres[1]], claims=[[first[1]]], depth=depth)
    back = tracker.update(torch.stack([left, right]), centres, claims=[[first[0]], [first[1]]], depth=depth)
    assert spanning == first[0] and alone == first[1]
    assert back == first


def test_a_mask_over_the_tracks_region_wins_over_a_nearer_centroid():
    """An object's mask splits into a top and a body, both judged whole; the top's centroid lies nearer the
    track's, the body covers most of the track's mask. Within the gate the cost weighs both, so the body
    (what the object mostly is) keeps the id; by distance alone the top would take it and the body would
    start a new track."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=5)
    whole, top = rectangle(120, 160, 40, 20, 80, 80), rectangle(120, 160, 40, 20, 80, 38)
    body = rectangle(120, 160, 40, 40, 80, 80)
    [track] = tracker.update(whole[None], [np.array([0.0, 0.0, 2.0])], roles=[Role.WHOLE])
    ids = tracker.update(torch.stack([top, body]), [np.array([0.0, -0.1, 2.0]), np.array([0.0, 0.12, 2.0])],
                         roles=[Role.WHOLE, Role.WHOLE])
    assert ids[1] == track and ids[0] != track


def test_a_whole_object_keeps_its_id_when_its_part_fits_the_track_better():
    """Frame 1 keeps one mask of an object; frame 2 keeps the whole and a part of it, the part nearer the
    track and made by the track's own prompt. The whole (what ~/objects publishes) keeps the id; the
    part gets a new one. Without roles the part would take it (the claim and the nearer centroid)."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=2)
    whole, part = rectangle(120, 160, 20, 20, 80, 80), rectangle(120, 160, 20, 20, 60, 60)
    centre = np.array([0.0, 0.0, 2.0])
    [track] = tracker.update(whole[None], [centre], roles=[Role.WHOLE])
    ids = tracker.update(torch.stack([part, whole]), [centre, centre + 0.05], claims=[[track], []],
                         roles=[Role.PART, Role.WHOLE])
    assert ids[1] == track and ids[0] != track
    # The same frame without roles: the claimant (the part) keeps the track.
    unaware = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=2)
    [track] = unaware.update(whole[None], [centre])
    assert unaware.update(torch.stack([part, whole]), [centre, centre + 0.05], claims=[[track], []])[0] == track
    # A part alone next frame continues the part's track, not the whole's.
    assert tracker.update(part[None], [centre], roles=[Role.PART]) == [ids[0]]


def test_a_change_of_camera_geometry_starts_new_tracks_without_error():
    """A 4:3 stream switched to 16:9 (another driver profile): its masks cannot be compared with the old
    tracks' (other compact shapes), so they start new tracks, and the old ones age out as usual."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=2)
    [old] = tracker.update(rectangle(480, 640, 100, 100, 200, 200)[None], [None])
    wide = rectangle(360, 640, 100, 100, 200, 200)[None]
    [new] = tracker.update(wide, [None])
    assert new != old
    assert tracker.update(wide, [None]) == [new]


def test_a_still_object_an_occluder_clips_has_no_motion():
    """An occluder covers most of a still object's right side: its mask's centre moves left, its left edge
    does not. The track's motion is that of the edge that moved least (none), so its next prompts stay on
    what is left of the object instead of following the centre off it."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=2)
    whole, clipped = rectangle(240, 320, 100, 100, 180, 160), rectangle(240, 320, 100, 100, 125, 160)
    tracker.update(whole[None], [None])
    tracker.update(clipped[None], [None])
    [track] = tracker.tracks
    assert np.allclose(track.motion, 0.0)
    points, _ = tracker.prompts()
    for x, y in points.long().tolist():
        assert clipped[y, x]


def test_the_gate_of_an_unseen_mover_widens_with_its_speed():
    """A mover measured at 0.1 m/frame and unseen for a frame turns up 0.35 m from where that speed predicts
    (it was faster): within ``max_distance`` + speed x frames unseen, it keeps its id. A still track's gate
    does not widen: an object 0.35 m from where one was last seen is a new one. Masks lie apart, so only
    the 3D gate can match them."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=3)
    at = lambda x: rectangle(120, 160, x, 40, x + 20, 60)[None]  # noqa: E731
    none = torch.zeros(0, 120, 160, dtype=torch.bool)
    [mover] = tracker.update(at(10), [np.array([0.0, 0.0, 2.0])])
    assert tracker.update(at(30), [np.array([0.1, 0.0, 2.0])]) == [mover]
    tracker.update(none, [])
    assert tracker.update(at(100), [np.array([0.65, 0.0, 2.0])]) == [mover]  # predicted at 0.3

    still = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=3)
    [first] = still.update(at(10), [np.array([0.0, 0.0, 2.0])])
    still.update(none, [])
    assert still.update(at(100), [np.array([0.35, 0.0, 2.0])]) != [first]


def test_a_mover_that_stopped_while_unseen_keeps_its_id_without_depth():
    """Without depth, matching is by IoU with the track's mask: a mover that stopped while unseen is where it
    was last seen, not where its motion takes it (as centroids, the nearer of the two counts)."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.05, max_age=2)
    at = lambda x: rectangle(240, 320, x, 100, x + 40, 140)[None]  # noqa: E731
    ids = [tracker.update(at(40 + 36 * k), [None]) for k in range(3)]
    assert ids == [ids[0]] * 3  # IoU 0.05 with the last mask, 1 with the moved one
    tracker.update(torch.zeros(0, 240, 320, dtype=torch.bool), [])
    assert tracker.update(at(112), [None]) == ids[0]


def fast_track_unseen_for_five_frames(still_too: bool):
    """A tracker whose track B was seen moving 0.15 m/frame (last at x = 0.75 m), then unseen for five
    frames, beside (``still_too``) a still track A at the origin seen every frame."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=6)
    still, fast = rectangle(120, 160, 20, 20, 60, 60), rectangle(120, 160, 120, 80, 140, 100)
    depth = np.full((120, 160), 2.0, dtype=np.float32)
    here = np.array([0.0, 0.0, 2.0])
    for x in (0.6, 0.75):
        ids = tracker.update(torch.stack([still, fast]), [here, here + [x, 0.0, 0.0]], depth=depth)
    for _ in range(5):
        tracker.update(still[None] if still_too else torch.zeros(0, 120, 160, dtype=torch.bool),
                       [here] if still_too else [], depth=depth)
    return tracker, ids, still, depth, here


def test_the_gate_of_a_long_unseen_track_widens_to_twice_max_distance_at_most():
    """0.15 m/frame for five frames would widen B's gate to 1.05 m; a mask 0.8 m from where B was seen (and
    1.1 m from A, both unseen), apart from both in the image, is a new object."""
    tracker, ids, _, depth, here = fast_track_unseen_for_five_frames(still_too=False)
    elsewhere = rectangle(120, 160, 70, 20, 100, 50)
    assert tracker.update(elsewhere[None], [here + [0.75, 0.8, 0.0]], depth=depth)[0] not in ids


def test_a_widened_gate_admits_a_far_match_without_making_it_cheap():
    """A's mask lies where it was but its centroid jumped 0.36 m (beyond the gate; a sliver of a nearer
    object pulled it); it is 0.49 m from where B was seen, within B's widened gate. A keeps its mask: the
    cost counts B's distance in ``max_distance``, not in its widened gate."""
    tracker, [kept, _], still, depth, here = fast_track_unseen_for_five_frames(still_too=True)
    assert tracker.update(still[None], [here + [0.3, 0.0, -0.2]], depth=depth) == [kept]


def test_depth_moves_at_its_own_rate_in_a_target_frame():
    """Centroids in a z-up target frame (x forward): an object approaching at 0.15 m/frame keeps z. Where
    its centroid jumps beyond the gate (a biased centroid) while its mask stays, it keeps its id only if its
    depth is predicted from the depth's own change, not from the centroid's z."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=2)
    mask = rectangle(120, 160, 40, 40, 80, 80)[None]
    ids = []
    for k, forward in enumerate((2.0, 1.85, 1.7, 1.55)):
        centroid = np.array([forward, 0.4 if k == 3 else 0.0, 0.5])
        ids.append(tracker.update(mask, [centroid], depth=np.full((120, 160), forward, dtype=np.float32)))
    assert ids == [ids[0]] * 4


def test_of_twins_a_track_that_was_the_whole_first_keeps_it():
    """A track follows an object's whole, then its mask shrinks to a part (two frames), and a younger track
    takes the whole beside it. When one mask of the object is left, a whole made by the younger track's
    prompt, the older keeps the object: it was that object's whole first. (A track that was only ever a
    part still yields the whole to the whole's track.)"""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=5)
    whole, part = rectangle(120, 160, 20, 20, 60, 60), rectangle(120, 160, 20, 20, 50, 50)
    centre = np.array([0.0, 0.0, 2.0])
    [older] = tracker.update(whole[None], [centre], roles=[Role.WHOLE])
    assert tracker.update(part[None], [None], roles=[Role.PART]) == [older]
    [kept, younger] = tracker.update(torch.stack([part, whole]), [None, centre], claims=[[older], []],
                                     roles=[Role.PART, Role.WHOLE])
    assert kept == older and younger != older
    assert tracker.update(whole[None], [centre], claims=[[younger]], roles=[Role.WHOLE]) == [older]
    assert [t.id for t in tracker.tracks] == [older]

    only_part = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=5)
    [part_track] = only_part.update(part[None], [None], roles=[Role.PART])
    [_, whole_track] = only_part.update(torch.stack([part, whole]), [None, centre], claims=[[part_track], []],
                                        roles=[Role.PART, Role.WHOLE])
    assert only_part.update(whole[None], [centre], claims=[[whole_track]], roles=[Role.WHOLE]) == [whole_track]


def test_a_track_takes_only_a_mask_that_looks_as_its_object_did():
    """A red object is hidden for two frames; a blue one comes into view 0.15 m from where it was (within the
    gate): it gets a new id, and when the red object reappears it gets its own back. Shading and exposure
    (all channels scaled alike) do not change what an object looks like. An occluder passing in front of
    an object seen the frame before does not take its id either."""
    def frame(objects):
        image = np.full((120, 160, 3), 128, np.uint8)
        masks = []
        for colour, x in objects:
            mask = rectangle(120, 160, x, 40, x + 30, 80)
            image[mask.numpy()] = colour
            masks.append(mask)
        return torch.stack(masks) if masks else torch.zeros(0, 120, 160, dtype=torch.bool), image

    red, dark_red, blue = (200, 40, 30), (100, 20, 15), (30, 60, 200)
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=5)
    masks, image = frame([(red, 40)])
    [red_id] = tracker.update(masks, [np.array([0.0, 0.0, 2.0])], image=image)
    for _ in range(2):
        masks, image = frame([])
        tracker.update(masks, [], image=image)
    masks, image = frame([(blue, 60)])
    [blue_id] = tracker.update(masks, [np.array([0.15, 0.0, 2.0])], image=image)
    assert blue_id != red_id
    masks, image = frame([(dark_red, 40), (blue, 90)])
    centroids = [np.array([0.0, 0.0, 2.0]), np.array([0.3, 0.0, 2.0])]
    assert tracker.update(masks, centroids, image=image) == [red_id, blue_id]
    # A green occluder's part covers the red object, seen the frame before, 0.1 m from it: not its track.
    masks, image = frame([((40, 200, 60), 45)])
    assert tracker.update(masks, [np.array([0.1, 0.0, 1.8])], image=image) not in ([red_id], [blue_id])


def test_an_unseen_tracks_prompt_does_not_take_a_visible_objects_mask():
    """B went unseen; its prompt, where B was, lands on A, which moved towards it. A was seen the frame
    before and fits the mask better (nearer, more overlap), so the mask is A's, not B's claim."""
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=3)
    a_mask, b_mask, moved = (rectangle(120, 160, x0, 40, x1, 80)[None] for x0, x1 in ((40, 70), (75, 105), (55, 85)))
    a_id, b_id = tracker.update(torch.cat([a_mask, b_mask]), [np.array([0.0, 0.0, 2.0]), np.array([0.25, 0.0, 2.0])])
    assert tracker.update(a_mask, [np.array([0.0, 0.0, 2.0])]) == [a_id]
    assert tracker.update(moved, [np.array([0.1, 0.0, 2.0])], claims=[[b_id]]) == [a_id]
