"""sam_node while it runs: QoS that reaches reliable subscribers, diagnostics that follow the input, and one
configuration per frame."""
import shutil
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from rosutil import Spinner, wait_for
from sam_ros.model import BUNDLED_CHECKPOINT
from sam_ros.prompts import predictor_beside
from sam_ros.ros.node import SamNode
from sam_ros.synthetic import to_16uc1_mm
from test_node import Camera, bundled_model_parameters, header_ns, known_scene

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def started(namespace, **parameters):
    node = SamNode(namespace=namespace, parameter_overrides=bundled_model_parameters(grid_size=8, **parameters))
    assert node.autostart()
    return node


def test_reliable_input_and_a_reliable_overlay_subscriber(ros):
    scene = known_scene()
    node = started("qos", qos_input_reliability="reliable")
    camera = Camera(namespace="qos")
    overlays, labels = {}, {}
    camera.node.create_subscription(Image, "sam_node/overlay", lambda m: overlays.__setitem__(header_ns(m.header), m),
                                    RELIABLE)
    camera.node.create_subscription(Image, "sam_node/label_image", lambda m: labels.__setitem__(header_ns(m.header), m),
                                    RELIABLE)
    best_effort_image = camera.image
    camera.image = camera.node.create_publisher(Image, "image", RELIABLE)
    camera.depth = camera.node.create_publisher(Image, "depth", RELIABLE)
    camera.info = camera.node.create_publisher(CameraInfo, "camera_info", RELIABLE)
    spinner = Spinner(node, camera.node)
    try:
        # a reliable subscription matches the reliable publishers, not the best-effort camera's
        assert wait_for(lambda: camera.image.get_subscription_count() == 1, timeout=30)
        assert best_effort_image.get_subscription_count() == 0
        header = camera.next_header()
        assert wait_for(lambda: header_ns(header) in overlays and header_ns(header) in labels, timeout=120,
                        action=camera.send(scene.rgb, to_16uc1_mm(scene.depth), "16UC1", scene, header),
                        action_every=10)
        overlay = overlays[header_ns(header)]
        assert (overlay.height, overlay.width, overlay.encoding) == (480, 640, "rgb8")
    finally:
        spinner.stop()
        node.destroy_node()
        camera.node.destroy_node()


def status_of(message, name="sam_ros: /diagnostics_test/sam_node"):
    for status in message.status:
        if status.name == name:
            return status.level[0], status.message, {v.key: v.value for v in status.values}
    return None


def test_diagnostics_follow_the_input_and_forget_old_trouble(ros):
    scene = known_scene()
    node = started("diagnostics_test", diagnostics_window_s=3.0, no_input_warn_s=1.5)
    camera = Camera(namespace="diagnostics_test")
    reports = []
    camera.node.create_subscription(DiagnosticArray, "/diagnostics",
                                    lambda m: reports.append(status_of(m)) if status_of(m) else None, RELIABLE)
    spinner = Spinner(node, camera.node)
    depth = to_16uc1_mm(scene.depth)

    def stream(seconds, rate_hz=5.0, bad=False):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            header = camera.next_header()
            camera.send(scene.rgb, depth, "16UC1", scene, header, info_k=[0.0] * 9 if bad else None)()
            time.sleep(1.0 / rate_hz)

    try:
        assert wait_for(lambda: any("no input yet" in r[1] for r in reports), timeout=30)
        stream(2.0, bad=True)  # CameraInfo with K all zero: rejected
        assert wait_for(lambda: node.counters["rejected_frames"] > 0, timeout=30)
        stream(1.0)
        assert wait_for(lambda: any(r[0] == 1 and "rejected" in r[1] for r in reports), timeout=30)
        streaming = threading.Thread(target=stream, args=(12.0,))
        streaming.start()
        # once the rejected frames have left the window, the level is OK again while frames go through
        assert wait_for(lambda: reports[-1][0] == 0 and float(reports[-1][2]["fps"]) > 0, timeout=60), reports[-3:]
        assert int(reports[-1][2]["rejected_frames"]) >= 1  # the cumulative counter stays, as a value
        streaming.join()
        assert wait_for(lambda: reports[-1][1].startswith("no input for") and reports[-1][2]["fps"] == "0.00",
                        timeout=30), reports[-3:]
        level, message, values = reports[-1]
        assert level == 1 and float(values["seconds_since_input"]) >= 1.5 and "latency_p95_ms" not in values
    finally:
        spinner.stop()
        node.destroy_node()
        camera.node.destroy_node()


def test_a_frame_never_mixes_settings_and_a_new_aop_checkpoint_reloads(ros, tmp_path):
    scene = known_scene()
    node = started("snapshot")
    camera = Camera(namespace="snapshot")
    spinner = Spinner(node, camera.node)
    frames = []  # per frame: the snapshot it started with, then the config each stage saw
    process = node._process

    def recorded_process(config, *msgs):
        frames.append([config])
        return process(config, *msgs)

    def recorder(stage):
        def run(*args, **kwargs):
            frames[-1].append(node.segmenter.config)
            return stage(*args, **kwargs)
        return run

    node._process = recorded_process
    for name in ("segment_encoded", "_filter", "_to_frame", "_scene"):
        setattr(node.segmenter, name, recorder(getattr(node.segmenter, name)))
    changing = threading.Event()

    def change_settings():
        for i in range(100_000):
            if changing.is_set():
                return
            node.set_parameters([Parameter("pred_iou_thresh", value=0.6 + 0.01 * (i % 2)),
                                 Parameter("min_area", value=400 + i % 7)])
            time.sleep(0.002)

    changer = threading.Thread(target=change_settings)
    changer.start()
    try:
        for _ in range(4):
            header = camera.next_header()
            assert wait_for(lambda: header_ns(header) in camera.objects, timeout=120,
                            action=camera.send(scene.rgb, to_16uc1_mm(scene.depth), "16UC1", scene, header),
                            action_every=10)
    finally:
        changing.set()
        changer.join()
    try:
        finished = [f for f in frames if len(f) == 5]
        assert len(finished) >= 4
        for snapshot, *seen in finished:
            assert all(config is snapshot for config in seen), "a frame mixed two configurations"
        assert len({(f[0].pred_iou_thresh, f[0].min_area) for f in finished}) > 1, "settings never changed"

        # with AoP prompts, a new aop_checkpoint is loaded when set (or refused with the reason), and used from
        # the next frame
        copy = tmp_path / "renamed_aop.pt"
        shutil.copy(predictor_beside(BUNDLED_CHECKPOINT), copy)
        assert node.set_parameters([Parameter("prompt_mode", value="aop")])[0].successful  # the shipped predictor
        refused = node.set_parameters([Parameter("aop_checkpoint", value=str(tmp_path / "missing.pt"))])[0]
        assert not refused.successful and "not found" in refused.reason
        (tmp_path / "corrupt.pt").write_bytes(b"\0" * 64)
        assert not node.set_parameters([Parameter("aop_checkpoint", value=str(tmp_path / "corrupt.pt"))])[0].successful
        assert node.set_parameters([Parameter("aop_checkpoint", value=str(copy))])[0].successful
        header = camera.next_header()
        assert wait_for(lambda: header_ns(header) in camera.objects, timeout=120,
                        action=camera.send(scene.rgb, to_16uc1_mm(scene.depth), "16UC1", scene, header),
                        action_every=10)
        assert node.segmenter._predictor[0] == str(copy)
        assert type(node.segmenter.strategy).__name__ == "AoPPrompts"
    finally:
        spinner.stop()
        node.destroy_node()
        camera.node.destroy_node()
