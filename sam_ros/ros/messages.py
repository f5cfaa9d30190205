"""Core results -> ROS messages (MaskArray, Object3DArray, PointCloud2, MarkerArray, DiagnosticArray)."""
from __future__ import annotations

import numpy as np
import torch
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from sam_ros.msg import MaskArray, Object3D, Object3DArray, ObjectMask

from ..filters import masks_to_boxes
from ..masks import rle_counts
from ..pipeline import SegmentationResult
from ..scene.boxes import rotation_quaternion
from ..scene.fusion import Object3DEstimate
from ..transforms import TransformBuffer
from ..visualize import id_colours

# One labelled point: x, y, z and the object's tracking id, little-endian and packed (16 bytes).
LABELLED_POINT = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "<u4")])
POINT_FIELD_TYPES = {"<f4": PointField.FLOAT32, "<u4": PointField.UINT32}


def stamp_ns(msg) -> int:
    """A stamped message's (or TransformStamped's) header stamp in integer nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def mask_array(header: Header, result: SegmentationResult, ids: list[int], parents: list[int] | None = None,
               masks: torch.Tensor | None = None) -> MaskArray:
    """The frame's masks, or ``masks`` instead (the refined ones, same order); ``parents`` (mask index of each
    mask's whole, -1 for wholes) fills ``parent_id``."""
    masks = result.masks if masks is None else masks
    height, width = masks.shape[1:]
    msg = MaskArray(header=header, height=int(height), width=int(width))
    boxes = masks_to_boxes(masks).cpu().long().tolist()
    areas = masks.flatten(1).sum(1).cpu().tolist()
    iou, stability = result.predicted_iou.cpu().tolist(), result.stability.cpu().tolist()
    points = result.points.cpu().tolist()
    crops = (result.crop_boxes.cpu().long().tolist() if result.crop_boxes is not None
             else [[0, 0, int(width), int(height)]] * len(result))
    for i, counts in enumerate(rle_counts(masks)):
        x0, y0, x1, y1 = boxes[i]
        msg.masks.append(ObjectMask(
            id=int(ids[i]), bbox=RegionOfInterest(x_offset=x0, y_offset=y0, width=x1 - x0 + 1, height=y1 - y0 + 1),
            area=int(areas[i]), predicted_iou=float(iou[i]), stability_score=float(stability[i]),
            rle_counts=[int(c) for c in counts], prompt=Point(x=float(points[i][0]), y=float(points[i][1])),
            parent_id=int(ids[parents[i]]) if parents is not None and parents[i] >= 0 else 0,
            crop_box=RegionOfInterest(x_offset=crops[i][0], y_offset=crops[i][1], width=crops[i][2] - crops[i][0],
                                      height=crops[i][3] - crops[i][1])))
    return msg


def rotation_to_quaternion(rotation: np.ndarray) -> Quaternion:
    x, y, z, w = rotation_quaternion(rotation)
    return Quaternion(x=x, y=y, z=z, w=w)


def _point(v) -> Point:
    return Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _vector(v) -> Vector3:
    return Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def object_array(header: Header, estimates: list[Object3DEstimate], track_ids: list[int], mask_ids: list[int],
                 scores: list[float], select: list[bool] | None = None) -> Object3DArray:
    """The entries of ``estimates`` where ``select`` (default: all); parent and support ids are track ids."""
    msg = Object3DArray(header=header)
    for i, (estimate, track_id, mask_id, score) in enumerate(zip(estimates, track_ids, mask_ids, scores)):
        if select is not None and not select[i]:
            continue
        obj = Object3D(id=int(track_id), mask_id=int(mask_id), valid=estimate.valid,
                       invalid_reason=estimate.reason, point_count=int(estimate.point_count),
                       depth_coverage=float(estimate.depth_coverage), score=float(min(max(score, 0.0), 1.0)),
                       kind=Object3D.KIND_STRUCTURE if estimate.kind == "structure" else Object3D.KIND_OBJECT,
                       structure_class=estimate.structure,
                       parent_id=int(track_ids[estimate.parent]) if estimate.parent >= 0 else 0,
                       support_id=int(track_ids[estimate.support]) if estimate.support >= 0 else 0,
                       support_class=estimate.support_kind)
        if estimate.kind == "structure":
            obj.plane_normal, obj.plane_offset = _vector(estimate.plane[:3]), float(estimate.plane[3])
        if estimate.valid:
            obj.centroid = _point(estimate.centroid)
            obj.aabb_center = Pose(position=_point(estimate.aabb_center), orientation=Quaternion(w=1.0))
            obj.aabb_size = _vector(estimate.aabb_size)
            obj.obb_pose = Pose(position=_point(estimate.obb_center),
                                orientation=rotation_to_quaternion(estimate.obb_rotation))
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


def markers(header: Header, objects: Object3DArray, lifetime_s: float,
            structure: Object3DArray | None = None) -> MarkerArray:
    """Oriented boxes, centroid spheres and id/score labels of objects; translucent slabs for structure;
    a line from each object to what it rests on. Stale markers vanish after ``lifetime_s``."""
    out = MarkerArray(markers=[Marker(header=header, ns="sam_ros", action=Marker.DELETEALL)])
    lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    common = dict(header=header, action=Marker.ADD, lifetime=lifetime)
    valid = [o for o in objects.objects if o.valid]
    flat = [o for o in (structure.objects if structure is not None else []) if o.valid]
    colours = id_colours(np.array([o.id for o in valid])) / 255.0 if valid else []
    for obj in flat:
        out.markers.append(Marker(ns="sam_ros/structure", id=obj.id, type=Marker.CUBE, pose=obj.obb_pose,
                                  scale=_at_least(obj.obb_size, 0.01),
                                  color=ColorRGBA(r=0.6, g=0.6, b=0.7, a=0.2), **common))
    by_id = {o.id: o for o in valid + flat}
    for obj, colour in zip(valid, colours):
        rgba = ColorRGBA(r=float(colour[0]), g=float(colour[1]), b=float(colour[2]), a=0.45)
        out.markers.append(Marker(ns="sam_ros", id=3 * obj.id, type=Marker.CUBE, pose=obj.obb_pose,
                                  scale=_at_least(obj.obb_size, 0.005), color=rgba, **common))
        out.markers.append(Marker(ns="sam_ros", id=3 * obj.id + 1, type=Marker.SPHERE,
                                  pose=Pose(position=obj.centroid, orientation=Quaternion(w=1.0)),
                                  scale=Vector3(x=0.04, y=0.04, z=0.04),
                                  color=ColorRGBA(r=rgba.r, g=rgba.g, b=rgba.b, a=1.0), **common))
        up = _box_up(obj)
        above = _vec(obj.obb_pose.position) + up * (obj.obb_size.z / 2 + 0.05)
        out.markers.append(Marker(ns="sam_ros", id=3 * obj.id + 2, type=Marker.TEXT_VIEW_FACING,
                                  pose=Pose(position=_point(above), orientation=Quaternion(w=1.0)),
                                  scale=Vector3(z=0.06), color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
                                  text=f"{obj.id} ({obj.score:.2f})", **common))
        support = by_id.get(obj.support_id)
        if support is not None:
            out.markers.append(Marker(ns="sam_ros/support", id=obj.id, type=Marker.ARROW,
                                      points=[obj.centroid, _support_point(obj, support, up)],
                                      scale=Vector3(x=0.01, y=0.025, z=0.03),
                                      color=ColorRGBA(r=1.0, g=0.9, b=0.2, a=0.9), **common))
    return out


def _vec(p) -> np.ndarray:
    return np.array([p.x, p.y, p.z])


def _at_least(size: Vector3, minimum: float) -> Vector3:
    """RViz draws nothing for a zero scale: a flat box gets a sliver of thickness."""
    return Vector3(x=max(size.x, minimum), y=max(size.y, minimum), z=max(size.z, minimum))


def _box_up(obj: Object3D) -> np.ndarray:
    """The box's z axis (up) in the header frame, from its orientation."""
    q = obj.obb_pose.orientation
    x, y, z, w = q.x, q.y, q.z, q.w
    return np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])


def _support_point(obj: Object3D, support: Object3D, up: np.ndarray) -> Point:
    """Where the line from an object to its support ends: the plane below it, or the supporting box's top."""
    centroid = _vec(obj.centroid)
    if support.kind == Object3D.KIND_STRUCTURE:
        normal = _vec(support.plane_normal)
        along = normal @ up
        if abs(along) > 1e-6:
            return _point(centroid - (normal @ centroid - support.plane_offset) / along * up)
    top = _vec(support.obb_pose.position) + _box_up(support) * support.obb_size.z / 2
    return _point(top)


def diagnostics(header: Header, name: str, level: bytes, message: str, values: dict) -> DiagnosticArray:
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id="sam_ros",
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    return DiagnosticArray(header=header, status=[status])


def add_transform(buffer: TransformBuffer, msg, static: bool) -> None:
    """One geometry_msgs/TransformStamped into the core's transform buffer."""
    t, r = msg.transform.translation, msg.transform.rotation
    buffer.set_transform(msg.header.frame_id, msg.child_frame_id, stamp_ns(msg),
                         (t.x, t.y, t.z), (r.x, r.y, r.z, r.w), static)
