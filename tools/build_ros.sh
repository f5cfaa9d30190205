#!/usr/bin/env bash
# Build this repository's ROS 2 package (messages + Python code) with colcon into a workspace folder.
# Needs the ROS venv active (source .venv/ros_env.sh). Usage: tools/build_ros.sh [WS_DIR=.ros_ws]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WS=$(mkdir -p "${1:-$ROOT/.ros_ws}" && cd "${1:-$ROOT/.ros_ws}" && pwd)
mkdir -p "$WS/src"
ln -sfn "$ROOT" "$WS/src/sam_ros"
# target_frame needs tf2_msgs/TFMessage, which every ROS 2 install has but PyPI does not. Where it is
# missing (a venv from PyPI wheels), build the same interface here: identical definition, so it talks
# to real /tf publishers. Never part of this repository's own package set.
if ! python -c "import tf2_msgs.msg" 2>/dev/null; then
  mkdir -p "$WS/src/tf2_msgs/msg"
  echo "geometry_msgs/TransformStamped[] transforms" > "$WS/src/tf2_msgs/msg/TFMessage.msg"
  cat > "$WS/src/tf2_msgs/package.xml" <<'XML'
<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.0.0</version>
  <description>TFMessage only, built by sam_ros/tools/build_ros.sh where ROS 2's tf2_msgs is not installed.</description>
  <maintainer email="sam_ros@example.com">sam_ros</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
XML
  cat > "$WS/src/tf2_msgs/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
CMAKE
fi
cd "$WS"
colcon build --symlink-install --event-handlers console_direct- --cmake-args -DBUILD_TESTING=OFF >"$WS/build.log" 2>&1 || {
  tail -40 "$WS/build.log" >&2; echo "error: colcon build failed (full log: $WS/build.log)" >&2; exit 1; }
echo "[build] colcon build of sam_ros in $WS: $SECONDS s (source $WS/install/setup.bash)"
