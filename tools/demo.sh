#!/usr/bin/env bash
# The demo: set up what is needed (venv, ROS messages), then run the real sam_node on the shipped RGB-D
# recording, replayed over DDS inside a private network namespace. Output: demo_output/ (overlays,
# objects.json, top_down.png, summary.txt). Extra arguments go to `python -m sam_ros.ros.demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup_env.sh .venv >/dev/null
source .venv/ros_env.sh
tools/build_ros.sh .ros_ws >/dev/null

exec unshare -n -- bash -c '
  set -e
  ip link set lo up
  source .venv/ros_env.sh
  source .ros_ws/install/setup.bash
  export FASTDDS_DEFAULT_PROFILES_FILE="$PWD/config/fastdds_profile.xml"
  exec python -m sam_ros.ros.demo "$@"' demo "$@"
