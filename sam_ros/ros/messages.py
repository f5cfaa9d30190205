"""Core results -> ROS messages (MaskArray, Object3DArray, PointCloud2, MarkerArray, DiagnosticArray)."""
from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from sam_ros.msg import MaskArray, Object3D, Object3DArray, ObjectMask

from ..fusion import Object3DEstimate
from ..masks import rle_counts
from ..pipeline import SegmentationResult
from ..transforms import TransformBuffer
from ..visualize import id_colours

# One labelled point: x, y, z and the object's tracking id, little-endian and packed (16 bytes).
LABELLED_POINT = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "<u4")])
POINT_FIELD_TYPES = {"<f4": PointField.FLOAT32, "<u4": PointField.UINT32}


def stamp_ns(msg) -> int:
    """A stamped message's (or TransformStamped's) header stamp in integer nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def mask_array(header: Header, result: SegmentationResult, ids: list[int]) -> MaskArray:
    height, width = result.masks.shape[1:]
    msg = MaskArray(header=header, height=int(height), width=int(width))
    boxes = result.boxes.cpu().long().tolist()
    areas = result.areas.cpu().tolist()
    iou, stability = result.predicted_iou.cpu().tolist(), result.stability.cpu().tolist()
    points = result.points.cpu().tolist()
    crops = (result.crop_boxes.cpu().long().tolist() if result.crop_boxes is not None
             else [[0, 0, int(width), int(height)]] * len(result))
    for i, counts in enumerate(rle_counts(result.masks)):
        x0, y0, x1, y1 = boxes[i]
        msg.masks.append(ObjectMask(
            id=int(ids[i]), bbox=RegionOfInterest(x_offset=x0, y_offset=y0, width=x1 - x0 + 1, height=y1 - y0 + 1),
            area=int(areas[i]), predicted_iou=float(iou[i]), stability_score=float(stability[i]),
            rle_counts=[int(c) for c in counts], prompt=Point(x=float(points[i][0]), y=float(points[i][1])),
            crop_box=RegionOfInterest(x_offset=crops[i][0], y_offset=crops[i][1], width=crops[i][2] - crops[i][0],
                                      height=crops[i][3] - crops[i][1])))
    return msg


def yaw_quaternion(up: np.ndarray, yaw: float) -> Quaternion:
    """Rotation by ``yaw`` about the unit axis ``up``."""
    s = math.sin(yaw / 2)
    return Quaternion(x=float(up[0] * s), y=float(up[1] * s), z=float(up[2] * s), w=math.cos(yaw / 2))


def _point(v) -> Point:
    return Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _vector(v) -> Vector3:
    return Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def object_array(header: Header, estimates: list[Object3DEstimate], track_ids: list[int], mask_ids: list[int],
                 scores: list[float], up: np.ndarray) -> Object3DArray:
    msg = Object3DArray(header=header)
    for estimate, track_id, mask_id, score in zip(estimates, track_ids, mask_ids, scores):
        obj = Object3D(id=int(track_id), mask_id=int(mask_id), valid=estimate.valid,
                       invalid_reason=estimate.reason, point_count=int(estimate.point_count),
                       depth_coverage=float(estimate.depth_coverage), score=float(score))
        if estimate.valid:
            obj.centroid = _point(estimate.centroid)
            obj.aabb_center = Pose(position=_point(estimate.aabb_center), orientation=Quaternion(w=1.0))
            obj.aabb_size = _vector(estimate.aabb_size)
            obj.obb_pose = Pose(position=_point(estimate.obb_center), orientation=yaw_quaternion(up, estimate.obb_yaw))
            obj.obb_size = _vector(estimate.obb_size)
        msg.objects.append(obj)
    return msg


def labelled_cloud(header: Header, points: np.ndarray, labels: np.ndarray) -> PointCloud2:
    """An unorganised PointCloud2 (x, y, z FLOAT32, label UINT32) from (P, 3) points and (P,) labels.

    RViz colours it by the ``label`` channel and a planner can split it by object without a second topic.
    The cloud promises ``is_dense`` (no NaN), so non-finite points are refused rather than published.
    """
    points, labels = np.asarray(points), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 3 or labels.shape != points.shape[:1]:
        raise ValueError(f"need (P, 3) points and (P,) labels, got {points.shape} and {labels.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points must be finite (the cloud is published with is_dense=True)")
    if not np.issubdtype(labels.dtype, np.integer) or (
            labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint32).max)):
        raise ValueError(f"labels must be integers that fit UINT32, got {labels.dtype} {labels[:3]}...")
    cloud = np.empty(len(points), LABELLED_POINT)
    for axis, name in enumerate("xyz"):  # three columns, not a loop over points
        cloud[name] = points[:, axis]
    cloud["label"] = labels
    fields = [PointField(name=name, offset=offset, datatype=POINT_FIELD_TYPES[dtype.str], count=1)
              for name, (dtype, offset) in LABELLED_POINT.fields.items()]
    return PointCloud2(header=header, height=1, width=len(cloud), fields=fields, is_bigendian=False,
                       point_step=LABELLED_POINT.itemsize, row_step=cloud.nbytes, data=cloud.tobytes(), is_dense=True)


def markers(header: Header, objects: Object3DArray, lifetime_s: float) -> MarkerArray:
    """Oriented boxes, centroid spheres and id/score labels; stale ones vanish after ``lifetime_s``."""
    out = MarkerArray(markers=[Marker(header=header, ns="sam_ros", action=Marker.DELETEALL)])
    lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    valid = [o for o in objects.objects if o.valid]
    colours = id_colours(np.array([o.id for o in valid])) / 255.0 if valid else []
    for obj, colour in zip(valid, colours):
        rgba = ColorRGBA(r=float(colour[0]), g=float(colour[1]), b=float(colour[2]), a=0.45)
        common = dict(header=header, ns="sam_ros", action=Marker.ADD, lifetime=lifetime)
        out.markers.append(Marker(id=3 * obj.id, type=Marker.CUBE, pose=obj.obb_pose, scale=obj.obb_size,
                                  color=rgba, **common))
        out.markers.append(Marker(id=3 * obj.id + 1, type=Marker.SPHERE,
                                  pose=Pose(position=obj.centroid, orientation=Quaternion(w=1.0)),
                                  scale=Vector3(x=0.04, y=0.04, z=0.04),
                                  color=ColorRGBA(r=rgba.r, g=rgba.g, b=rgba.b, a=1.0), **common))
        label = Pose(position=Point(x=obj.centroid.x, y=obj.centroid.y - obj.obb_size.y / 2 - 0.05,
                                    z=obj.centroid.z), orientation=Quaternion(w=1.0))
        out.markers.append(Marker(id=3 * obj.id + 2, type=Marker.TEXT_VIEW_FACING, pose=label,
                                  scale=Vector3(z=0.06), color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
                                  text=f"{obj.id} ({obj.score:.2f})", **common))
    return out


def diagnostics(header: Header, name: str, level: bytes, message: str, values: dict) -> DiagnosticArray:
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id="sam_ros",
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    return DiagnosticArray(header=header, status=[status])


def add_transform(buffer: TransformBuffer, msg, static: bool) -> None:
    """One geometry_msgs/TransformStamped into the core's transform buffer."""
    t, r = msg.transform.translation, msg.transform.rotation
    buffer.set_transform(msg.header.frame_id, msg.child_frame_id, stamp_ns(msg),
                         (t.x, t.y, t.z), (r.x, r.y, r.z, r.w), static)
