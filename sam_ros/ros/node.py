"""sam_node: colour + aligned depth + CameraInfo in; masks, 3D objects, their points, markers, overlay out.

The node only adapts messages to the core and back. Subscriptions use sensor-data QoS (best effort,
which also matches reliable camera publishers); matched frames go through a one-slot hand-off to an
inference thread, so a slow frame makes the node skip camera frames (counted as drops) instead of
queueing them: it never lags behind its camera.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections import Counter

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from sam_ros.msg import MaskArray, Object3DArray

from ..camera import PinholeCamera
from ..config import SamRosConfig, fields_info
from ..convert import colour_to_rgb, compressed_to_rgb, depth_image, fill_image
from ..masks import label_image
from ..pipeline import Segmenter
from ..sync import ApproximateTimeSynchronizer, LatestSlot
from ..transforms import TransformBuffer, TransformUnavailable
from ..visualize import overlay
from . import messages
from .messages import stamp_ns

MARKER_LIFETIME_S = 1.0


class SamNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sam_node", **kwargs)
        self.config = self._declare_parameters()
        self.counters: Counter[str] = Counter()
        self.tf = self._listen_to_tf() if self.config.target_frame else None
        self.last_timings: dict[str, float] = {}
        self._warned_at: dict[str, float] = {}
        self.segmenter = Segmenter(self.config)
        self._frame_times: list[float] = []
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.pub_masks = self.create_publisher(MaskArray, "~/masks", 10)
        self.pub_objects = self.create_publisher(Object3DArray, "~/objects", 10)
        self.pub_structure = self.create_publisher(Object3DArray, "~/structure", 10)
        self.pub_object_points = self.create_publisher(PointCloud2, "~/object_points", qos_profile_sensor_data)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", 10)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", qos_profile_sensor_data)
        self.pub_labels = self.create_publisher(Image, "~/label_image", qos_profile_sensor_data)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self.slot = LatestSlot()
        colour_type, colour_topic = ((CompressedImage, "image/compressed") if self.config.image_transport == "compressed"
                                     else (Image, "image"))
        self.create_subscription(colour_type, colour_topic, lambda m: self._offer(0, m), qos_profile_sensor_data)
        if self.config.use_depth:
            self.sync = ApproximateTimeSynchronizer(3, self.config.sync_queue_size, self.config.sync_slop,
                                                    lambda *msgs: self.slot.put(msgs))
            self.create_subscription(Image, "depth", lambda m: self._offer(1, m), qos_profile_sensor_data)
            self.create_subscription(CameraInfo, "camera_info", lambda m: self._offer(2, m), qos_profile_sensor_data)
        else:
            self.sync = None
        self.create_timer(1.0, self._publish_diagnostics)
        self._running = True
        self.worker = threading.Thread(target=self._work, name="sam_ros_inference", daemon=True)
        self.worker.start()
        self.get_logger().info(f"sam_node ready on {self.segmenter.device} ({self.segmenter.dtype}), "
                               f"prompt_mode={self.config.prompt_mode}, grid_size={self.config.grid_size}")

    def _listen_to_tf(self) -> TransformBuffer:
        """Fill a transform buffer from /tf and /tf_static (QoS as tf2_ros's listener)."""
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            Node.destroy_node(self)
            raise ValueError(f"target_frame {self.config.target_frame!r} needs the tf2_msgs package (ros-$ROS_DISTRO-"
                             "tf2-msgs); without it leave target_frame '' (objects in the camera frame)") from None
        buffer = TransformBuffer()
        dynamic = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        static = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(TFMessage, "/tf", lambda m: self._add_transforms(buffer, m, False), dynamic)
        self.create_subscription(TFMessage, "/tf_static", lambda m: self._add_transforms(buffer, m, True), static)
        return buffer

    def _add_transforms(self, buffer: TransformBuffer, msg, static: bool) -> None:
        for transform in msg.transforms:
            try:
                messages.add_transform(buffer, transform, static)
            except ValueError as error:
                self.counters["bad_transforms"] += 1
                self._warn_throttled(f"ignored a transform: {error}")

    # --- parameters ------------------------------------------------------------------------
    def _declare_parameters(self) -> SamRosConfig:
        values = {}
        for info in fields_info():
            descriptor = ParameterDescriptor(description=info.description, read_only=not info.dynamic)
            if info.choices:
                descriptor.additional_constraints = "one of: " + ", ".join(info.choices)
            if info.type is int and info.low is not None:
                descriptor.integer_range = [IntegerRange(from_value=int(info.low), to_value=int(info.high), step=1)]
            elif info.type is float and info.low is not None:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(info.low),
                                                                      to_value=float(info.high), step=0.0)]
            values[info.name] = self.declare_parameter(info.name, info.default, descriptor).value
        return SamRosConfig.from_mapping(values)

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Validate with the config's own rules; apply to the next frame or refuse with the reason."""
        try:
            config = self.config.replace(**{p.name: p.value for p in parameters})
            self.segmenter.update(config)
        except (ValueError, FileNotFoundError) as error:  # bad value, or no AoP predictor for this model
            return SetParametersResult(successful=False, reason=str(error))
        self.config = config
        return SetParametersResult(successful=True)

    # --- input -----------------------------------------------------------------------------
    def _offer(self, topic: int, msg) -> None:
        self.counters["received"] += 1
        if self.sync is None:
            self.slot.put((msg,))
        else:
            self.sync.add(topic, stamp_ns(msg), msg)

    def _work(self) -> None:
        while self._running:
            item = self.slot.get(timeout=0.2)
            if item is None:
                continue
            try:
                self._process(*item)
            except ValueError as error:  # bad input: counted, logged (throttled), nothing published
                self.counters["rejected_frames"] += 1
                self._warn_throttled(str(error))
            except Exception:  # a bug must not kill the node either; it is logged and counted
                self.counters["errors"] += 1
                self._warn_throttled(traceback.format_exc(), error=True)

    def _warn_throttled(self, text: str, error: bool = False, period_s: float = 5.0) -> None:
        key = text.splitlines()[-1] if text else ""
        now = time.monotonic()
        if now - self._warned_at.get(key, -1e9) >= period_s:
            self._warned_at[key] = now
            (self.get_logger().error if error else self.get_logger().warning)(text)

    # --- one frame -------------------------------------------------------------------------
    def _process(self, image_msg, depth_msg=None, info_msg=None) -> None:
        start = time.perf_counter()
        rgb = compressed_to_rgb(image_msg) if isinstance(image_msg, CompressedImage) else colour_to_rgb(image_msg)
        header = image_msg.header
        depth = camera = camera_to_target = None
        if depth_msg is not None:
            camera = PinholeCamera.from_camera_info(info_msg)
            depth = depth_image(depth_msg)
        if depth is not None and self.tf is not None:
            try:
                camera_to_target = self.tf.lookup(self.config.target_frame, header.frame_id, stamp_ns(image_msg))
            except TransformUnavailable as error:  # masks still go out; objects only in the frame asked for
                self.counters["frames_without_transform"] += 1
                self._warn_throttled(f"objects not published: {error}")
                depth = camera = None
        frame = self.segmenter.run(rgb, depth, camera, camera_to_target)
        result = frame.segmentation
        mask_ids = list(range(1, len(result) + 1))
        parents = [o.parent for o in frame.objects] if frame.objects is not None else None
        self.pub_masks.publish(messages.mask_array(header, result, mask_ids, parents, frame.refined_masks))
        if frame.objects is not None:
            if frame.objects and not any(o.valid for o in frame.objects):
                self.counters["frames_without_valid_depth"] += 1
            in_target = camera_to_target is not None
            objects_header = Header(stamp=header.stamp, frame_id=self.config.target_frame) if in_target else header
            scores = result.predicted_iou.cpu().tolist()
            is_structure = [o.kind == "structure" for o in frame.objects]
            is_object = [not s and (o.parent < 0 or self.config.fuse_parts) for o, s in zip(frame.objects, is_structure)]
            on_objects = [o or (s and self.config.publish_structure) for o, s in zip(is_object, is_structure)]
            objects = messages.object_array(objects_header, frame.objects, frame.track_ids, mask_ids, scores, on_objects)
            structure = messages.object_array(objects_header, frame.objects, frame.track_ids, mask_ids, scores,
                                              is_structure)
            self.pub_objects.publish(objects)
            self.pub_structure.publish(structure)
            if self.pub_object_points.get_subscription_count():
                cloud = frame.object_points
                labels = np.asarray(frame.track_ids, dtype=np.int64)[cloud.index.numpy()]
                self.pub_object_points.publish(messages.labelled_cloud(objects_header, cloud.points.numpy(), labels))
            if self.pub_markers.get_subscription_count():
                shown = messages.object_array(objects_header, frame.objects, frame.track_ids, mask_ids, scores, is_object)
                self.pub_markers.publish(messages.markers(objects_header, shown, MARKER_LIFETIME_S, structure))
        if self.pub_overlay.get_subscription_count() or self.pub_labels.get_subscription_count():
            labels = label_image(result.masks, torch.tensor(frame.track_ids, dtype=torch.int32)).cpu().numpy()
            if self.pub_overlay.get_subscription_count():
                self.pub_overlay.publish(fill_image(Image(), overlay(rgb, labels), "rgb8", header))
            if self.pub_labels.get_subscription_count():
                self.pub_labels.publish(fill_image(Image(), np.minimum(labels, 65535).astype(np.uint16), "16UC1",
                                                   header))
        self.counters["processed"] += 1
        self.last_timings = {**frame.timings_ms, "end_to_end_ms": (time.perf_counter() - start) * 1000}
        self._frame_times = [t for t in self._frame_times if t > time.monotonic() - 5.0] + [time.monotonic()]

    def _publish_diagnostics(self) -> None:
        dropped = self.slot.dropped + (self.sync.evicted if self.sync else 0)
        fps = len(self._frame_times) / 5.0
        problems = self.counters["rejected_frames"] + self.counters["errors"]
        level = DiagnosticStatus.OK if problems == 0 else DiagnosticStatus.WARN
        values = {"fps": f"{fps:.2f}", "device": str(self.segmenter.device), "dtype": str(self.segmenter.dtype),
                  "dropped_frames": dropped, **dict(self.counters),
                  **{k: f"{v:.1f}" for k, v in self.last_timings.items()}}
        header = Header(stamp=self.get_clock().now().to_msg())
        self.pub_diagnostics.publish(messages.diagnostics(header, "sam_ros: sam_node", level,
                                                          "ok" if level == DiagnosticStatus.OK else
                                                          f"{problems} frames rejected", values))

    def destroy_node(self) -> None:
        self._running = False
        self.slot.close()
        self.worker.join(timeout=5.0)
        super().destroy_node()


def main(args=None) -> None:
    rclpy.init(args=args)
    try:
        node = SamNode()
    except (ValueError, FileNotFoundError) as error:  # bad parameters or no checkpoint: say why and exit
        rclpy.logging.get_logger("sam_node").fatal(str(error))
        rclpy.try_shutdown()
        raise SystemExit(1) from error
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
