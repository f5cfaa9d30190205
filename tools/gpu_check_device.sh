#!/usr/bin/env bash
# bench/gpu_check.py on a borrowed GPU machine: PyTorch, NumPy, OpenCV, SciPy, PyYAML and Pillow are there,
# the network and this project's venv are not. The reference MobileSAM (a test dependency, pure Python)
# travels as wheels in .whl/ (git-ignored): fetch them here first with `tools/gpu_check_device.sh --fetch`,
# then carry .whl. There: tools/gpu_check_device.sh [gpu_check.py arguments]; the log goes to $OUT too.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--fetch" ]]; then
  grep -E '^(segment-anything|mobilesam-mirror)==' requirements/reference.txt \
    | xargs python3 -m pip download -q --no-deps --only-binary=:all: -d .whl
  ls .whl
  exit
fi
site="$(mktemp -d)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
export PYTHONPATH="$site" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
python3 bench/gpu_check.py "$@" 2>&1 | tee "${OUT:-$site}/gpu_check.log"
