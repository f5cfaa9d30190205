"""Helpers for the ROS tests: a background spinner, a polling wait, and a PointCloud2 reader."""
import threading
import time

import numpy as np
from rclpy.executors import MultiThreadedExecutor
from sensor_msgs.msg import PointField


class Spinner:
    """An executor spinning its nodes in a background thread for the duration of a test."""

    def __init__(self, *nodes):
        self.executor = MultiThreadedExecutor(num_threads=4)
        for node in nodes:
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def stop(self):
        self.executor.shutdown(timeout_sec=5)
        self.thread.join(timeout=5)


def wait_for(condition, timeout=60.0, interval=0.05, action=None, action_every=2.0):
    """Poll ``condition`` until true or ``timeout``; call ``action`` (e.g. re-publish) every ``action_every`` s."""
    deadline = time.monotonic() + timeout
    next_action = time.monotonic()
    while time.monotonic() < deadline:
        if condition():
            return True
        if action is not None and time.monotonic() >= next_action:
            action()
            next_action = time.monotonic() + action_every
        time.sleep(interval)
    return condition()


def decode_cloud(msg):
    """A PointCloud2 as a numpy structured array, read by its own field names, offsets and types."""
    types = {PointField.FLOAT32: "f4", PointField.UINT32: "u4"}
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({"names": [f.name for f in msg.fields], "formats": [order + types[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    assert len(msg.data) == msg.row_step * msg.height and msg.row_step == msg.point_step * msg.width
    return np.frombuffer(bytes(msg.data), dtype)
