import hashlib

import numpy as np
import pytest

from sam_ros.synthetic import Intrinsics, SceneObject, SceneSpec, add_depth_noise, render, sample_scene, to_16uc1_mm


def test_sphere_depth_and_mask_are_exact():
    """A sphere straight ahead: its nearest point is at centre - radius, and its mask is a disc."""
    spec = SceneSpec((SceneObject(1, "sphere", (0.0, 0.0, 2.0), (0.5, 0.5, 0.5)),), camera_height=1.0,
                     camera_pitch=0.0)
    scene = render(spec, Intrinsics(101, 101, 100.0, 100.0, 50.0, 50.0))
    assert abs(scene.depth[50, 50] - 1.75) < 1e-6
    assert scene.labels[50, 50] == 1 and scene.surfaces[50, 50] == 0
    # the silhouette of a sphere of radius r at distance d spans atan(r / sqrt(d^2 - r^2)) from the axis
    half_width = 100.0 * 0.25 / np.sqrt(2.0 ** 2 - 0.25 ** 2)
    row = np.flatnonzero(scene.labels[50] == 1)
    assert abs((row.max() - row.min() + 1) / 2 - half_width) <= 1.0
    assert np.allclose(scene.objects[0].center, [0, 0, 2])


def test_floor_and_wall_surround_objects_and_depth_is_consistent():
    rng = np.random.default_rng(5)
    scene = render(sample_scene(rng), Intrinsics.default(320, 240))
    assert scene.rgb.shape == (240, 320, 3) and scene.rgb.dtype == np.uint8
    assert set(np.unique(scene.surfaces)) == {0, 1, 2}
    assert (scene.depth > 0).all()
    masks, ids = scene.masks()
    assert len(ids) >= 2 and masks.sum() == (scene.labels > 0).sum()
    # every visible object pixel is nearer than the wall behind it
    assert scene.depth[scene.labels > 0].max() < scene.spec.wall_distance / np.cos(0.6)


def test_depth_noise_grows_with_distance_and_marks_invalid_pixels():
    rng = np.random.default_rng(0)
    depth = np.full((200, 200), 1.0, np.float32)
    depth[:, 100:] = 3.0
    noisy = add_depth_noise(depth, rng)
    near, far = noisy[:, 10:90], noisy[:, 110:190]
    assert 3 * np.nanstd(near) < np.nanstd(far)
    assert np.isnan(noisy).any() and (noisy == 0).any()
    mm = to_16uc1_mm(noisy)
    assert mm.dtype == np.uint16 and (mm[np.isnan(noisy)] == 0).all()


def test_scenes_are_deterministic_per_seed():
    a = render(sample_scene(np.random.default_rng(7)), Intrinsics.default(64, 48))
    b = render(sample_scene(np.random.default_rng(7)), Intrinsics.default(64, 48))
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.labels, b.labels)


# sha256 of repr(sample_scene(default_rng(seed))) as drawn before the classic small-item option existed:
# the default classic scenes (and so their pixels: the renderer is unchanged) must stay these.
CLASSIC_SPEC_SHA256 = {
    0: "88de9160fbf20971435d0306908ff035bb46705ef9e9830af245554d7676232e",
    5: "0f173b80ceb739487558446915fde3530bac55e76659d97a12c8780c785f3896",
    11: "abfc683702c7e71d1ce186796d6f7a4e424c931fe50877f5481236b8bfa83500",
}


@pytest.mark.parametrize("seed", sorted(CLASSIC_SPEC_SHA256))
def test_default_classic_scenes_are_those_drawn_before_small_items(seed):
    spec = sample_scene(np.random.default_rng(seed))
    assert hashlib.sha256(repr(spec).encode()).hexdigest() == CLASSIC_SPEC_SHA256[seed]


def test_classic_small_items_are_added_to_the_same_scene_with_the_requested_size():
    """Small items cover ~100-1000 px at 640x480 (occlusion included), stand on the floor apart from every
    other footprint, and leave the rest of the seed's scene as it was."""
    areas = []
    for seed in range(6):
        plain = sample_scene(np.random.default_rng(seed))
        spec = sample_scene(np.random.default_rng(seed), n_small=(3, 3))
        small = spec.extra["small"]
        assert spec.objects[:len(plain.objects)] == plain.objects and spec.walls == plain.walls
        assert (spec.camera_height, spec.camera_pitch, spec.light) == (plain.camera_height, plain.camera_pitch,
                                                                       plain.light)
        assert [o.id for o in spec.objects[len(plain.objects):]] == list(small)
        for item in (o for o in spec.objects if o.id in small):
            assert item.center[1] + item.size[1] / 2 == pytest.approx(spec.camera_height)  # on the floor
            for other in spec.objects:
                if other.id != item.id:  # footprint circles apart
                    gap = np.hypot(item.center[0] - other.center[0], item.center[2] - other.center[2])
                    assert gap > 0.5 * (np.hypot(item.size[0], item.size[2]) + np.hypot(other.size[0], other.size[2]))
        scene = render(spec)
        areas += [int((scene.labels == i).sum()) for i in small]
    areas = np.array(areas)
    assert len(areas) >= 15
    assert 100 <= np.median(areas) <= 1000
    assert ((areas >= 100) & (areas <= 1000)).mean() > 0.7 and (areas > 0).all()
