"""Helpers for the ROS tests: a background spinner, a polling wait, a service call, and a PointCloud2 reader."""
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


def call_service(client, request, timeout=120.0, resend_every=20.0):
    """One service call, sent again while unanswered: a lost reply is a known DDS race (ros2/rmw_fastrtps#842).

    The server's reply writer may not have matched this client's reader yet when it answers the first request;
    lifecycle managers resend for that reason. Only for requests that are safe to repeat.
    """
    assert client.wait_for_service(timeout_sec=60), f"{client.srv_name} did not appear"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        future = client.call_async(request)
        if wait_for(future.done, timeout=min(resend_every, deadline - time.monotonic())):
            return future.result()
    raise AssertionError(f"{client.srv_name} did not answer in {timeout:.0f} s")


def decode_cloud(msg):
    """A PointCloud2 as a numpy structured array, read by its own field names, offsets and types."""
    types = {PointField.FLOAT32: "f4", PointField.UINT32: "u4"}
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({"names": [f.name for f in msg.fields], "formats": [order + types[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    assert len(msg.data) == msg.row_step * msg.height and msg.row_step == msg.point_step * msg.width
    return np.frombuffer(bytes(msg.data), dtype)
