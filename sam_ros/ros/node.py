"""sam_node: colour + aligned depth + CameraInfo in; masks, 3D objects, their points, markers, overlay out.

A lifecycle node (as Nav2, ros2_control and yolo_ros are): configure validates the parameters, loads
the model and (the first time) makes the publishers and subscriptions; activate starts taking input, the
inference thread and output; deactivate stops all three but keeps the model; cleanup frees it. ``autostart`` (default true) runs configure + activate at start-up
so ``ros2 run`` just works. The node only adapts messages to the core and back. Matched frames go through
a one-slot hand-off to the inference thread, so a slow frame makes the node skip camera frames (counted
as drops) instead of queueing them: it never lags behind its camera. Each frame is processed with one
snapshot of the configuration: a parameter change applies from the next frame, all at once.
"""
from __future__ import annotations

import gc
import sys
import threading
import time
import traceback
from collections import Counter

import numpy as np
import rclpy
import torch
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from sam_ros.msg import MaskArray, Object3DArray

from ..allocator import return_large_blocks_to_os
from ..camera import PinholeCamera
from ..config import SamRosConfig, fields_info
from ..convert import colour_to_rgb, compressed_to_rgb, depth_image, fill_image
from ..diagnostics import FrameStats, health
from ..masks import label_image
from ..pipeline import Segmenter
from ..sync import ApproximateTimeSynchronizer, LatestSlot
from ..transforms import TransformBuffer, TransformUnavailable
from ..visualize import overlay
from . import messages
from .messages import stamp_ns

MARKER_LIFETIME_S = 1.0
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def qos(reliability: str, depth: int) -> QoSProfile:
    """A volatile keep-last profile from the config's reliability name."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE,
                      reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else
                      ReliabilityPolicy.BEST_EFFORT)


class SamNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("sam_node", **kwargs)
        self.parameter_problem: str | None = None  # a bad params file: every configure fails with it
        self.config = self._declare_parameters()
        self.counters: Counter[str] = Counter()
        self.stats = FrameStats(self.config.diagnostics_window_s)
        self.last_timings: dict[str, float] = {}
        self._warned_at: dict[str, float] = {}
        self.segmenter: Segmenter | None = None
        self.tf: TransformBuffer | None = None
        self.slot, self.sync, self.worker = LatestSlot(), None, None
        self._publishers_made: list = []
        self._active = False  # input is processed only while active
        self._stop = threading.Event()
        self.finalized = False  # after the shutdown transition: main() ends the process
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # --- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate the parameters and load the model; on failure say why and stay unconfigured."""
        try:
            if self.parameter_problem:
                raise ValueError(self.parameter_problem)
            self.segmenter = Segmenter(self.config)
            if self.config.target_frame and self.tf is None:
                self.tf = self._listen_to_tf()
        except Exception as error:  # noqa: BLE001  every start-up failure is one line, never a traceback
            self.segmenter = None
            self.get_logger().error(f"configure failed: {_one_line(error)}")
            return FAILURE
        if not self._publishers_made:  # made once: entities destroyed while an executor spins can stall it (Jazzy)
            self._make_publishers()
            self._subscribe()
            self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f"configured: model on {self.segmenter.device} ({self.segmenter.dtype}), "
                               f"prompt_mode={self.config.prompt_mode}, grid_size={self.config.grid_size}")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Lifecycle publishers enabled, then subscriptions, the inference thread and the diagnostics timer on."""
        enabled = super().on_activate(state)
        self.stats = FrameStats(self.config.diagnostics_window_s)
        self.slot = LatestSlot()
        if self.sync is not None:
            self.sync = ApproximateTimeSynchronizer(3, self.config.sync_queue_size, self.config.sync_slop,
                                                    self._hand_off)
        self._stop.clear()
        self.worker = threading.Thread(target=self._work, name="sam_ros_inference", daemon=True)
        self.worker.start()
        self._active = True
        self.get_logger().info("active")
        return enabled

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """No processing, no output; the model stays loaded."""
        self._stop_processing()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        self.finalized = True
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition from {state.label} failed; processing stopped, model freed")
        self._stop_processing()
        self._release()
        return SUCCESS

    def autostart(self) -> bool:
        """configure + activate, as a lifecycle manager would; False when either fails."""
        return self.trigger_configure() == SUCCESS and self.trigger_activate() == SUCCESS

    def _make_publishers(self) -> None:
        c = self.config
        results, images, points = (qos(c.qos_results_reliability, c.qos_results_depth),
                                   qos(c.qos_images_reliability, c.qos_images_depth),
                                   qos(c.qos_points_reliability, c.qos_points_depth))
        self.pub_masks = self.create_lifecycle_publisher(MaskArray, "~/masks", results)
        self.pub_objects = self.create_lifecycle_publisher(Object3DArray, "~/objects", results)
        self.pub_structure = self.create_lifecycle_publisher(Object3DArray, "~/structure", results)
        self.pub_markers = self.create_lifecycle_publisher(MarkerArray, "~/markers", results)
        self.pub_object_points = self.create_lifecycle_publisher(PointCloud2, "~/object_points", points)
        self.pub_overlay = self.create_lifecycle_publisher(Image, "~/overlay", images)
        self.pub_labels = self.create_lifecycle_publisher(Image, "~/label_image", images)
        self.pub_diagnostics = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        self._publishers_made = [self.pub_masks, self.pub_objects, self.pub_structure, self.pub_markers,
                                 self.pub_object_points, self.pub_overlay, self.pub_labels, self.pub_diagnostics]

    def _subscribe(self) -> None:
        c = self.config
        inputs = qos(c.qos_input_reliability, c.qos_input_depth)
        colour_type, colour_topic = ((CompressedImage, "image/compressed") if c.image_transport == "compressed"
                                     else (Image, "image"))
        self.create_subscription(colour_type, colour_topic, lambda m: self._offer(0, m), inputs)
        if c.use_depth:
            self.sync = ApproximateTimeSynchronizer(3, c.sync_queue_size, c.sync_slop, self._hand_off)
            self.create_subscription(Image, "depth", lambda m: self._offer(1, m), inputs)
            self.create_subscription(CameraInfo, "camera_info", lambda m: self._offer(2, m), inputs)

    def _stop_processing(self) -> None:
        """Input ignored from now on; the inference thread finishes its frame and ends."""
        self._active = False
        self._stop.set()
        self.slot.close()
        if self.worker is not None:
            self.worker.join(timeout=60.0)
            self.worker = None

    def _release(self) -> None:
        """The model goes; on a GPU its memory goes back to the driver."""
        on_gpu = self.segmenter is not None and self.segmenter.device.type == "cuda"
        self.segmenter = None
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()

    def _listen_to_tf(self) -> TransformBuffer:
        """Fill a transform buffer from /tf and /tf_static (QoS as tf2_ros's listener)."""
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
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
        """Declare every config field; a bad value from a params file or -p becomes ``parameter_problem``.

        Numbers are typed dynamically so that ``1`` in a params file is accepted for a float field (the
        config converts it losslessly); every other type mismatch and range violation is reported once,
        with the parameter's name, and the parameter keeps its default.
        """
        values, problems = {}, []
        for info in fields_info():
            descriptor = ParameterDescriptor(description=info.description, read_only=not info.dynamic,
                                             dynamic_typing=info.type is float)
            if info.choices:
                descriptor.additional_constraints = "one of: " + ", ".join(info.choices)
            if info.type is int and info.low is not None:
                descriptor.integer_range = [IntegerRange(from_value=int(info.low), to_value=int(info.high), step=1)]
            elif info.type is float and info.low is not None:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(info.low),
                                                                      to_value=float(info.high), step=0.0)]
            try:
                values[info.name] = self.declare_parameter(info.name, info.default, descriptor).value
            except ParameterException as error:
                problems.append(str(error))
                values[info.name] = self.declare_parameter(info.name, info.default, descriptor,
                                                           ignore_override=True).value
        try:
            config = SamRosConfig.from_mapping(values)
        except ValueError as error:
            problems.append(str(error))
            config = SamRosConfig()
        if problems:
            self.parameter_problem = ("invalid parameter: " + "; ".join(problems) +
                                      " (fix the params file or -p value; ranges: config/sam_ros.yaml)")
            return config
        floats = [Parameter(info.name, value=getattr(config, info.name)) for info in fields_info()
                  if info.type is float and not isinstance(values[info.name], float)]
        if floats:  # store what the node uses: 1 -> 1.0
            self.set_parameters(floats)
        return config

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Validate with the config's own rules; the next frame applies the change, all of it at once."""
        try:
            config = self.config.replace(**{p.name: p.value for p in parameters})
            if self.segmenter is not None:
                self.segmenter.check(config)  # e.g. a new aop_checkpoint: loaded (or refused) now
        except Exception as error:  # noqa: BLE001  bad value, no AoP predictor, unreadable predictor file
            return SetParametersResult(successful=False, reason=_one_line(error))
        self.config = config
        return SetParametersResult(successful=True)

    # --- input -----------------------------------------------------------------------------
    def _offer(self, topic: int, msg) -> None:
        if not self._active:
            return
        self.counters["received"] += 1
        self.stats.record("received")
        if self.sync is None:
            self._hand_off(msg)
        else:
            evicted = self.sync.evicted
            self.sync.add(topic, stamp_ns(msg), msg)
            if self.sync.evicted > evicted:
                self.stats.record("dropped", self.sync.evicted - evicted)

    def _hand_off(self, *msgs) -> None:
        """A matched frame to the inference thread; one still waiting there is replaced (a drop)."""
        self.stats.record("matched")
        dropped = self.slot.dropped
        self.slot.put(msgs)
        if self.slot.dropped > dropped:
            self.stats.record("dropped")

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.slot.get(timeout=0.2)
            if item is None:
                continue
            config = self.config  # one snapshot for the whole frame; changes apply from the next one
            try:
                if config is not self.segmenter.config:
                    self.segmenter.update(config)
                self._process(config, *item)
            except ValueError as error:  # bad input: counted, logged (throttled), nothing published
                self.counters["rejected_frames"] += 1
                self.stats.record("rejected")
                self._warn_throttled(str(error))
            except Exception:  # a bug must not kill the node either; it is logged and counted
                self.counters["errors"] += 1
                self.stats.record("errors")
                self._warn_throttled(traceback.format_exc(), error=True)

    def _warn_throttled(self, text: str, error: bool = False, period_s: float = 5.0) -> None:
        key = text.splitlines()[-1] if text else ""
        now = time.monotonic()
        if now - self._warned_at.get(key, -1e9) >= period_s:
            self._warned_at[key] = now
            (self.get_logger().error if error else self.get_logger().warning)(text)

    # --- one frame -------------------------------------------------------------------------
    def _process(self, config: SamRosConfig, image_msg, depth_msg=None, info_msg=None) -> None:
        start = time.perf_counter()
        rgb = compressed_to_rgb(image_msg) if isinstance(image_msg, CompressedImage) else colour_to_rgb(image_msg)
        header = image_msg.header
        depth = camera = camera_to_target = None
        if depth_msg is not None:
            camera = PinholeCamera.from_camera_info(info_msg)
            depth = depth_image(depth_msg)
        if depth is not None and self.tf is not None:
            try:
                camera_to_target = self.tf.lookup(config.target_frame, header.frame_id, stamp_ns(image_msg))
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
            objects_header = Header(stamp=header.stamp, frame_id=config.target_frame) if in_target else header
            scores = result.predicted_iou.cpu().tolist()
            is_structure = [o.kind == "structure" for o in frame.objects]
            is_object = [not s and (o.parent < 0 or config.fuse_parts) for o, s in zip(frame.objects, is_structure)]
            on_objects = [o or (s and config.publish_structure) for o, s in zip(is_object, is_structure)]
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
        self.stats.record_latency(self.last_timings["end_to_end_ms"])

    def _publish_diagnostics(self) -> None:
        """Level, FPS, rates and latency of the recent window; cumulative counters as values."""
        if not self._active:
            return
        summary = self.stats.summary()
        level, message = health(summary, self.config.no_input_warn_s)
        window = {f"{kind}_in_window": count for kind, count in summary.counts.items()}
        latency = {name: f"{value:.1f}" for name, value in (("latency_p50_ms", summary.latency_p50_ms),
                                                            ("latency_p95_ms", summary.latency_p95_ms),
                                                            ("latency_max_ms", summary.latency_max_ms))
                   if value is not None}
        values = {"fps": f"{summary.fps:.2f}", "window_s": f"{summary.window_s:g}",
                  "seconds_since_input": "never" if summary.since_input_s is None else f"{summary.since_input_s:.1f}",
                  **window, **latency,
                  "device": str(self.segmenter.device), "dtype": str(self.segmenter.dtype),
                  "dropped_frames": self.slot.dropped + (self.sync.evicted if self.sync else 0), **dict(self.counters),
                  **{k: f"{v:.1f}" for k, v in self.last_timings.items()}}
        header = Header(stamp=self.get_clock().now().to_msg())
        name = f"sam_ros: {self.get_fully_qualified_name()}"
        self.pub_diagnostics.publish(messages.diagnostics(header, name, bytes([level]), message, values))

    def destroy_node(self) -> None:
        self._stop_processing()
        self._release()
        for publisher in self._publishers_made:
            self.destroy_lifecycle_publisher(publisher)
        self._publishers_made = []
        super().destroy_node()


def _one_line(error: BaseException) -> str:
    """An exception as the single line a user reads: its text, or its type when it has none."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _unreadable_params_file(args: list[str]) -> str | None:
    """Why a ``--params-file`` argument cannot be read, checked before rcl (which logs its own error first)."""
    for flag, path in zip(args, args[1:]):
        if flag == "--params-file":
            try:
                with open(path, encoding="utf-8") as stream:
                    yaml.safe_load(stream)
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
                return f"params file {path}: {_one_line(error)}"
    return None


def main(args=None) -> None:
    """``ros2 run sam_ros sam_node``: exit 1 with one log line when the node cannot start."""
    problem = _unreadable_params_file(sys.argv if args is None else args)
    if problem:
        print(f"[FATAL] [sam_node]: cannot start ROS: {problem}", file=sys.stderr)
        raise SystemExit(1)
    try:
        rclpy.init(args=args)
    except Exception as error:  # noqa: BLE001  e.g. an unreadable params file: rcl says which and why
        print(f"[FATAL] [sam_node]: cannot start ROS: {_one_line(error)}", file=sys.stderr)
        raise SystemExit(1) from None
    return_large_blocks_to_os()  # a node runs for hours: freed frame-sized buffers go back to the OS
    node = SamNode()
    code = 0
    try:
        if node.get_parameter("autostart").value and not node.autostart():
            code = 1  # configure or activate logged why
        else:
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            while rclpy.ok() and not node.finalized:
                executor.spin_once(timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
