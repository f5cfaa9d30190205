"""The rich renderer against independent facts: analytic depths, analytic shadows, resting contact."""
import numpy as np
import pytest

from sam_ros.synthetic import (FLOOR_ID, Intrinsics, Material, Photometric, SceneObject, SceneSpec, Table,
                               apply_photometric, render, sample_photometric, sample_scene)
from sam_ros.synthetic.render import camera_rotation

SMALL = Intrinsics(101, 101, 100.0, 100.0, 50.0, 50.0)


def _rays(intrinsics: Intrinsics) -> np.ndarray:
    v, u = np.mgrid[0:intrinsics.height, 0:intrinsics.width]
    return np.stack([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy, np.ones(u.shape)], -1)


@pytest.mark.parametrize("shape, size, top_ratio, expected", [
    ("ellipsoid", (0.4, 0.6, 0.3), 1.0, 2.0 - 0.15),            # nearest point: centre minus the z semi-axis
    ("frustum", (0.4, 0.5, 0.4), 0.5, 2.0 - (0.1 + 0.2) / 2),   # radius half-way up: mean of 0.1 and 0.2
    ("cone", (0.4, 0.5, 0.4), 0.0, 2.0 - 0.1),
    ("plate", (0.3, 0.3, 0.02), 1.0, 2.0 - 0.01),
])
def test_new_shapes_have_exact_depth_on_the_axis(shape, size, top_ratio, expected):
    spec = SceneSpec((SceneObject(1, shape, (0.0, 0.0, 2.0), size, top_ratio=top_ratio),), camera_height=1.0,
                     camera_pitch=0.0)
    scene = render(spec, SMALL)
    assert scene.labels[50, 50] == 1
    assert abs(scene.depth[50, 50] - expected) < 1e-6


def test_cone_silhouette_narrows_to_its_apex():
    """A cone's half-width at image row v follows the radius at the height that row sees (pitch 0)."""
    spec = SceneSpec((SceneObject(1, "cone", (0.0, 0.0, 3.0), (0.6, 0.8, 0.6), top_ratio=0.0),), camera_pitch=0.0)
    scene = render(spec, SMALL)
    for row in (40, 50, 60):
        y = (row - 50) / 100.0 * 3.0        # level height on the axis plane (the silhouette is ~ there)
        radius = 0.3 * (y + 0.4) / 0.8      # 0 at the apex (y = -0.4), 0.3 at the base
        width = np.count_nonzero(scene.labels[row] == 1)
        assert abs(width / 100.0 * 3.0 / 2 - radius) < 0.05


def test_every_structure_pixel_lies_on_its_plane():
    """Depth of each floor and wall pixel equals the analytic ray-plane distance; table-top pixels lie
    in the slab under their plane (the top face on it, the edges below)."""
    checked, on_top_face = set(), []
    for seed in range(4):
        scene = render(sample_scene(np.random.default_rng(seed), style="rich"), Intrinsics.default(160, 120))
        rays = _rays(scene.intrinsics)
        tables = {t.id: t for t in scene.spec.tables}
        for structure in scene.structures:
            mask = scene.instances == structure.id
            if structure.normal is None or not mask.any():
                continue
            if structure.kind == "table_top":
                below = -(scene.depth[mask] * (rays[mask] @ structure.normal) + structure.offset)
                assert below.min() > -1e-5 and below.max() < tables[structure.id].thickness + 1e-5
                if structure.offset < 0:  # camera below the top: never its upper face
                    assert (below > 1e-5).all()
                else:
                    on_top_face += list(below < 1e-5)
            else:
                expected = -structure.offset / (rays[mask] @ structure.normal)
                assert np.allclose(scene.depth[mask], expected, rtol=1e-6, atol=1e-6), structure
            checked.add(structure.kind)
    assert checked == {"floor", "wall", "table_top"}
    assert np.mean(on_top_face) > 0.5  # seen from above, a table top is mostly its upper face


def test_instances_cover_every_pixel_with_known_ids_and_kinds():
    scene = render(sample_scene(np.random.default_rng(3), style="rich"), Intrinsics.default(160, 120))
    known = {o.id for o in scene.objects} | {s.id for s in scene.structures}
    assert set(np.unique(scene.instances)) <= known
    kinds = {s.id: s.kind for s in scene.structures}
    code = {"floor": 1, "wall": 2, "table_top": 3, "table_leg": 3}
    for value in np.unique(scene.instances):
        expected = code[kinds[value]] if value >= FLOOR_ID else 0
        assert (scene.surfaces[scene.instances == value] == expected).all()
    assert np.array_equal(scene.labels, np.where(scene.instances < FLOOR_ID, scene.instances, 0))
    assert (scene.depth > 0).all() and np.isfinite(scene.depth).all()


def test_every_object_rests_on_its_support():
    """Each object's bottom centre lies on its supporter's top plane, inside the supporter's top."""
    for seed in range(6):
        scene = render(sample_scene(np.random.default_rng(seed), style="rich"), Intrinsics.default(64, 48))
        objects = {o.id: o for o in scene.objects}
        structures = {s.id: s for s in scene.structures}
        for obj in scene.objects:
            bottom = obj.center + obj.rotation @ [0.0, obj.size[1] / 2, 0.0]
            if obj.support in objects:
                sup = objects[obj.support]
                top_centre = sup.center + sup.rotation @ [0.0, -sup.size[1] / 2, 0.0]
                local = sup.rotation.T @ (bottom - top_centre)
                assert abs(local[1]) < 1e-9
                assert abs(local[0]) <= sup.size[0] / 2 and abs(local[2]) <= sup.size[2] / 2
            else:
                sup = structures[obj.support]
                assert sup.kind in ("floor", "table_top")
                assert abs(sup.normal @ bottom + sup.offset) < 1e-9
                if sup.kind == "table_top":
                    local = sup.rotation.T @ (bottom - sup.center)
                    assert abs(local[0]) <= sup.size[0] / 2 and abs(local[2]) <= sup.size[2] / 2


def test_cast_shadow_of_a_sphere_matches_the_analytic_cylinder():
    """A floor point is shadowed exactly when the line from it towards the light passes within r of the centre."""
    light = np.array([0.5, -1.0, 0.3])
    radius, centre = 0.25, np.array([0.1, 1.0 - 0.25, 2.2])
    spec = SceneSpec((SceneObject(1, "sphere", tuple(centre), (0.5, 0.5, 0.5)),), camera_height=1.0,
                     camera_pitch=0.5, light=tuple(light), shadows=True)
    intrinsics = Intrinsics.default(160, 120)
    scene = render(spec, intrinsics)
    floor = scene.surfaces == 1
    points = (_rays(intrinsics) * scene.depth[..., None]) @ camera_rotation(spec).T  # level frame
    unit = light / np.linalg.norm(light)
    rel = centre - points
    miss = np.linalg.norm(rel - (rel @ unit)[..., None] * unit, axis=-1)
    expected = (miss < radius) & (rel @ unit > 0)
    margin = np.abs(miss - radius) > 2e-3  # pixels whose ray grazes the sphere are left out
    assert expected[floor & margin].sum() > 50
    assert np.array_equal(scene.shadowed[floor & margin], expected[floor & margin])
    # the shadow darkens: shaded floor pixels are the ambient share of lit ones (plain floor colour)
    assert scene.rgb[floor & margin & expected].mean() < 0.6 * scene.rgb[floor & margin & ~expected].mean()


def test_vertical_light_shadows_exactly_the_table_footprint():
    table = Table(FLOOR_ID + 10, (0.2, 2.5), (1.0, 0.6), 0.7, yaw=0.4, material=Material("", (0.5, 0.5, 0.5)))
    spec = SceneSpec((), camera_height=1.4, camera_pitch=0.6, tables=(table,), light=(0.0, -1.0, 0.0), shadows=True,
                     floor_material=Material("", (0.8, 0.8, 0.8)))
    intrinsics = Intrinsics.default(160, 120)
    scene = render(spec, intrinsics)
    points = (_rays(intrinsics) * scene.depth[..., None]) @ camera_rotation(spec).T
    dx, dz = points[..., 0] - 0.2, points[..., 2] - 2.5
    c, s = np.cos(0.4), np.sin(0.4)
    local_x, local_z = c * dx - s * dz, s * dx + c * dz  # inverse of the yaw rotation
    inside = (np.abs(local_x) < 0.5) & (np.abs(local_z) < 0.3)
    margin = (np.abs(np.abs(local_x) - 0.5) > 3e-3) & (np.abs(np.abs(local_z) - 0.3) > 3e-3)
    floor = (scene.surfaces == 1) & margin
    assert (floor & inside).sum() > 20
    assert np.array_equal(scene.shadowed[floor], inside[floor])
    assert {s.kind for s in scene.structures} == {"floor", "wall", "table_top", "table_leg"}


def test_rich_scenes_vary_and_are_deterministic():
    specs = [sample_scene(np.random.default_rng(seed), style="rich") for seed in range(20)]
    assert specs[3] == sample_scene(np.random.default_rng(3), style="rich")
    shapes = {o.shape for spec in specs for o in spec.objects}
    assert {"box", "plate", "sphere", "ellipsoid", "cylinder", "frustum", "cone"} <= shapes
    assert any(o.support < FLOOR_ID for spec in specs for o in spec.objects)        # stacked
    assert any(o.support > FLOOR_ID for spec in specs for o in spec.objects)        # on tables
    pitches = np.degrees([spec.camera_pitch for spec in specs])
    assert pitches.min() >= 10 and pitches.max() <= 45 and np.ptp(pitches) > 15
    assert len({o.texture for spec in specs for o in spec.objects}) > 8


def test_small_items_have_the_requested_projected_size():
    """Items drawn as small cover roughly 100-1000 pixels at 640x480, in full scenes (occlusion included)."""
    areas = []
    for seed in range(6):
        spec = sample_scene(np.random.default_rng(seed), style="rich", n_small=(3, 3))
        scene = render(spec)
        areas += [int((scene.labels == i).sum()) for i in spec.extra["small"]]
    areas = np.array(areas)
    assert len(areas) >= 15
    assert 100 <= np.median(areas) <= 1000
    assert ((areas >= 50) & (areas <= 2000)).mean() > 0.7


def test_photometric_defaults_change_nothing_and_effects_are_seeded():
    rgb = render(sample_scene(np.random.default_rng(1), style="rich"), Intrinsics.default(160, 120)).rgb
    assert np.array_equal(apply_photometric(rgb, Photometric(), np.random.default_rng(0)), rgb)
    effects = sample_photometric(np.random.default_rng(4))
    a = apply_photometric(rgb, effects, np.random.default_rng(9))
    b = apply_photometric(rgb, effects, np.random.default_rng(9))
    assert np.array_equal(a, b) and a.shape == rgb.shape and a.dtype == np.uint8


def test_noise_exposure_and_jpeg_do_what_they_say():
    flat = np.full((64, 64, 3), 100, np.uint8)
    noisy = apply_photometric(flat, Photometric(noise_sigma=6.0), np.random.default_rng(0)).astype(float)
    expected_sigma = 6.0 * (0.5 + 0.5 * np.sqrt(100 / 255))
    assert abs(noisy.std() - expected_sigma) < 0.1 * expected_sigma
    brighter = apply_photometric(flat, Photometric(exposure=1.5), np.random.default_rng(0))
    assert (brighter == 150).all()
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)
    low = apply_photometric(texture, Photometric(jpeg_quality=20), rng).astype(float)
    high = apply_photometric(texture, Photometric(jpeg_quality=95), rng).astype(float)
    assert np.abs(low - texture).mean() > np.abs(high - texture).mean() > 0


def test_defocus_keeps_the_focus_plane_sharp_and_blurs_elsewhere():
    rng = np.random.default_rng(2)
    texture = rng.integers(0, 255, (60, 80, 3)).astype(np.uint8)
    depth = np.full((60, 80), 2.0, np.float32)
    depth[:, 40:] = 0.5
    out = apply_photometric(texture, Photometric(defocus_sigma=2.0, focus_distance=2.0), rng, depth).astype(float)
    assert np.array_equal(out[:, :30], texture[:, :30])          # in focus, away from the far side's blur
    assert out[:, 50:].std() < 0.6 * texture[:, 50:].astype(float).std()


@pytest.mark.parametrize("camera_velocity, camera_yaw_rate", [((0.0, 0.0), 0.0), ((0.1, 0.05), 0.08)])
def test_rich_sequence_has_a_leaver_an_enterer_and_static_objects(camera_velocity, camera_yaw_rate):
    """Ids persist; the leaver is seen first and not last, the enterer the reverse; the rest never move
    (in the scene: seen from a moving camera, their camera-frame truth follows the camera's pose)."""
    from sam_ros.synthetic.render import camera_origin
    from sam_ros.synthetic.sequence import render_rich_sequence
    frames = render_rich_sequence(2, 8, intrinsics=Intrinsics.default(160, 120), camera_velocity=camera_velocity,
                                  camera_yaw_rate=camera_yaw_rate)
    roles = frames[0].scene.spec.extra["movers"]
    assert sorted(roles.values()) == ["crosses", "enters", "leaves"]
    visible = {i: [int((f.scene.labels == i).sum()) for f in frames] for i in roles}
    by_role = {role: visible[i] for i, role in roles.items()}
    assert by_role["leaves"][0] > 0 and by_role["leaves"][-1] == 0
    assert by_role["enters"][0] == 0 and by_role["enters"][-1] > 0
    assert all(v > 0 for v in by_role["crosses"])
    ids = [[o.id for o in f.scene.objects] for f in frames]
    assert all(i == ids[0] for i in ids)

    def in_scene(frame, obj):
        return camera_rotation(frame.scene.spec) @ obj.center + camera_origin(frame.scene.spec)
    first, last = frames[0], frames[-1]
    for a, b in zip(first.scene.objects, last.scene.objects):
        assert np.allclose(in_scene(first, a), in_scene(last, b)) == (a.id not in roles)
    moved = not np.allclose(first.scene.objects[0].center, last.scene.objects[0].center)
    assert moved == (camera_yaw_rate != 0.0)


def _inside(shape, size, top_ratio, local):
    """Plain implicit test of points (object axes, centred, y down) against a solid, shrunk by 1%."""
    half = np.asarray(size) / 2 * 0.99
    x, y, z = local.T
    if shape in ("box", "plate"):
        return (np.abs(local) <= half).all(axis=1)
    if shape in ("sphere", "ellipsoid"):
        return ((local / half) ** 2).sum(axis=1) <= 1
    ratio = {"cone": 0.0, "cylinder": 1.0}.get(shape, top_ratio)
    r_bottom = half[0] if ratio <= 1 else half[0] / ratio
    radius = r_bottom * ratio + (r_bottom - r_bottom * ratio) * (y + half[1]) / (2 * half[1])
    return (np.abs(y) <= half[1]) & (x * x + z * z <= radius * radius)


def test_objects_never_interpenetrate_each_other_the_floor_or_tables():
    """Points sampled inside each object (plain implicit tests, not the ray caster) lie in no other solid."""
    from sam_ros.synthetic.geometry import yaw_rotation
    rng = np.random.default_rng(0)
    for seed in range(8):
        spec = sample_scene(np.random.default_rng(seed), style="rich")
        solids = [(o.id, o.shape, np.asarray(o.center), o.size, o.yaw, o.top_ratio) for o in spec.objects]
        for table in spec.tables:
            solids += [(part_id, "box", np.asarray(c), s, table.yaw, 1.0) for part_id, _, c, s in table.parts(spec.camera_height)]
        for obj in spec.objects:
            local = (rng.random((3000, 3)) - 0.5) * obj.size
            local = local[_inside(obj.shape, obj.size, obj.top_ratio, local)]
            points = local @ yaw_rotation(obj.yaw).T + obj.center
            assert (points[:, 1] <= spec.camera_height).all()  # never below the floor
            for other_id, shape, center, size, yaw, ratio in solids:
                if other_id != obj.id:
                    other_local = (points - center) @ yaw_rotation(yaw)
                    assert not _inside(shape, size, ratio, other_local).any(), (seed, obj.id, other_id)


def test_a_moved_camera_sees_what_a_camera_at_the_origin_sees_in_the_moved_scene():
    """Camera pose (x, z, yaw) against the same scene rigidly moved into the camera's own frame."""
    from dataclasses import replace

    from sam_ros.synthetic import Wall
    from sam_ros.synthetic.geometry import yaw_rotation
    spec = sample_scene(np.random.default_rng(1), style="rich")  # with two tables
    assert len(spec.tables) == 2
    position, yaw = np.array([0.3, 0.0, -0.2]), 0.25
    moved_camera = replace(spec, camera_position=(0.3, -0.2), camera_yaw=yaw)
    to_camera_level = yaw_rotation(yaw).T

    def place(center):
        return tuple(float(c) for c in to_camera_level @ (np.asarray(center) - position))

    def place_xz(xz):
        x, _, z = place((xz[0], 0.0, xz[1]))
        return (x, z)
    same = replace(spec, objects=tuple(replace(o, center=place(o.center), yaw=o.yaw - yaw) for o in spec.objects),
                   tables=tuple(replace(t, center=place_xz(t.center), yaw=t.yaw - yaw) for t in spec.tables),
                   walls=tuple(Wall(w.id, w.angle - yaw, float(w.distance - position @ w.outward), w.material)
                               for w in spec.walls))
    intrinsics = Intrinsics.default(160, 120)
    a, b = render(moved_camera, intrinsics), render(same, intrinsics)
    assert (a.instances != b.instances).mean() < 0.002
    agree = a.instances == b.instances
    assert np.allclose(a.depth[agree], b.depth[agree], atol=1e-5)
    for x, y in zip(a.objects, b.objects):
        assert np.allclose(x.center, y.center) and np.allclose(x.rotation, y.rotation) and np.isclose(x.yaw, y.yaw)
    for x, y in zip(a.structures, b.structures):
        if x.normal is not None:
            assert np.allclose(x.normal, y.normal) and np.isclose(x.offset, y.offset)


def test_distant_textures_average_out_instead_of_aliasing():
    """Far floor pixels keep the texture's mean colour but lose the pixel-to-pixel flicker of nearest lookup."""
    from dataclasses import replace
    spec = SceneSpec((), camera_height=1.0, camera_pitch=0.08, wall_distance=60.0, ambient=1.0,
                     floor_material=Material("gravel", (1.0, 1.0, 1.0)))
    nearest, mipped = render(spec), render(replace(spec, bilinear=True))
    far = (nearest.surfaces == 1) & (nearest.depth > 12)
    assert far.sum() > 2000
    a, b = nearest.rgb[far].astype(float), mipped.rgb[far].astype(float)
    assert abs(a.mean() - b.mean()) < 0.05 * a.mean()
    assert b.std(axis=0).mean() < 0.5 * a.std(axis=0).mean()
