#!/usr/bin/env bash
# Build this repository's ROS 2 package (messages + Python code) with colcon into a workspace folder.
# Needs the ROS venv active (source .venv/ros_env.sh). Usage: tools/build_ros.sh [WS_DIR=.ros_ws]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WS=$(mkdir -p "${1:-$ROOT/.ros_ws}" && cd "${1:-$ROOT/.ros_ws}" && pwd)
mkdir -p "$WS/src"
ln -sfn "$ROOT" "$WS/src/sam_ros"
cd "$WS"
colcon build --symlink-install --event-handlers console_direct- --cmake-args -DBUILD_TESTING=OFF >"$WS/build.log" 2>&1 || {
  tail -40 "$WS/build.log" >&2; echo "error: colcon build failed (full log: $WS/build.log)" >&2; exit 1; }
echo "built: source $WS/install/setup.bash"
