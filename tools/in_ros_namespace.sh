#!/usr/bin/env bash
# Run a command with the Kilted venv and the built messages, inside a private network namespace (all DDS
# traffic stays on this machine's loopback), with the Fast DDS profile the launch file uses. Sets up the
# venv and builds the messages first. Used by the demo and the soak: tools/in_ros_namespace.sh CMD ARGS...
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
  exec "$@"' in_ros_namespace "$@"
