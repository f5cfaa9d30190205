#!/usr/bin/env bash
# The soak test (not part of the suite): bench/soak.py against the real node, in a private network
# namespace, with the Fast DDS profile the launch file uses. Arguments go to bench/soak.py.
#   tools/soak.sh --minutes 10 --rate 30
set -euo pipefail
exec "$(dirname "$0")/in_ros_namespace.sh" python bench/soak.py "$@"
