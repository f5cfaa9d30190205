#!/usr/bin/env bash
# The demo: set up what is needed (venv, ROS messages), then run the real sam_node on the shipped RGB-D
# recording, replayed over DDS inside a private network namespace. Output: demo_output/ (overlays,
# objects.json, top_down.png, summary.txt). Extra arguments go to `python -m sam_ros.ros.demo`.
set -euo pipefail
exec "$(dirname "$0")/in_ros_namespace.sh" python -m sam_ros.ros.demo "$@"
