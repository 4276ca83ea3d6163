#!/usr/bin/env bash
# Every check that needs a CUDA device, in one run: the CUDA tests and the GPU benchmarks.
# Usage: scripts/gpu_check.sh            (writes its logs to $OUT, or to ./gpu_check/)
# The figures it prints go to docs/performance.md with the device and the date.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"
mkdir -p "$out"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA device')" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
status=0
run() {  # name, command...: run one check, keep its log, remember a failure
    local name=$1; shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "== $name FAILED"; status=1; }
}
run cuda_tests python -m pytest -q -rs tests/data/test_espirit.py -k cuda
run espirit python scripts/bench/espirit.py --device=cuda --slices=64 --sigpy_slices=0
run train_cvae python scripts/bench/train_cvae.py --device=cuda --batch_size=64
run flow python scripts/bench/flow.py --device=cuda --json="$out/flow.json"
run classifier python scripts/bench/classifier.py --device=cuda --profile=full --json="$out/classifier.json"
exit $status
