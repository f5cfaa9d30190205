"""The TF buffer: chains of static and dynamic transforms, interpolation, and refusals."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from sam_ros.transforms import TransformBuffer, TransformUnavailable, quaternion_matrix

SECOND = 1_000_000_000
# REP 103: camera_link is x forward, y left, z up; the optical frame is z forward, x right, y down.
OPTICAL = Rotation.from_euler("xyz", [-90, 0, -90], degrees=True).as_quat()


def robot() -> TransformBuffer:
    """map -> odom (static), odom -> base_link (moving along x, turning), base_link -> camera (static)."""
    tf = TransformBuffer()
    tf.set_transform("map", "odom", 0, [1.0, 0.0, 0.0], [0, 0, 0, 1], static=True)
    tf.set_transform("odom", "base_link", 1 * SECOND, [0.0, 0.0, 0.0], [0, 0, 0, 1], static=False)
    tf.set_transform("odom", "base_link", 2 * SECOND, [2.0, 0.0, 0.0],
                     Rotation.from_euler("z", 90, degrees=True).as_quat(), static=False)
    tf.set_transform("base_link", "camera_link", 0, [0.1, 0.0, 0.5], [0, 0, 0, 1], static=True)
    tf.set_transform("camera_link", "camera_color_optical_frame", 0, [0, 0, 0], OPTICAL, static=True)
    return tf


def apply(matrix: np.ndarray, point) -> np.ndarray:
    return (matrix @ np.append(point, 1.0))[:3]


def test_quaternion_matrix_matches_scipy():
    for quat in Rotation.random(20, random_state=0).as_quat():
        np.testing.assert_allclose(quaternion_matrix(*(3 * quat)), Rotation.from_quat(quat).as_matrix(), atol=1e-12)
    with pytest.raises(ValueError, match="quaternion"):
        quaternion_matrix(0, 0, 0, 0)


def test_a_point_in_front_of_the_camera_lands_in_front_of_the_robot():
    tf = robot()
    matrix = tf.lookup("map", "/camera_color_optical_frame", 1 * SECOND)  # leading slashes are tolerated
    # 2 m along the optical axis (z) is 2 m ahead of the camera (x), 0.5 m up, robot at odom origin.
    np.testing.assert_allclose(apply(matrix, [0, 0, 2.0]), [1.0 + 0.1 + 2.0, 0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(apply(matrix, [0, -1.0, 0]), [1.1, 0.0, 1.5], atol=1e-12)  # optical -y is up
    np.testing.assert_allclose(tf.lookup("camera_color_optical_frame", "map", 1 * SECOND), np.linalg.inv(matrix),
                               atol=1e-12)
    np.testing.assert_allclose(tf.lookup("base_link", "base_link", 5 * SECOND), np.eye(4))


def test_dynamic_transforms_interpolate_between_samples():
    tf = robot()
    middle = tf.lookup("odom", "base_link", 1 * SECOND + SECOND // 2)
    expected = Slerp([0, 1], Rotation.from_euler("z", [[0], [90]], degrees=True))([0.5]).as_matrix()[0]
    np.testing.assert_allclose(middle[:3, :3], expected, atol=1e-9)
    np.testing.assert_allclose(middle[:3, 3], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(tf.lookup("odom", "base_link", 0)[:3, 3], [2.0, 0, 0])  # 0 = the latest


def test_no_extrapolation_beyond_a_small_tolerance():
    tf = robot()
    tf.lookup("map", "camera_color_optical_frame", 2 * SECOND + 40_000_000)  # 40 ms late: the newest sample
    with pytest.raises(TransformUnavailable, match="extrapolate"):
        tf.lookup("map", "camera_color_optical_frame", 3 * SECOND)
    with pytest.raises(TransformUnavailable, match="before the oldest"):
        tf.lookup("map", "camera_color_optical_frame", SECOND // 2)


def test_unconnected_frames_are_refused_with_both_roots_named():
    tf = robot()
    tf.set_transform("world", "table", 0, [0, 0, 0], [0, 0, 0, 1], static=True)
    with pytest.raises(TransformUnavailable, match="'map'.*'world'|'world'.*'map'"):
        tf.lookup("table", "camera_color_optical_frame", SECOND)
    with pytest.raises(TransformUnavailable, match="not connected"):
        tf.lookup("nowhere", "base_link", SECOND)


def test_late_samples_are_inserted_in_time_order_and_bad_ones_refused():
    tf = TransformBuffer()
    for stamp, x in ((3, 3.0), (1, 1.0), (2, 2.0)):
        tf.set_transform("odom", "base_link", stamp * SECOND, [x, 0, 0], [0, 0, 0, 1], static=False)
    assert tf.lookup("odom", "base_link", 2 * SECOND + SECOND // 2)[0, 3] == pytest.approx(2.5)
    with pytest.raises(ValueError):
        tf.set_transform("odom", "base_link", 4 * SECOND, [np.nan, 0, 0], [0, 0, 0, 1], static=False)
    with pytest.raises(ValueError):
        tf.set_transform("odom", "odom", 0, [0, 0, 0], [0, 0, 0, 1], static=True)
