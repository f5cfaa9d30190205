"""Fixtures for tests against a real ROS 2 (rclpy + Fast DDS).

tools/run_tests.sh runs them inside a private network namespace with the colcon-built messages on the
path; a missing rclpy or sam_ros.msg is an import error here, i.e. a failing run, never a silent skip.
"""
import pytest
import rclpy

import sam_ros.msg  # noqa: F401  (built by tools/build_ros.sh)


@pytest.fixture(scope="session")
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()
