"""sam_node in-process against real rclpy + Fast DDS: a known scene in, its objects out; bad input survived."""
import io
import math
import time

import numpy as np
import pytest
import rclpy
import yaml
from PIL import Image as PILImage
from builtin_interfaces.msg import Time
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from scipy.spatial.transform import Rotation
from tf2_msgs.msg import TFMessage
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from rosutil import Spinner, decode_cloud, wait_for
from sam_ros.camera import PinholeCamera
from sam_ros.convert import fill_image
from sam_ros.scene.fusion import depth_to_metres, fuse_masks
from sam_ros.model import BUNDLED_PARAMS
from sam_ros.msg import MaskArray, Object3DArray
from sam_ros.ros.node import SamNode, stamp_ns
from sam_ros.synthetic import SceneObject, SceneSpec, add_depth_noise, render, to_16uc1_mm


FRAME = "camera_color_optical_frame"


def header_ns(header):
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def known_scene():
    """Three well separated objects on the floor, 1.5-2.5 m away."""
    objects = (SceneObject(1, "box", (-0.55, 0.85, 1.9), (0.35, 0.3, 0.3), yaw=0.5, texture="astronaut"),
               SceneObject(2, "sphere", (0.1, 0.83, 1.6), (0.34, 0.34, 0.34), texture="coffee"),
               SceneObject(3, "cylinder", (0.65, 0.75, 2.4), (0.3, 0.5, 0.3), texture="rocket"))
    return render(SceneSpec(objects, camera_height=1.0, camera_pitch=0.35, floor_texture="gravel",
                            wall_distance=4.5))


@pytest.fixture(scope="module")
def scene():
    return known_scene()


class Camera:
    """A fake RGB-D driver: publishes colour, depth and CameraInfo with one stamp, and collects sam_node's output."""

    def __init__(self, namespace="/"):
        self.node = rclpy.create_node("fake_camera", namespace=namespace)
        self.image = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.depth = self.node.create_publisher(Image, "depth", qos_profile_sensor_data)
        self.info = self.node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.masks, self.objects, self.clouds, self.markers, self.structure = {}, {}, {}, [], {}
        self.node.create_subscription(MaskArray, "sam_node/masks", lambda m: self.masks.__setitem__(stamp_ns(m), m), 10)
        self.node.create_subscription(Object3DArray, "sam_node/objects",
                                      lambda m: self.objects.__setitem__(stamp_ns(m), m), 10)
        self.node.create_subscription(Object3DArray, "sam_node/structure",
                                      lambda m: self.structure.__setitem__(stamp_ns(m), m), 10)
        # sam_node publishes the clouds only to subscribers: this one exists before any frame is sent
        self.node.create_subscription(PointCloud2, "sam_node/object_points",
                                      lambda m: self.clouds.__setitem__(stamp_ns(m), m), qos_profile_sensor_data)
        self.node.create_subscription(MarkerArray, "sam_node/markers", self.markers.append, 10)
        self.stamp = 1_000

    def next_header(self):
        self.stamp += 1
        return Header(stamp=Time(sec=self.stamp, nanosec=0), frame_id=FRAME)

    def send(self, rgb, depth, depth_encoding, scene, header, image_encoding="rgb8", info_k=None, info=True,
             depth_header=None):
        def publish():
            self.image.publish(fill_image(Image(), rgb, image_encoding, header) if rgb is not None else
                               Image(header=header, encoding="rgb8"))
            self.depth.publish(fill_image(Image(), depth, depth_encoding, depth_header or header))
            if info:
                k = scene.intrinsics.K.ravel().tolist() if info_k is None else info_k
                self.info.publish(CameraInfo(header=header, width=rgb.shape[1] if rgb is not None else 0,
                                             height=rgb.shape[0] if rgb is not None else 0, k=k, d=[0.0] * 5,
                                             distortion_model="plumb_bob"))
        return publish


def bundled_model_parameters(**extra):
    """The shipped model at its operating point (sam_ros/data/sam_ros_tiny.yaml), on the CPU."""
    values = {**yaml.safe_load(BUNDLED_PARAMS.read_text())["sam_node"]["ros__parameters"], "device": "cpu", **extra}
    return [Parameter(name, value=value) for name, value in values.items()]


@pytest.fixture(scope="module")
def harness(ros):
    node = SamNode(parameter_overrides=bundled_model_parameters(grid_size=12))
    assert node.autostart()
    camera = Camera()
    spinner = Spinner(node, camera.node)
    yield node, camera
    spinner.stop()
    node.destroy_node()
    camera.node.destroy_node()


def visible_truth(scene):
    """Visible-surface centroids of the ground-truth objects (what depth can tell)."""
    masks, ids = scene.masks()
    i = scene.intrinsics
    camera = PinholeCamera(i.width, i.height, i.K, frame_id=FRAME)
    estimates = fuse_masks(masks, depth_to_metres(scene.depth), camera, erosion_px=0, mad_gate=1e9)
    return {object_id: e.centroid for object_id, e in zip(ids, estimates) if masks[ids.index(object_id)].sum() > 1500}


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_known_objects_come_back_in_3d(harness, scene, encoding):
    node, camera = harness
    rng = np.random.default_rng(0)
    noisy = add_depth_noise(scene.depth, rng)
    depth = to_16uc1_mm(noisy) if encoding == "16UC1" else noisy
    header = camera.next_header()
    stamp = header_ns(header)
    assert wait_for(lambda: stamp in camera.objects and stamp in camera.structure, timeout=120,
                    action=camera.send(scene.rgb, depth, encoding, scene, header), action_every=10)
    masks, objects, structure = camera.masks[stamp], camera.objects[stamp], camera.structure[stamp]
    assert (masks.height, masks.width) == (480, 640) and masks.header.frame_id == FRAME
    assert objects.header.frame_id == FRAME and structure.header == objects.header
    # every mask is exactly one of: an object, structure, or a part (in the MaskArray only, with its parent)
    parts = {m.id for m in masks.masks if m.parent_id}
    assert all(o.kind == o.KIND_OBJECT and o.parent_id == 0 for o in objects.objects)
    assert all(o.kind == o.KIND_STRUCTURE and o.structure_class for o in structure.objects)
    listed = [o.mask_id for o in objects.objects] + [o.mask_id for o in structure.objects]
    assert sorted(listed + sorted(parts - {o.mask_id for o in structure.objects})) == [m.id for m in masks.masks]
    assert any(o.structure_class == "floor" for o in structure.objects)
    assert len(objects.objects) == len(visible_truth(scene))  # the three objects, once each, and not the floor
    valid = [o for o in objects.objects if o.valid]
    assert all(o.support_class == "floor" for o in valid)
    for object_id, centre in visible_truth(scene).items():
        distances = [math.dist((o.centroid.x, o.centroid.y, o.centroid.z), centre) for o in valid]
        assert min(distances) < 0.05, f"object {object_id} at {centre} not found within 5 cm"
    for o in objects.objects:
        assert all(math.isfinite(v) for v in (o.centroid.x, o.centroid.y, o.centroid.z, o.obb_size.x, o.depth_coverage))
    assert wait_for(lambda: any(m.type == Marker.CUBE for arr in camera.markers for m in arr.markers), timeout=10)


def points_by_label(cloud):
    """{label: (P, 3) points} of a decoded labelled PointCloud2."""
    points = decode_cloud(cloud)
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=1).astype(np.float64)
    return {int(label): xyz[points["label"] == label] for label in np.unique(points["label"])}


def check_cloud_matches_objects(cloud, objects):
    """One label per valid object (its tracking id), its points are the ones the object was reduced from."""
    assert cloud.header == objects.header and cloud.height == 1 and cloud.is_dense
    valid = {o.id: o for o in objects.objects if o.valid}
    clouds = points_by_label(cloud)
    assert set(clouds) == set(valid), "labels must be exactly the ids of the valid objects"
    for object_id, points in clouds.items():
        obj = valid[object_id]
        assert len(points) == obj.point_count
        assert np.allclose(points.mean(axis=0), (obj.centroid.x, obj.centroid.y, obj.centroid.z), atol=1e-4)
        low = np.array([obj.aabb_center.position.x - obj.aabb_size.x / 2, obj.aabb_center.position.y -
                        obj.aabb_size.y / 2, obj.aabb_center.position.z - obj.aabb_size.z / 2])
        high = low + (obj.aabb_size.x, obj.aabb_size.y, obj.aabb_size.z)
        outside = np.maximum(low - points, points - high)  # metres beyond the box along each axis, <= 0 inside
        # the box spans the 1st-99th percentile of each axis: at most 2% out per axis, and those only near it
        assert (outside <= 1e-4).all(axis=1).mean() >= 0.94, f"object {object_id}'s points are not in its box"
        assert (outside <= 0.5 * (high - low) + 0.02).all(), f"points of object {object_id} far from its box"
    return clouds


def cloud_and_objects(camera, scene):
    """sam_node's labelled cloud and objects for one frame of the known scene."""
    header = camera.next_header()
    stamp = header_ns(header)
    assert wait_for(lambda: stamp in camera.clouds and stamp in camera.objects, timeout=120,
                    action=camera.send(scene.rgb, to_16uc1_mm(scene.depth), "16UC1", scene, header), action_every=10)
    return camera.clouds[stamp], camera.objects[stamp]


def forget_tracks(node, camera, scene):
    """A blank frame (black, and a flat wall in depth, as the model sees depth too) with track_max_age 0 ends
    all tracks: the next objects' ids differ from their mask ids."""
    default = node.config.track_max_age
    assert node.set_parameters([Parameter("track_max_age", value=0)])[0].successful
    try:
        header = camera.next_header()
        blank = np.zeros_like(scene.rgb)
        assert wait_for(lambda: header_ns(header) in camera.masks, timeout=120,
                        action=camera.send(blank, to_16uc1_mm(np.full_like(scene.depth, 3.0)), "16UC1", scene, header),
                        action_every=10)
    finally:
        node.set_parameters([Parameter("track_max_age", value=default)])


def test_object_points_of_the_known_scene(harness, scene):
    node, camera = harness
    forget_tracks(node, camera, scene)
    cloud, objects = cloud_and_objects(camera, scene)
    assert any(o.id != o.mask_id for o in objects.objects), "labels must be told apart from mask indices"
    assert cloud.header.frame_id == FRAME
    clouds = check_cloud_matches_objects(cloud, objects)
    for object_id, centre in visible_truth(scene).items():
        distances = [math.dist(points.mean(axis=0), centre) for points in clouds.values()]
        assert min(distances) < 0.05, f"object {object_id} at {centre} has no points in the cloud"
    # objects with points, but too few to be valid, stay out of the cloud
    counts = sorted(o.point_count for o in objects.objects if o.valid)
    default = node.config.min_valid_points
    assert node.set_parameters([Parameter("min_valid_points", value=counts[len(counts) // 2])])[0].successful
    try:
        cloud, objects = cloud_and_objects(camera, scene)
        assert any(not o.valid and o.point_count > 0 for o in objects.objects)
        check_cloud_matches_objects(cloud, objects)
    finally:
        node.set_parameters([Parameter("min_valid_points", value=default)])


def test_structure_on_the_object_list_only_when_asked(harness, scene):
    node, camera = harness
    assert node.set_parameters([Parameter("publish_structure", value=True)])[0].successful
    try:
        _, objects = cloud_and_objects(camera, scene)
        structure = [o for o in objects.objects if o.kind == o.KIND_STRUCTURE]
        assert {"floor", "wall"} <= {o.structure_class for o in structure}
        assert len(objects.objects) - len(structure) == len(visible_truth(scene))
    finally:
        node.set_parameters([Parameter("publish_structure", value=False)])


def test_bad_input_is_counted_and_survived(harness, scene):
    node, camera = harness
    depth_mm = to_16uc1_mm(scene.depth)
    cases = [
        dict(rgb=scene.rgb[..., 0], depth=depth_mm, depth_encoding="16UC1", image_encoding="mono16"),  # wrong encoding
        dict(rgb=scene.rgb, depth=depth_mm[::2, ::2].copy(), depth_encoding="16UC1"),  # size mismatch
        dict(rgb=scene.rgb, depth=depth_mm, depth_encoding="16UC1", info_k=[0.0] * 9),  # CameraInfo K all zero
        dict(rgb=None, depth=depth_mm, depth_encoding="16UC1"),  # zero-size colour image
    ]
    for case in cases:
        before = node.counters["rejected_frames"]
        header = camera.next_header()
        assert wait_for(lambda: node.counters["rejected_frames"] > before, timeout=60,
                        action=camera.send(scene=scene, header=header, **case), action_every=5), case
        assert header_ns(header) not in camera.masks
    # all-NaN depth: the frame is processed, its objects are flagged, and nothing in them is NaN
    header = camera.next_header()
    nan_depth = np.full(scene.depth.shape, np.nan, np.float32)
    assert wait_for(lambda: header_ns(header) in camera.objects, timeout=120,
                    action=camera.send(scene.rgb, nan_depth, "32FC1", scene, header), action_every=10)
    flagged = camera.objects[header_ns(header)].objects
    assert flagged and all(not o.valid and o.invalid_reason for o in flagged)
    assert node.counters["frames_without_valid_depth"] >= 1
    # no CameraInfo, or depth stamps that never match: nothing is processed, queues stay bounded
    processed = node.counters["processed"]
    header = camera.next_header()
    late = Header(stamp=Time(sec=header.stamp.sec, nanosec=500_000_000), frame_id=FRAME)
    for _ in range(10):
        camera.send(scene.rgb, depth_mm, "16UC1", scene, header, info=False)()
        camera.send(scene.rgb, depth_mm, "16UC1", scene, camera.next_header(), depth_header=late)()
        time.sleep(0.1)
    time.sleep(1.0)
    assert node.counters["processed"] == processed
    assert all(len(q) <= node.config.sync_queue_size for q in node.sync.queues)
    assert node.worker.is_alive()


def test_parameters_are_validated_and_applied(harness, scene):
    node, camera = harness
    refused = node.set_parameters([Parameter("grid_size", value=0)])[0]
    assert not refused.successful and "grid_size" in refused.reason
    assert node.config.grid_size == 12
    assert not node.set_parameters([Parameter("prompt_mode", value="yolo")])[0].successful
    assert not node.set_parameters([Parameter("device", value="cuda")])[0].successful  # read-only
    assert node.set_parameters([Parameter("max_objects", value=1)])[0].successful
    header = camera.next_header()
    try:
        assert wait_for(lambda: header_ns(header) in camera.masks, timeout=120,
                        action=camera.send(scene.rgb, to_16uc1_mm(scene.depth), "16UC1", scene, header),
                        action_every=10)
        assert len(camera.masks[header_ns(header)].masks) == 1
    finally:
        node.set_parameters([Parameter("max_objects", value=100)])


def test_switching_to_aop_prompts_at_run_time(harness, scene):
    """The shipped model has its AoP predictor beside it: prompt_mode aop takes effect on the next frame."""
    node, camera = harness
    assert node.set_parameters([Parameter("prompt_mode", value="aop")])[0].successful
    header = camera.next_header()
    try:
        assert wait_for(lambda: header_ns(header) in camera.objects, timeout=120,
                        action=camera.send(scene.rgb, to_16uc1_mm(scene.depth), "16UC1", scene, header),
                        action_every=10)
        assert type(node.segmenter.strategy).__name__ == "AoPPrompts" and camera.masks[header_ns(header)].masks
        valid = [o for o in camera.objects[header_ns(header)].objects if o.valid]
        for object_id, centre in visible_truth(scene).items():
            assert min(math.dist((o.centroid.x, o.centroid.y, o.centroid.z), centre) for o in valid) < 0.05
    finally:
        node.set_parameters([Parameter("prompt_mode", value="grid")])


def test_objects_in_a_target_frame_through_tf(ros, scene):
    """target_frame=base_link: no transform yet -> masks only (counted); after /tf_static -> objects in base_link."""
    node = SamNode(namespace="tf_test",
                   parameter_overrides=bundled_model_parameters(grid_size=12, target_frame="base_link"))
    assert node.autostart()
    camera = Camera(namespace="tf_test")
    static_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    broadcaster = camera.node.create_publisher(TFMessage, "/tf_static", static_qos)
    spinner = Spinner(node, camera.node)
    try:
        depth = to_16uc1_mm(scene.depth)
        header = camera.next_header()
        assert wait_for(lambda: header_ns(header) in camera.masks, timeout=120,
                        action=camera.send(scene.rgb, depth, "16UC1", scene, header), action_every=10)
        assert node.counters["frames_without_transform"] >= 1 and header_ns(header) not in camera.objects

        rotation = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)  # optical -> REP 103 body axes
        translation = np.array([0.1, 0.0, 1.0])  # as published below
        x, y, z, w = Rotation.from_matrix(rotation).as_quat()
        broadcaster.publish(TFMessage(transforms=[TransformStamped(
            header=Header(frame_id="base_link"), child_frame_id=FRAME,
            transform=Transform(translation=Vector3(x=0.1, y=0.0, z=1.0), rotation=Quaternion(x=x, y=y, z=z, w=w)))]))
        header = camera.next_header()
        assert wait_for(lambda: header_ns(header) in camera.objects and header_ns(header) in camera.clouds,
                        timeout=120, action=camera.send(scene.rgb, depth, "16UC1", scene, header), action_every=10)
        objects = camera.objects[header_ns(header)]
        assert objects.header.frame_id == "base_link"
        check_cloud_matches_objects(camera.clouds[header_ns(header)], objects)
        valid = [o for o in objects.objects if o.valid]
        for object_id, centre in visible_truth(scene).items():
            expected = rotation @ centre + translation
            distances = [math.dist((o.centroid.x, o.centroid.y, o.centroid.z), expected) for o in valid]
            assert min(distances) < 0.05, f"object {object_id} not at {expected} in base_link"
    finally:
        spinner.stop()
        node.destroy_node()
        camera.node.destroy_node()


def test_compressed_colour_from_image_transport(ros, scene):
    """image_transport=compressed: JPEG colour on image/compressed gives the same objects; a corrupt one is a counted drop."""
    node = SamNode(namespace="compressed_test",
                   parameter_overrides=bundled_model_parameters(grid_size=12, image_transport="compressed"))
    assert node.autostart()
    camera = Camera(namespace="compressed_test")
    colour = camera.node.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data)
    spinner = Spinner(node, camera.node)

    def send(header, data):
        depth_and_info = camera.send(scene.rgb, to_16uc1_mm(scene.depth), "16UC1", scene, header)
        return lambda: (colour.publish(CompressedImage(header=header, format="jpeg", data=data)), depth_and_info())

    try:
        jpeg = io.BytesIO()
        PILImage.fromarray(scene.rgb).save(jpeg, format="jpeg", quality=90)
        header = camera.next_header()
        assert wait_for(lambda: header_ns(header) in camera.objects, timeout=120, action=send(header, jpeg.getvalue()),
                        action_every=10)
        valid = [o for o in camera.objects[header_ns(header)].objects if o.valid]
        for object_id, centre in visible_truth(scene).items():
            distances = [math.dist((o.centroid.x, o.centroid.y, o.centroid.z), centre) for o in valid]
            assert min(distances) < 0.05, f"object {object_id} at {centre} not found within 5 cm"
        header = camera.next_header()
        assert wait_for(lambda: node.counters["rejected_frames"] >= 1, timeout=60,
                        action=send(header, jpeg.getvalue()[:200]), action_every=5)
        assert header_ns(header) not in camera.masks and node.worker.is_alive()
    finally:
        spinner.stop()
        node.destroy_node()
        camera.node.destroy_node()
