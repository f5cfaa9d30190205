#!/usr/bin/env bash
# The soak test (not part of the suite): bench/soak.py against the real node, in a private network
# namespace, with the Fast DDS profile the launch file uses. Arguments go to bench/soak.py.
#   tools/soak.sh --minutes 10 --rate 30
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup_env.sh .venv >/dev/null
(source .venv/ros_env.sh && tools/build_ros.sh .ros_ws >/dev/null)
exec unshare -n -- bash -c '
  set -e
  ip link set lo up
  source .venv/ros_env.sh
  source .ros_ws/install/setup.bash
  export FASTDDS_DEFAULT_PROFILES_FILE="$PWD/config/fastdds_profile.xml"
  exec python bench/soak.py "$@"' soak "$@"
