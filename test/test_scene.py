"""The scene stage against ground truth: planes, structure vs objects, refinement, parts, support, boxes."""
import math

import numpy as np
import pytest

from sam_ros.camera import PinholeCamera
from sam_ros.config import SamRosConfig
from sam_ros.masks import part_parents
from sam_ros.scene.boxes import BoxContinuity, TrackBox, box_rotation, nearest_equivalent, rotation_quaternion
from sam_ros.scene.fusion import depth_to_metres
from sam_ros.scene.planes import FLOOR, TABLE, WALL, find_planes
from sam_ros.scene.stage import analyse_scene
from sam_ros.synthetic import SceneObject, SceneSpec, add_depth_noise, render, to_16uc1_mm
from sam_ros.synthetic.render import pitch_rotation

CONFIG = SamRosConfig()
LEVEL_TO_BODY = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # level frame (y down, z forward) -> z up


def camera_of(scene):
    i = scene.intrinsics
    return PinholeCamera(i.width, i.height, i.K)


def to_target(scene, height=None):
    """Optical frame -> a z-up body frame on the floor below the camera."""
    transform = np.eye(4)
    transform[:3, :3] = LEVEL_TO_BODY @ pitch_rotation(scene.spec.camera_pitch)
    transform[2, 3] = scene.spec.camera_height if height is None else height
    return transform


def noisy_depth(scene, seed=0):
    return depth_to_metres(to_16uc1_mm(add_depth_noise(scene.depth, np.random.default_rng(seed))))


def prompts_of(masks):
    """A pixel inside each mask (its pixel nearest the mask's centre of mass)."""
    out = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
        out.append((xs[k], ys[k]))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def with_structure(scene):
    """Ground-truth masks: the objects, then the floor, then the wall."""
    masks, ids = scene.masks()
    return np.concatenate([masks, (scene.surfaces == 1)[None], (scene.surfaces == 2)[None]]), ids


@pytest.fixture(scope="module")
def stacked():
    """A box on a box, a cylinder on a table top, a sphere on the floor, all in front of a wall."""
    h = 1.1
    objects = (SceneObject(1, "box", (-0.5, h - 0.15, 2.2), (0.5, 0.3, 0.4), yaw=0.3),
               SceneObject(2, "box", (-0.5, h - 0.3 - 0.1, 2.2), (0.3, 0.2, 0.25), yaw=0.5, texture="coffee"),
               SceneObject(3, "box", (0.45, h - 0.6, 2.6), (1.0, 0.04, 0.7), texture="hubble"),   # table top
               SceneObject(4, "cylinder", (0.45, h - 0.62 - 0.15, 2.5), (0.16, 0.3, 0.16), texture="rocket"),
               SceneObject(5, "sphere", (0.1, h - 0.12, 1.6), (0.24, 0.24, 0.24), texture="chelsea"))
    return render(SceneSpec(objects, camera_height=h, camera_pitch=0.4, wall_distance=4.0))


def test_planes_of_a_known_plane_with_noise_and_clutter():
    rng = np.random.default_rng(3)
    h, w = 60, 80
    v, u = np.mgrid[0:h, 0:w]
    normal = np.array([0.1, -0.9, -0.3])
    normal /= np.linalg.norm(normal)
    offset = -1.2
    rays = np.stack([(u - 40) / 50.0, (v - 30) / 50.0, np.ones((h, w))], -1)
    with np.errstate(divide="ignore"):
        z = offset / (rays @ normal)  # where each ray meets the plane
    z = np.where(z > 0, z, np.nan)
    z_noisy = z + rng.normal(0, 1, z.shape) * 0.002 * z ** 2
    z_noisy[:20, :30] = rng.uniform(0.5, 3.0, (20, 30))  # clutter in a corner
    points = rays * z_noisy[..., None]
    args = dict(sigma_at_1m=0.002, band_sigmas=3.0, min_band=0.01, min_extent=0.5, max_planes=3,
                min_fraction=0.02, hypotheses=128, seed=0)
    planes, up = find_planes(points, z_noisy, np.zeros(3), None, **args)
    assert planes and planes[0].kind == FLOOR
    assert planes[0].normal @ normal > 0.999 and planes[0].offset == pytest.approx(offset, abs=0.01)
    assert np.allclose(up, planes[0].normal)
    again, _ = find_planes(points, z_noisy, np.zeros(3), None, **args)
    assert np.array_equal(again[0].normal, planes[0].normal)  # seeded: the same frame gives the same planes
    none, up = find_planes(np.full((h, w, 3), np.nan), np.full((h, w), np.nan), np.zeros(3), None, **args)
    assert none == [] and np.allclose(up, [0, -1, 0])


def test_structure_and_objects_in_both_frames(stacked):
    masks, ids = with_structure(stacked)
    depth = noisy_depth(stacked)
    for transform, up in ((None, None), (to_target(stacked), np.array([0.0, 0, 1]))):
        scene = analyse_scene(masks, depth, camera_of(stacked), prompts_of(masks), CONFIG, transform=transform, up=up)
        kinds = {p.kind for p in scene.planes}
        assert {FLOOR, WALL, TABLE} <= kinds
        floor = next(p for p in scene.planes if p.kind == FLOOR)
        if transform is not None:
            assert floor.normal @ up > 0.999 and floor.offset == pytest.approx(0.0, abs=0.02)  # z = 0 on the floor
            table = next(p for p in scene.planes if p.kind == TABLE)
            assert table.center[2] == pytest.approx(1.1 - 0.48, abs=0.02)  # the table top's height
        labels = [(o.kind, o.structure) for o in scene.objects]
        assert labels[-2:] == [("structure", FLOOR), ("structure", WALL)]
        table_index = ids.index(3)
        assert labels[table_index] == ("structure", TABLE)
        assert all(kind == "object" for i, (kind, _) in enumerate(labels[:len(ids)]) if i != table_index)
        for o in scene.objects:
            assert np.isfinite(o.centroid).all() and np.isfinite(o.obb_size).all()


def test_support_relations(stacked):
    masks, ids = with_structure(stacked)
    scene = analyse_scene(masks, noisy_depth(stacked), camera_of(stacked), prompts_of(masks), CONFIG,
                          transform=to_target(stacked), up=np.array([0.0, 0, 1]))
    index = {object_id: i for i, object_id in enumerate(ids)}
    floor_mask, table_mask = len(ids), index[3]
    by_id = {object_id: scene.objects[i] for object_id, i in index.items()}
    assert (by_id[1].support, by_id[1].support_kind) == (floor_mask, FLOOR)
    assert (by_id[2].support, by_id[2].support_kind) == (index[1], "object")   # the small box on the big one
    assert (by_id[4].support, by_id[4].support_kind) == (table_mask, TABLE)    # the cylinder on the table
    assert (by_id[5].support, by_id[5].support_kind) == (floor_mask, FLOOR)


def box_iou(center_a, size_a, center_b, size_b):
    low = np.maximum(center_a - size_a / 2, center_b - size_b / 2)
    high = np.minimum(center_a + size_a / 2, center_b + size_b / 2)
    inter = np.prod(np.clip(high - low, 0, None))
    return inter / (np.prod(size_a) + np.prod(size_b) - inter)


def test_refinement_removes_floor_and_background_a_mask_bleeds_onto(stacked):
    """A mask grown by 12 pixels (onto the floor, the wall behind, a shadow) gives nearly the true box."""
    from scipy import ndimage

    masks, ids = stacked.masks()
    i = ids.index(5)  # the sphere on the floor
    bled = ndimage.binary_dilation(masks[i], iterations=12)
    depth = noisy_depth(stacked)
    transform, up = to_target(stacked), np.array([0.0, 0, 1])
    exact = analyse_scene(masks[i:i + 1], depth_to_metres(stacked.depth), camera_of(stacked), prompts_of(masks[i:i + 1]),
                          CONFIG.replace(depth_jump_ratio=1.0), transform=transform, up=up).objects[0]
    refined = analyse_scene(bled[None], depth, camera_of(stacked), prompts_of(masks[i:i + 1]), CONFIG,
                            transform=transform, up=up).objects[0]
    unrefined = analyse_scene(bled[None], depth, camera_of(stacked), prompts_of(masks[i:i + 1]),
                              CONFIG.replace(max_planes=0, depth_jump_ratio=1.0), transform=transform, up=up).objects[0]
    assert box_iou(refined.aabb_center, refined.aabb_size, exact.aabb_center, exact.aabb_size) > 0.7
    assert box_iou(unrefined.aabb_center, unrefined.aabb_size, exact.aabb_center, exact.aabb_size) < 0.5


def test_part_parents_match_a_plain_loop():
    rng = np.random.default_rng(0)
    masks = np.zeros((12, 20, 20), bool)
    for k in range(12):
        y, x, size = rng.integers(0, 14, 3)
        masks[k, y:y + 3 + size // 2, x:x + 3 + size // 2] = True
    masks[5] = masks[4]                 # an exact duplicate: the later one is the part
    groups = rng.integers(0, 2, 12)
    groups[5] = groups[4]
    parents = part_parents(masks, groups, 0.8)
    for c in range(12):
        best, best_area = -1, np.inf
        for p in range(12):
            area_c, area_p = masks[c].sum(), masks[p].sum()
            larger = area_p > area_c or (area_p == area_c and p < c)
            if p != c and groups[p] == groups[c] and larger and (masks[c] & masks[p]).sum() >= 0.8 * area_c:
                if area_p < best_area:
                    best, best_area = p, area_p
        assert parents[c] == best
    assert parents[5] == 4 and parents[4] != 5


def test_parts_are_not_objects_unless_asked(stacked):
    masks, ids = stacked.masks()
    i = ids.index(1)
    lower_half = masks[i].copy()
    lower_half[: int(np.nonzero(masks[i])[0].mean())] = False
    both = np.stack([masks[i], lower_half])
    depth = noisy_depth(stacked)
    scene = analyse_scene(both, depth, camera_of(stacked), prompts_of(both), CONFIG)
    assert [o.parent for o in scene.objects] == [-1, 0]
    assert scene.objects[0].valid and not scene.objects[1].valid and "part of mask 1" in scene.objects[1].reason
    assert scene.published(fuse_parts=False).tolist() == [True, False]
    fused = analyse_scene(both, depth, camera_of(stacked), prompts_of(both), CONFIG.replace(fuse_parts=True))
    assert fused.objects[1].valid and fused.published(fuse_parts=True).tolist() == [True, True]


def corners(center, rotation, size):
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    return center + (signs * size / 2) @ rotation.T


@pytest.mark.parametrize("frame", ["optical", "target"])
def test_every_box_corner_against_the_object_points(stacked, frame):
    """The box's axes are (major, minor, up) and its size is along exactly those axes: its corners enclose
    the object's points, each face touches them, and z is up."""
    masks, ids = with_structure(stacked)
    transform, up = (None, None) if frame == "optical" else (to_target(stacked), np.array([0.0, 0, 1]))
    scene = analyse_scene(masks, depth_to_metres(stacked.depth), camera_of(stacked), prompts_of(masks), CONFIG,
                          transform=transform, up=up)
    index, points = scene.points.index.numpy(), scene.points.points.numpy()
    checked = 0
    for i, o in enumerate(scene.objects[:len(ids)]):
        if not o.valid or o.kind != "object":
            continue
        rotation = o.obb_rotation
        assert np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-9) and np.linalg.det(rotation) == pytest.approx(1)
        assert np.allclose(rotation[:, 2], scene.up)
        box = corners(o.obb_center, rotation, o.obb_size)
        local_corners = (box - o.obb_center) @ rotation
        local_points = (points[index == i] - o.obb_center) @ rotation
        low, high = local_corners.min(0), local_corners.max(0)
        inside = ((local_points >= low - 0.005) & (local_points <= high + 0.005)).all(1)
        assert inside.mean() > 0.97, f"object {ids[i]}: {inside.mean():.1%} of its points inside its box"
        for axis in range(3):  # tight: every face has points near it
            assert np.percentile(local_points[:, axis], 0.5) - low[axis] < 0.02
            assert high[axis] - np.percentile(local_points[:, axis], 99.5) < 0.02
        assert o.obb_size[0] >= o.obb_size[1] - 1e-9  # x is the major horizontal axis
        checked += 1
    assert checked >= 3


def test_nearest_equivalent_yaw_against_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(200):
        last, yaw = rng.uniform(-4, 4, 2)
        size = rng.uniform(0.1, 1.0, 3)
        new_yaw, new_size = nearest_equivalent(last, yaw, size)
        # the same rectangle: its corners as a set are unchanged
        def footprint(angle, s):
            r = box_rotation(np.array([0.0, 0, 1]), angle)
            return np.sort(np.round(corners(np.zeros(3), r, s)[:, :2], 9), axis=0)
        assert np.allclose(footprint(new_yaw, new_size), footprint(yaw, size), atol=1e-9)
        candidates = [yaw + k * math.pi / 2 for k in range(-8, 9)]
        best = min(abs(math.remainder(c - last, 2 * math.pi)) for c in candidates)
        assert abs(math.remainder(new_yaw - last, 2 * math.pi)) == pytest.approx(best, abs=1e-9)
        assert new_size[2] == size[2]


def test_a_nearly_square_box_never_flips():
    rng = np.random.default_rng(2)
    continuity = BoxContinuity()
    yaws = []
    for _ in range(50):  # sides 0.30 and 0.31: noise swaps which one is "major"
        a, b = 0.30 + rng.normal(0, 0.01), 0.31 + rng.normal(0, 0.01)
        yaw, size = (0.2, np.array([a, b, 0.2])) if a >= b else (0.2 + math.pi / 2, np.array([b, a, 0.2]))
        yaw += rng.normal(0, 0.02)
        box = continuity.update(7, TrackBox(np.zeros(3), np.zeros(3), size, yaw))
        yaws.append(box.yaw)
    steps = np.abs(np.diff(np.unwrap(yaws)))
    assert steps.max() < math.radians(10)


def test_smoothing_averages_noise_and_follows_a_real_move():
    rng = np.random.default_rng(3)
    smoother, raw, smoothed = BoxContinuity(smoothing=0.8, gate=0.1), [], []
    for t in range(60):
        true = np.array([1.0, 0.0, 0.0]) if t < 40 else np.array([1.5, 0.0, 0.0])  # moves 0.5 m at t = 40
        centroid = true + rng.normal(0, 0.01, 3)
        box = smoother.update(3, TrackBox(centroid, centroid.copy(), np.array([0.3, 0.2, 0.1]), 0.1))
        raw.append(centroid)
        smoothed.append(box.centroid)
    raw, smoothed = np.array(raw), np.array(smoothed)
    # a plain exponential average of the same samples (restarted at the move) is what comes out
    expected = raw.copy()
    for t in range(1, 60):
        if t != 40:
            expected[t] = 0.8 * expected[t - 1] + 0.2 * raw[t]
    assert np.allclose(smoothed, expected)
    assert smoothed[10:40].std(0).max() < 0.5 * raw[10:40].std(0).min()
    assert np.allclose(smoothed[40], raw[40])  # beyond the gate: followed at once


def test_quaternion_of_box_rotations():
    for yaw in np.linspace(-3, 3, 13):
        for up in (np.array([0.0, 0, 1]), np.array([0.0, -0.93, -0.37]) / np.linalg.norm([0.0, -0.93, -0.37])):
            rotation = box_rotation(up, yaw)
            x, y, z, w = rotation_quaternion(rotation)
            back = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                             [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                             [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
            assert np.allclose(back, rotation, atol=1e-9)


# --- bad input: a clear reason or a scene without structure, never a crash or NaN -----------------------

def assert_clean(scene):
    for o in scene.objects:
        for value in (o.centroid, o.aabb_center, o.aabb_size, o.obb_center, o.obb_size, o.obb_rotation, o.plane):
            assert np.isfinite(value).all()
        assert o.valid or o.reason


def test_all_nan_depth_and_depth_with_no_plane(stacked):
    masks, _ = with_structure(stacked)
    nan = np.full(stacked.depth.shape, np.nan, np.float32)
    scene = analyse_scene(masks, nan, camera_of(stacked), prompts_of(masks), CONFIG)
    assert scene.planes == [] and not any(o.valid for o in scene.objects)
    assert all("too little valid depth" in o.reason for o in scene.objects)
    assert_clean(scene)
    rng = np.random.default_rng(0)
    speckle = rng.uniform(0.5, 6.0, stacked.depth.shape).astype(np.float32)  # depth of no surface at all
    scene = analyse_scene(masks, speckle, camera_of(stacked), prompts_of(masks), CONFIG)
    assert scene.planes == [] and all(o.kind == "object" for o in scene.objects)
    assert_clean(scene)


def test_no_masks_at_all(stacked):
    scene = analyse_scene(np.zeros((0, *stacked.depth.shape), bool), noisy_depth(stacked), camera_of(stacked),
                          np.zeros((0, 2)), CONFIG)
    assert scene.objects == [] and scene.masks.shape == (0, *stacked.depth.shape) and scene.planes


def test_a_mask_with_no_valid_depth(stacked):
    masks, ids = with_structure(stacked)
    depth = noisy_depth(stacked)
    depth[masks[0]] = np.nan
    scene = analyse_scene(masks, depth, camera_of(stacked), prompts_of(masks), CONFIG)
    assert not scene.objects[0].valid and "too little valid depth" in scene.objects[0].reason
    assert all(o.valid for o in scene.objects[1:len(ids)] if o.parent < 0)
    assert_clean(scene)


def test_camera_looking_straight_down_at_a_table():
    table = SceneObject(1, "box", (0.0, 1.0 + 0.02, 0.0), (1.6, 0.04, 1.2), texture="hubble")
    cup = SceneObject(2, "cylinder", (0.1, 1.0 - 0.06, 0.05), (0.12, 0.12, 0.12), texture="rocket")
    spec = SceneSpec((table, cup), camera_height=1.8, camera_pitch=math.pi / 2, wall_distance=50.0)
    scene_render = render(spec)
    masks, ids = scene_render.masks()
    transform = np.eye(4)
    transform[:3, :3] = LEVEL_TO_BODY @ pitch_rotation(math.pi / 2)
    transform[2, 3] = 1.8
    scene = analyse_scene(masks, noisy_depth(scene_render), camera_of(scene_render), prompts_of(masks), CONFIG,
                          transform=transform, up=np.array([0.0, 0, 1]))
    assert_clean(scene)
    top = scene.planes[0]
    assert top.normal @ [0, 0, 1] > 0.99 and top.offset == pytest.approx(0.8, abs=0.02)  # 1 m below the camera
    by_id = dict(zip(ids, scene.objects))
    assert by_id[1].kind == "structure" and by_id[2].kind == "object" and by_id[2].valid
    assert by_id[2].support == ids.index(1)


def test_a_single_object_filling_the_view():
    box = SceneObject(1, "box", (0.0, 0.0, 0.6), (2.0, 2.0, 0.2), texture="astronaut")
    scene_render = render(SceneSpec((box,), camera_height=1.0, camera_pitch=0.0))
    masks, _ = scene_render.masks()
    assert masks[0].all()
    scene = analyse_scene(masks, noisy_depth(scene_render), camera_of(scene_render), prompts_of(masks), CONFIG)
    assert_clean(scene)
    assert len(scene.objects) == 1 and scene.objects[0].valid  # one big plane, one mask: a wall of a box, or a wall


def test_a_frame_without_masks(stacked):
    """No mask survived the filters: the planes are still found, and there is nothing to fuse."""
    masks = np.zeros((0, *stacked.depth.shape), dtype=bool)
    scene = analyse_scene(masks, noisy_depth(stacked), camera_of(stacked), np.zeros((0, 2)), CONFIG)
    assert scene.objects == [] and len(scene.points) == 0
    assert_clean(scene)


def test_refined_masks_match_a_plain_upsampling():
    from sam_ros.scene.refine import refined_masks

    rng = np.random.default_rng(0)
    masks = rng.random((6, 97, 131)) > 0.3  # odd sizes: the grid's last row and column cover one pixel
    removed = np.zeros((6, 49, 66), bool)
    removed[1, 5:20, 10:30] = rng.random((15, 20)) > 0.5
    removed[3, 48, 65] = True
    removed[4] = rng.random((49, 66)) > 0.7
    plain = np.repeat(np.repeat(removed, 2, axis=1), 2, axis=2)[:, :97, :131]
    assert np.array_equal(refined_masks(masks, removed, 2), masks & ~plain)


@pytest.mark.parametrize("max_size", [0.0, 3.0])
def test_a_mask_across_the_wall_and_the_floor_is_no_object(stacked, max_size):
    """A mask that runs from the floor up the wall (the model merged them) is one plane of neither, so it is
    not structure; its box is room-sized. Over ``max_object_size`` it is flagged not valid, and only then."""
    masks, ids = with_structure(stacked)
    floor, wall = masks[-2], masks[-1]
    rows = np.nonzero(wall.any(1))[0]
    seam = np.zeros_like(floor)
    seam[rows[-1] - 60:rows[-1] + 60] = True  # the wall's lower band and the floor before it
    across = (floor | wall) & seam
    config = CONFIG.replace(max_object_size=max_size)
    scene = analyse_scene(np.concatenate([masks[:len(ids)], across[None]]), noisy_depth(stacked), camera_of(stacked),
                          prompts_of(np.concatenate([masks[:len(ids)], across[None]])), config,
                          transform=to_target(stacked), up=np.array([0.0, 0, 1]))
    merged = scene.objects[-1]
    assert merged.kind == "object" and np.max(merged.obb_size) > 3.0
    assert merged.valid == (max_size == 0.0)
    assert all(o.valid for o in scene.objects[:len(ids)] if o.kind == "object")  # the real objects stay
