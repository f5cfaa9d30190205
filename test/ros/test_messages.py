"""Every sam_ros message through rclpy serialisation, DDS, and rosbags' CDR (both directions)."""
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.typesys import Stores, get_typestore, get_types_from_msg
from sensor_msgs.msg import PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header

from rosutil import Spinner, decode_cloud, wait_for
from sam_ros.msg import MaskArray, Object3D, Object3DArray, ObjectMask
from sam_ros.ros.messages import labelled_cloud

MSG_DIR = Path(__file__).resolve().parents[2] / "msg"


def sample_mask_array():
    mask = ObjectMask(id=3, bbox=RegionOfInterest(x_offset=4, y_offset=5, width=6, height=7), area=42,
                      predicted_iou=0.91, stability_score=0.97, rle_counts=[10, 5, 3, 2],
                      prompt=Point(x=12.5, y=8.0), parent_id=2,
                      crop_box=RegionOfInterest(x_offset=0, y_offset=160, width=320, height=320))
    return MaskArray(header=Header(frame_id="camera_color_optical_frame"), height=480, width=640, masks=[mask])


def sample_object_array():
    obj = Object3D(id=7, mask_id=3, valid=True, centroid=Point(x=0.1, y=0.2, z=1.5),
                   aabb_center=Pose(position=Point(x=0.1, y=0.2, z=1.6), orientation=Quaternion(w=1.0)),
                   aabb_size=Vector3(x=0.3, y=0.4, z=0.2),
                   obb_pose=Pose(position=Point(x=0.1, y=0.2, z=1.6), orientation=Quaternion(y=0.38, w=0.92)),
                   obb_size=Vector3(x=0.35, y=0.4, z=0.15), point_count=1234, depth_coverage=0.93, score=0.9,
                   support_id=9, support_class="floor")
    bad = Object3D(id=8, mask_id=4, valid=False, invalid_reason="too little valid depth")
    floor = Object3D(id=9, mask_id=5, valid=True, kind=Object3D.KIND_STRUCTURE, structure_class="floor",
                     plane_normal=Vector3(x=0.0, y=-0.93, z=-0.37), plane_offset=-1.07)
    return Object3DArray(header=Header(frame_id="camera_color_optical_frame"), objects=[obj, bad, floor])


CLOUD_POINTS = np.array([[0.1, -0.2, 1.5], [0.3, 0.25, 2.0], [-1.0, 0.0, 3.25]])
CLOUD_LABELS = np.array([7, 7, 2**32 - 1])


def sample_cloud():
    return labelled_cloud(Header(frame_id="camera_color_optical_frame"), CLOUD_POINTS, CLOUD_LABELS)


def same(a, b):
    """Field-by-field equality with float32 tolerance (float32 fields lose precision in transit)."""
    if hasattr(a, "get_fields_and_field_types"):
        return all(same(getattr(a, f), getattr(b, f)) for f in a.get_fields_and_field_types())
    if isinstance(a, float):
        return abs(a - b) < 1e-6 * max(1.0, abs(a))
    if isinstance(a, (list, tuple)) or hasattr(a, "tolist"):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(list(a), list(b)))
    return a == b


@pytest.mark.parametrize("make", [sample_mask_array, sample_object_array, sample_cloud])
def test_rclpy_serialisation_round_trip(make):
    msg = make()
    assert same(deserialize_message(serialize_message(msg), type(msg)), msg)


def test_labelled_cloud_decodes_back_to_its_points_and_labels():
    msg = deserialize_message(serialize_message(sample_cloud()), PointCloud2)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("label", 12, PointField.UINT32, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.is_bigendian, msg.is_dense) == (1, 3, 16, False, True)
    cloud = decode_cloud(msg)
    assert np.allclose(np.stack([cloud["x"], cloud["y"], cloud["z"]], 1), CLOUD_POINTS, atol=1e-7)
    assert cloud["label"].tolist() == CLOUD_LABELS.tolist()
    assert msg.header.frame_id == "camera_color_optical_frame"


def test_empty_and_malformed_clouds():
    empty = labelled_cloud(Header(), np.zeros((0, 3)), np.zeros(0, np.int64))
    assert (empty.width, len(empty.data), empty.is_dense) == (0, 0, True)
    with pytest.raises(ValueError, match="points"):
        labelled_cloud(Header(), CLOUD_POINTS[:, :2], CLOUD_LABELS)
    with pytest.raises(ValueError, match="labels"):
        labelled_cloud(Header(), CLOUD_POINTS, CLOUD_LABELS[:2])
    with pytest.raises(ValueError, match="finite"):
        labelled_cloud(Header(), np.where(CLOUD_POINTS > 3, np.nan, CLOUD_POINTS), CLOUD_LABELS)
    with pytest.raises(ValueError, match="UINT32"):
        labelled_cloud(Header(), CLOUD_POINTS, np.array([1, -1, 2]))
    with pytest.raises(ValueError, match="UINT32"):
        labelled_cloud(Header(), CLOUD_POINTS, np.array([1.5, 2.0, 3.0]))


@pytest.fixture(scope="module")
def typestore():
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(MSG_DIR.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"sam_ros/msg/{path.stem}"))
    store.register(types)
    return store


@pytest.mark.parametrize("make", [sample_mask_array, sample_object_array])
def test_rosbags_cdr_both_directions(typestore, make):
    msg = make()
    name = f"sam_ros/msg/{type(msg).__name__}"
    decoded = typestore.deserialize_cdr(serialize_message(msg), name)  # rclpy -> rosbags
    assert decoded.header.frame_id == "camera_color_optical_frame"
    back = deserialize_message(bytes(typestore.serialize_cdr(decoded, name)), type(msg))  # rosbags -> rclpy
    assert same(back, msg)
    if isinstance(msg, MaskArray):
        assert np.array_equal(decoded.masks[0].rle_counts, [10, 5, 3, 2])


@pytest.mark.parametrize("reliability", [ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT])
def test_publish_subscribe(ros, reliability):
    import rclpy

    node = rclpy.create_node("msg_roundtrip")
    qos = QoSProfile(depth=10, reliability=reliability)
    received = []
    node.create_subscription(Object3DArray, "roundtrip", received.append, qos)
    pub = node.create_publisher(Object3DArray, "roundtrip", qos)
    spinner = Spinner(node)
    try:
        msg = sample_object_array()
        assert wait_for(lambda: received, timeout=20, action=lambda: pub.publish(msg), action_every=0.2)
        assert same(received[0], msg)
    finally:
        spinner.stop()
        node.destroy_node()


def quaternion_matrix(q):
    x, y, z, w = q.x, q.y, q.z, q.w
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@pytest.mark.parametrize("up", [np.array([0.0, 0.0, 1.0]), np.array([0.0, -0.94, -0.34]) / np.hypot(0.94, 0.34)])
def test_published_box_corners_enclose_the_points_it_was_made_of(up):
    """The box a consumer draws from obb_pose + obb_size (what RViz's CUBE does) holds the object's points,
    in a z-up target frame and in a pitched camera's optical frame: size.x/y/z go with the pose's axes."""
    from sam_ros.ros.messages import object_array
    from sam_ros.scene.boxes import box_rotation
    from sam_ros.scene.fusion import ObjectPoints, estimate_objects

    rng = np.random.default_rng(0)
    yaw = 0.7
    truth = box_rotation(up, yaw)  # a 0.6 x 0.2 x 0.4 box's surface points, long side along the yaw
    local = rng.uniform(-0.5, 0.5, (3000, 3)) * [0.6, 0.2, 0.4]
    points = np.array([1.0, -0.3, 2.0]) + local @ truth.T
    estimate = estimate_objects(ObjectPoints.from_numpy(np.zeros(len(points), np.int64), points, 1, np.ones(1)),
                                up=up)[0]
    msg = object_array(Header(frame_id="f"), [estimate], [5], [1], [1.3]).objects[0]
    assert msg.score == pytest.approx(1.0)  # predicted IoU above 1 is clipped
    rotation = quaternion_matrix(msg.obb_pose.orientation)
    center = np.array([msg.obb_pose.position.x, msg.obb_pose.position.y, msg.obb_pose.position.z])
    size = np.array([msg.obb_size.x, msg.obb_size.y, msg.obb_size.z])
    assert np.allclose(rotation[:, 2], up, atol=1e-6) and size == pytest.approx([0.6, 0.2, 0.4], abs=0.02)
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)])
    corners = center + (signs * size / 2) @ rotation.T
    true_corners = np.array([1.0, -0.3, 2.0]) + (signs * [0.3, 0.1, 0.2]) @ truth.T
    # every corner lies on a true corner (up to the box's symmetry), within the points' spacing
    distance = np.linalg.norm(corners[:, None] - true_corners[None], axis=2).min(1)
    assert distance.max() < 0.03


def test_markers_draw_structure_boxes_and_an_arrow_to_each_support():
    from visualization_msgs.msg import Marker

    from sam_ros.ros.messages import markers

    header = Header(frame_id="base_link")
    level = Quaternion(w=1.0)
    box = Object3D(id=7, valid=True, centroid=Point(x=1.0, y=0.0, z=0.5),
                   obb_pose=Pose(position=Point(x=1.0, y=0.0, z=0.5), orientation=level),
                   obb_size=Vector3(x=0.4, y=0.3, z=0.2), support_id=9, support_class="floor")
    cup = Object3D(id=8, valid=True, centroid=Point(x=1.0, y=0.0, z=0.7),
                   obb_pose=Pose(position=Point(x=1.0, y=0.0, z=0.7), orientation=level),
                   obb_size=Vector3(x=0.1, y=0.1, z=0.1), support_id=7, support_class="object")
    floor = Object3D(id=9, valid=True, kind=Object3D.KIND_STRUCTURE, structure_class="floor",
                     obb_pose=Pose(position=Point(x=2.0, y=0.0, z=0.0), orientation=level),
                     obb_size=Vector3(x=4.0, y=3.0, z=0.0), plane_normal=Vector3(z=1.0), plane_offset=0.4)
    out = markers(header, Object3DArray(header=header, objects=[box, cup]), 1.0,
                  Object3DArray(header=header, objects=[floor]))
    slabs = [m for m in out.markers if m.ns == "sam_ros/structure"]
    assert len(slabs) == 1 and slabs[0].type == Marker.CUBE and slabs[0].color.a < 0.5 and slabs[0].scale.z > 0
    arrows = {m.id: m for m in out.markers if m.ns == "sam_ros/support"}
    assert set(arrows) == {7, 8}
    start, end = arrows[7].points
    assert (start.x, start.y, start.z) == (1.0, 0.0, 0.5) and end.z == pytest.approx(0.4)  # down to the floor plane
    end = arrows[8].points[1]
    assert end.z == pytest.approx(0.5 + 0.1)  # to the top of the box it stands on
    assert sum(m.type == Marker.CUBE and m.ns == "sam_ros" for m in out.markers) == 2


def test_mask_array_carries_each_masks_crop_box():
    import torch

    from sam_ros.pipeline import SegmentationResult
    from sam_ros.ros.messages import mask_array

    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True
    masks[1, 4:6, 5:8] = True
    result = SegmentationResult(masks, torch.tensor([[1, 1, 2, 2], [5, 4, 7, 5]]), torch.tensor([4, 6]),
                                torch.tensor([0.9, 0.8]), torch.tensor([0.95, 0.96]), torch.tensor([[1.5, 1.5], [6.0, 5.0]]),
                                2, crop_boxes=torch.tensor([[0, 0, 8, 6], [4, 3, 8, 6]]))
    msg = mask_array(Header(frame_id="cam"), result, [1, 2])
    assert [(m.crop_box.x_offset, m.crop_box.y_offset, m.crop_box.width, m.crop_box.height) for m in msg.masks] == [
        (0, 0, 8, 6), (4, 3, 4, 3)]
