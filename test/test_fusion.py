import numpy as np
import pytest
import torch

from sam_ros.camera import PinholeCamera, align_depth_to_colour
from sam_ros.scene.fusion import depth_to_metres, estimate_objects, fuse_masks, object_points
from sam_ros.synthetic import SceneObject, SceneSpec, add_depth_noise, render
from sam_ros.synthetic.render import pitch_rotation
from sam_ros.tracking import ObjectTracker


def camera_of(scene, frame="camera_color_optical_frame"):
    i = scene.intrinsics
    return PinholeCamera(i.width, i.height, i.K, frame_id=frame)


@pytest.fixture(scope="module")
def scene():
    """A box turned by a known yaw, a sphere and a cylinder standing on the floor."""
    height = 1.0
    objects = (SceneObject(1, "box", (-0.4, height - 0.15, 2.0), (0.5, 0.3, 0.25), yaw=0.4),
               SceneObject(2, "sphere", (0.3, height - 0.15, 1.6), (0.3, 0.3, 0.3), texture="coffee"),
               SceneObject(3, "cylinder", (0.6, height - 0.25, 2.6), (0.3, 0.5, 0.3), texture="rocket"))
    return render(SceneSpec(objects, camera_height=height, camera_pitch=0.3))


def test_depth_units():
    mm = np.array([[0, 1500], [20000, 65535]], np.uint16)
    assert np.allclose(depth_to_metres(mm, 0.001, 0.1, 10.0), [[np.nan, 1.5], [np.nan, np.nan]], equal_nan=True)
    metres = np.array([[np.nan, 1.5], [np.inf, -1.0]], np.float32)
    assert np.allclose(depth_to_metres(metres), [[np.nan, 1.5], [np.nan, np.nan]], equal_nan=True)
    with pytest.raises(ValueError, match="uint16"):
        depth_to_metres(np.zeros((2, 2), np.int8))
    with pytest.raises(ValueError, match="HxW"):
        depth_to_metres(np.zeros((2, 2, 3), np.uint16))


def test_centroids_match_the_visible_surface_with_noisy_depth(scene):
    rng = np.random.default_rng(0)
    masks, ids = scene.masks()
    camera = camera_of(scene)
    truth = fuse_masks(masks, depth_to_metres(scene.depth), camera, erosion_px=0, mad_gate=1e9)
    noisy_mm = depth_to_metres(scene_to_mm(add_depth_noise(scene.depth, rng)), 0.001)
    estimates = fuse_masks(masks, noisy_mm, camera)
    errors = [np.linalg.norm(e.centroid - t.centroid) for e, t in zip(estimates, truth) if t.valid]
    assert len(errors) >= 2 and np.median(errors) < 0.01
    for estimate in estimates:
        assert estimate.valid and np.isfinite(estimate.centroid).all() and 0.5 < estimate.depth_coverage <= 1.0


def scene_to_mm(depth_m):
    from sam_ros.synthetic import to_16uc1_mm

    return to_16uc1_mm(depth_m)


def test_box_yaw_in_the_level_frame(scene):
    masks, ids = scene.masks()
    level = np.eye(4)
    level[:3, :3] = pitch_rotation(scene.spec.camera_pitch)
    estimates = fuse_masks(masks, depth_to_metres(scene.depth), camera_of(scene), transform=level)
    truth = {o.id: o for o in scene.objects}
    checked = 0
    for estimate, object_id in zip(estimates, ids):
        if truth[object_id].shape != "box":
            continue
        error = (estimate.obb_yaw + truth[object_id].yaw) % (np.pi / 2)
        assert min(error, np.pi / 2 - error) < 0.25
        checked += 1
    assert checked >= 1


def inside_box(points, truth, margin):
    """Whether each (P, 3) camera-frame point lies within ``margin`` metres of the object's own box."""
    local = (points - truth.center) @ truth.rotation  # camera frame -> the object's axes
    return (np.abs(local) <= truth.size / 2 + margin).all(axis=1)


def test_object_points_lie_on_their_objects_and_only_valid_ones_are_kept(scene):
    masks, ids = scene.masks()
    depth = depth_to_metres(scene.depth)
    ys, xs = np.nonzero(masks[0])
    depth[ys[10:], xs[10:]] = np.nan  # the first object keeps 10 points of depth: too few, its estimate is invalid
    points = object_points(masks, depth, camera_of(scene))
    estimates = estimate_objects(points)
    assert [e.valid for e in estimates] == [False] + [True] * (len(ids) - 1) and len(ids) >= 3
    assert 0 < int(points.counts[0]) < 30
    cloud = points.select(points.valid(30))
    index, xyz = cloud.index.numpy(), cloud.points.numpy()
    assert sorted(set(index.tolist())) == list(range(1, len(ids)))
    truth = {o.id: o for o in scene.objects}
    for i, estimate in enumerate(estimates[1:], start=1):
        mine = xyz[index == i]
        assert len(mine) == estimate.point_count > 100
        assert np.allclose(mine.mean(0), estimate.centroid)
        assert inside_box(mine, truth[ids[i]], margin=0.01).all(), f"points of object {ids[i]} off its box"
        others = [inside_box(mine, truth[j], margin=0.0).mean() for j in ids if j != ids[i]]
        assert max(others) < 0.05, f"points of object {ids[i]} labelled as another object"
    with pytest.raises(ValueError, match="one flag per mask"):
        points.select(torch.ones(len(ids) + 1, dtype=torch.bool))


def test_object_points_in_the_target_frame(scene):
    masks, _ = scene.masks()
    camera_to_level = np.eye(4)
    camera_to_level[:3, :3], camera_to_level[:3, 3] = pitch_rotation(scene.spec.camera_pitch), (0.1, -1.0, 0.2)
    in_camera = object_points(masks, depth_to_metres(scene.depth), camera_of(scene))
    in_level = object_points(masks, depth_to_metres(scene.depth), camera_of(scene), transform=camera_to_level)
    assert torch.equal(in_level.index, in_camera.index) and len(in_level.index) > 1000
    expected = in_camera.points.numpy() @ camera_to_level[:3, :3].T + camera_to_level[:3, 3]
    assert np.allclose(in_level.points.numpy(), expected, atol=1e-9)
    assert not np.allclose(in_level.points.numpy(), in_camera.points.numpy(), atol=0.05)


@pytest.mark.parametrize("depth", [np.zeros((480, 640), np.float32), np.full((480, 640), np.nan, np.float32)])
def test_no_depth_gives_flagged_objects_not_fake_positions(scene, depth):
    masks, _ = scene.masks()
    for estimate in fuse_masks(masks, depth_to_metres(depth), camera_of(scene)):
        assert not estimate.valid and "too little valid depth" in estimate.reason
        assert np.all(estimate.centroid == 0) and np.all(np.isfinite(estimate.aabb_size))


def test_mismatched_inputs_are_clear_errors(scene):
    masks, _ = scene.masks()
    with pytest.raises(ValueError, match="align depth"):
        fuse_masks(masks, np.zeros((10, 10), np.float32), camera_of(scene))
    with pytest.raises(ValueError, match="K are invalid"):
        PinholeCamera(640, 480, np.zeros((3, 3)))
    assert fuse_masks(np.zeros((0, 480, 640), bool), depth_to_metres(scene.depth), camera_of(scene)) == []


def test_undistortion_inverts_distortion():
    camera = PinholeCamera(64, 48, np.array([[50, 0, 32], [0, 50, 24], [0, 0, 1.0]]),
                           np.array([-0.2, 0.05, 0.001, -0.002, 0.0]))
    rays = camera.rays()
    x, y = camera.distort(rays[..., 0].astype(np.float64), rays[..., 1].astype(np.float64))
    v, u = np.mgrid[0:48, 0:64]
    assert np.allclose(x * 50 + 32, u, atol=1e-3) and np.allclose(y * 50 + 24, v, atol=1e-3)


def test_depth_alignment_between_resolutions_of_one_frame():
    colour = PinholeCamera(64, 48, np.array([[50, 0, 31.5], [0, 50, 23.5], [0, 0, 1.0]]), frame_id="cam")
    depth_cam = PinholeCamera(32, 24, np.array([[25, 0, 15.5], [0, 25, 11.5], [0, 0, 1.0]]), frame_id="cam")
    depth = np.arange(32 * 24, dtype=np.float32).reshape(24, 32)
    aligned = align_depth_to_colour(depth, depth_cam, colour)
    assert aligned.shape == (48, 64) and aligned[10, 20] == depth[5, 10]
    with pytest.raises(ValueError, match="differs from colour frame"):
        align_depth_to_colour(depth, PinholeCamera(32, 24, depth_cam.K, frame_id="other"), colour)


def test_tracker_keeps_ids_and_drops_old_tracks():
    tracker = ObjectTracker(max_distance=0.3, min_iou=0.1, max_age=1)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4], masks[1, 4:] = True, True
    first = tracker.update(masks, [np.array([0.0, 0, 2]), np.array([1.0, 0, 2])])
    second = tracker.update(masks.flip(0), [np.array([1.05, 0, 2]), np.array([0.02, 0, 2])])
    assert second == first[::-1]
    third = tracker.update(masks[:1], [None])  # no depth: matched by mask IoU
    assert third == [first[0]]
    tracker.update(masks[:0], [])
    tracker.update(masks[:0], [])
    assert tracker.update(masks[1:], [np.array([1.0, 0, 2])]) not in ([first[1]],)  # expired: new id


def test_segment_quantiles_match_a_plain_loop():
    from sam_ros.scene.fusion import segment_quantiles

    rng = np.random.default_rng(3)
    counts = [0, 1, 2, 7, 500, 3]  # empty, single and tiny segments too
    index = np.repeat(np.arange(len(counts)), counts)
    values = rng.normal(2.0, 3.0, index.size)
    qs = [0.01, 0.5, 0.99]
    got = segment_quantiles(index, values, len(counts), qs)
    for i, count in enumerate(counts):
        ranked = np.sort(values[index == i])
        for k, q in enumerate(qs):  # nearest rank, rounded towards the median
            rank = int(np.floor((count - 1) * q)) if q <= 0.5 else count - 1 - int(np.floor((count - 1) * (1 - q)))
            expected = ranked[rank] if count else 0.0
            assert got[i, k] == pytest.approx(expected, abs=1e-12)


def test_min_area_yaw_matches_a_brute_force_search():
    from sam_ros.scene.fusion import _min_area_yaw

    rng = np.random.default_rng(4)
    yaws = np.radians([0.0, 12.0, 37.5, 61.0, 89.0])
    index, a, b = [], [], []
    for i, yaw in enumerate(yaws):  # filled rectangles 0.6 x 0.2 m, turned by yaw
        local = rng.uniform(-1, 1, (300, 2)) * [0.3, 0.1]
        c, s = np.cos(yaw), np.sin(yaw)
        index.append(np.full(300, i))
        a.append(local[:, 0] * c - local[:, 1] * s)
        b.append(local[:, 0] * s + local[:, 1] * c)
    index, a, b = np.concatenate(index), np.concatenate(a), np.concatenate(b)
    found = _min_area_yaw(index, a, b, len(yaws))
    angles = np.radians(np.arange(0, 90, 0.05))
    for i in range(len(yaws)):
        pa, pb = a[index == i], b[index == i]
        major = pa[:, None] * np.cos(angles) + pb[:, None] * np.sin(angles)
        minor = -pa[:, None] * np.sin(angles) + pb[:, None] * np.cos(angles)
        area = np.ptp(major, 0) * np.ptp(minor, 0)
        best = angles[area.argmin()]
        gap = abs((found[i] - best + np.pi / 4) % (np.pi / 2) - np.pi / 4)
        assert np.degrees(gap) < 0.2
        assert 0 <= found[i] < np.pi / 2
