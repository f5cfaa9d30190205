#!/usr/bin/env bash
# The project's test command. Sets up the venvs if needed, builds the ROS package with colcon, then runs
# the suite inside a private network namespace, so that no DDS traffic leaves this machine:
#   ROS 2 Kilted (.venv, .ros_ws):              the whole suite (core + test/ros)
#   ROS 2 Jazzy  (.venv-jazzy, .ros_ws-jazzy):  the ROS suite (test/ros) again; the core has no ROS in it
# Extra arguments go to pytest (e.g. tools/run_tests.sh test/test_config.py -x); Jazzy then runs only
# the paths under test/ros among them. SAM_ROS_DISTROS="kilted" (or "jazzy") runs one distro only.
set -euo pipefail
cd "$(dirname "$0")/.."
DISTROS=${SAM_ROS_DISTROS:-kilted jazzy}

# The Jazzy pass: test/ros, or the given paths under it; options are passed on as they are.
jazzy_args=() paths=0 ros_paths=0
for arg in "$@"; do
  if [[ $arg != -* && -e ${arg%%::*} ]]; then
    paths=$((paths + 1))
    [[ $arg == test/ros* ]] && { ros_paths=$((ros_paths + 1)); jazzy_args+=("$arg"); }
  else
    jazzy_args+=("$arg")
  fi
done
[ "$paths" -eq 0 ] && jazzy_args+=(test/ros)
if [ "$paths" -gt 0 ] && [ "$ros_paths" -eq 0 ]; then DISTROS=${DISTROS//jazzy/}; fi

prepare() {  # prepare DISTRO VENV WS
  tools/setup_env.sh --distro "$1" "$2"
  (source "$2/ros_env.sh" && tools/build_ros.sh "$3")
}
run() {  # run VENV WS PYTEST_ARGS...: pytest inside a private network namespace
  local venv=$1 ws=$2; shift 2
  unshare -n -- bash -c '
    set -e
    ip link set lo up
    source "$1/ros_env.sh"
    if [ -f "$2/install/setup.bash" ]; then source "$2/install/setup.bash"; fi
    export FASTDDS_DEFAULT_PROFILES_FILE="$PWD/config/fastdds_profile.xml"
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
    shift 2
    exec python -m pytest "$@"' run_tests "$venv" "$ws" "$@"
}

status=0
for distro in $DISTROS; do
  case $distro in
    kilted) prepare kilted .venv .ros_ws ;;
    jazzy) prepare jazzy .venv-jazzy .ros_ws-jazzy ;;
    *) echo "error: unknown distro '$distro' in SAM_ROS_DISTROS (kilted, jazzy)" >&2; exit 1 ;;
  esac
done
for distro in $DISTROS; do
  SECONDS=0 rc=0
  echo "=== ROS 2 $distro ==="
  case $distro in
    kilted) run .venv .ros_ws "$@" || rc=$? ;;
    jazzy) run .venv-jazzy .ros_ws-jazzy "${jazzy_args[@]}" || rc=$? ;;
  esac
  echo "=== ROS 2 $distro: exit $rc after $SECONDS s ==="
  [ "$rc" -eq 0 ] || status=$rc
done
exit $status
