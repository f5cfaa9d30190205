#!/usr/bin/env bash
# The project's test command. Sets up the venv if needed, builds the ROS messages with colcon, then runs
# the whole suite inside a private network namespace, so that no DDS traffic leaves this machine.
# Extra arguments go to pytest (e.g. tools/run_tests.sh test/test_config.py -x).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup_env.sh .venv
source .venv/ros_env.sh
if [ -x tools/build_ros.sh ]; then tools/build_ros.sh .ros_ws; fi

exec unshare -n -- bash -c '
  set -e
  ip link set lo up
  source .venv/ros_env.sh
  if [ -f .ros_ws/install/setup.bash ]; then source .ros_ws/install/setup.bash; fi
  export FASTDDS_DEFAULT_PROFILES_FILE="$PWD/config/fastdds_profile.xml"
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
  exec python -m pytest "$@"' run_tests "$@"
