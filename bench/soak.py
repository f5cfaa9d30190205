"""Soak: a 30 Hz RGB-D stream into the real sam_node process for minutes; memory, latency and diagnostics.

    tools/soak.sh --minutes 10          (sets up the venv, runs this in a private network namespace)
    python bench/soak.py --minutes 10 --rate 30 --grid 8

A camera-like publisher sends rendered colour (rgb8) + 16UC1 depth + CameraInfo at ``--rate`` Hz, stamped
with the time of sending, to ``sam_node`` started as `ros2 run` starts it (shipped model, CPU). It records
the node's resident memory, the latency of each objects message (its receipt minus its frame's stamp),
the rate at which objects arrive, and what /diagnostics says. After the stream it stops sending and
checks that diagnostics report FPS 0 and "no input". Printed: the bars of issue 13 and the CPU flags.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from sam_ros.convert import fill_image
from sam_ros.model import BUNDLED_PARAMS
from sam_ros.msg import Object3DArray
from sam_ros.synthetic.sequence import render_sequence

ROOT = Path(__file__).resolve().parents[1]
NODE = "sam_node"


def cpu_flags() -> str:
    """The CPU model and the SIMD flags that decide CPU inference speed."""
    text = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(f for f in wanted if f in flags)}"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def now_stamp(node) -> Time:
    return node.get_clock().now().to_msg()


def stamp_s(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class Stream:
    """Publishes pre-rendered frames at a fixed rate from its own thread, stamped when sent."""

    def __init__(self, node, frames, rate_hz: float) -> None:
        self.node, self.rate_hz = node, rate_hz
        self.image = node.create_publisher(Image, "soak/image", qos_profile_sensor_data)
        self.depth = node.create_publisher(Image, "soak/depth", qos_profile_sensor_data)
        self.info = node.create_publisher(CameraInfo, "soak/camera_info", qos_profile_sensor_data)
        self.frames = [(f.scene.rgb, f.depth_mm, f.scene.intrinsics) for f in frames]
        self.sent = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            rgb, depth, intrinsics = self.frames[self.sent % len(self.frames)]
            header = Header(stamp=now_stamp(self.node), frame_id="camera_color_optical_frame")
            self.image.publish(fill_image(Image(), rgb, "rgb8", header))
            self.depth.publish(fill_image(Image(), depth, "16UC1", header))
            self.info.publish(CameraInfo(header=header, width=rgb.shape[1], height=rgb.shape[0],
                                         k=intrinsics.K.ravel().tolist(), d=[0.0] * 5, distortion_model="plumb_bob"))
            self.sent += 1
            delay = start + self.sent / self.rate_hz - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def start(self) -> None:
        self.started = time.monotonic()
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()
        self.stopped = time.monotonic()


def start_node(grid: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "sam_ros.ros.node", "--ros-args",
               "--params-file", str(ROOT / "config" / "sam_ros.yaml"), "--params-file", str(BUNDLED_PARAMS),
               "-p", "device:=cpu", "-p", f"grid_size:={grid}",
               "-r", "image:=/soak/image", "-r", "depth:=/soak/depth", "-r", "camera_info:=/soak/camera_info"]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)


def percentile(values, q):
    return float(np.percentile(values, q)) if len(values) else math.nan


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the stream")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate (Hz)")
    parser.add_argument("--grid", type=int, default=8, help="grid_size of the node")
    parser.add_argument("--log", type=Path, default=Path("soak_node.log"), help="the node's own output")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0:
        parser.error("--minutes and --rate must be > 0")

    rclpy.init()
    peer = rclpy.create_node("soak_peer")
    frames = render_sequence(seed=7, n_frames=12)
    stream = Stream(peer, frames, args.rate)
    objects, diagnostics = [], []  # (receipt s, latency s, all values finite) / (receipt s, level, message, fps)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

    def on_objects(msg):
        received = stamp_s(now_stamp(peer))
        finite = all(math.isfinite(v) for o in msg.objects for v in (o.centroid.x, o.centroid.y, o.centroid.z))
        objects.append((time.monotonic(), received - stamp_s(msg.header.stamp), finite))

    def on_diagnostics(msg):
        for status in msg.status:
            if status.name.endswith(f"/{NODE}"):
                values = {v.key: v.value for v in status.values}
                diagnostics.append((time.monotonic(), status.level[0], status.message, float(values["fps"]),
                                    float(values["window_s"])))

    peer.create_subscription(Object3DArray, f"/{NODE}/objects", on_objects, reliable)
    peer.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(peer)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    node = start_node(args.grid, args.log)
    print(f"CPU: {cpu_flags()}; load average at start {os.getloadavg()[0]:.1f}")
    memory = []  # (s since the stream started, RSS MB)
    try:
        deadline = time.monotonic() + 120
        while not diagnostics and time.monotonic() < deadline and node.poll() is None:
            time.sleep(0.5)
        if not diagnostics:
            print(f"sam_node did not come up (exit {node.poll()}); its log: {args.log}")
            return 1
        stream.start()
        end = stream.started + args.minutes * 60
        while time.monotonic() < end and node.poll() is None:
            memory.append((time.monotonic() - stream.started, rss_mb(node.pid)))
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
        stream.stop()
        window = diagnostics[-1][4] if diagnostics else 5.0
        # The frame in flight when the input stops still finishes (one frame's latency later): FPS must read 0
        # once a whole window has passed after the last processed frame.
        last_frame = max([stream.stopped] + [o[0] for o in objects])
        time.sleep(window + 4.0)
        while objects and objects[-1][0] > last_frame and time.monotonic() < stream.stopped + 60:
            last_frame = objects[-1][0]
            time.sleep(window + 4.0)
        alive = node.poll() is None
        after = [d for d in diagnostics if d[0] > last_frame + window + 1.5]
    finally:
        if node.poll() is None:
            node.terminate()
            node.wait(timeout=60)
        executor.shutdown(timeout_sec=5)
        rclpy.try_shutdown()
    report(args, stream, objects, diagnostics, memory, alive, after, node.returncode)
    return 0


def report(args, stream, objects, diagnostics, memory, alive, after, exit_code) -> None:
    duration = stream.stopped - stream.started
    during = [o for o in objects if stream.started + 60 <= o[0] <= stream.stopped]  # after a minute of warm-up
    latencies = [o[1] * 1000 for o in during]
    true_fps = (len(during) - 1) / (during[-1][0] - during[0][0]) if len(during) > 1 else 0.0
    # each diagnostics FPS against the objects that really arrived in the same trailing window
    errors = []
    for t, _, _, fps, window in diagnostics:
        if stream.started + 60 <= t <= stream.stopped:
            arrived = [o[0] for o in objects if t - window < o[0] <= t]
            if len(arrived) > 1:
                truth = (len(arrived) - 1) / (arrived[-1] - arrived[0])
                errors.append(abs(fps - truth) / truth)
    # RSS moves by hundreds of MB between samples (the allocator hands freed frames back in bursts): compare
    # the median of minute 2 with the median of the last minute, and give the peak
    minute_2 = [mb for s, mb in memory if 120 <= s < 180]
    last = [mb for s, mb in memory if s >= duration - 60]
    growth = (np.median(last) - np.median(minute_2)) / np.median(minute_2) * 100 if minute_2 and last else math.nan
    per_minute = [f"{np.median([mb for s, mb in memory if m * 60 <= s < (m + 1) * 60]):.0f}"
                  for m in range(int(duration // 60)) if any(m * 60 <= s < (m + 1) * 60 for s, _ in memory)]
    levels = [d[1] for d in diagnostics if stream.started + 60 <= d[0] <= stream.stopped]
    print(f"stream: {stream.sent} frames in {duration / 60:.1f} min ({stream.sent / duration:.1f} Hz sent; asked "
          f"{args.rate:g} Hz), grid {args.grid}, shipped model, CPU; load average at end {os.getloadavg()[0]:.1f}")
    print(f"node alive at the end: {alive} (exit code after SIGTERM: {exit_code})")
    print(f"objects messages: {len(objects)} ({true_fps:.2f} per s after the first minute); non-finite centroids: "
          f"{sum(not o[2] for o in objects)}")
    print(f"RSS median per minute (MB): {' '.join(per_minute)}; peak {max(mb for _, mb in memory):.0f} MB; "
          f"last minute vs minute 2: {growth:+.1f}% (bar < 10%)")
    print(f"latency stamp -> objects received: p50 {percentile(latencies, 50):.0f} ms, p95 "
          f"{percentile(latencies, 95):.0f} ms, max {max(latencies, default=math.nan):.0f} ms")
    print(f"diagnostics FPS vs objects really received in the same window: median error "
          f"{percentile(errors, 50) * 100:.1f}%, {np.mean(np.array(errors) <= 0.10) * 100:.0f}% of "
          f"{len(errors)} reports within 10%; levels while streaming: "
          f"{ {['OK', 'WARN', 'ERROR'][level]: levels.count(level) for level in sorted(set(levels))} }")
    print(f"after input stopped: {len(after)} reports, FPS {[d[3] for d in after]}, "
          f"messages {sorted({d[2] for d in after})}")


if __name__ == "__main__":
    raise SystemExit(main())
