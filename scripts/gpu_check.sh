#!/usr/bin/env bash
# Every check that needs a CUDA device, in one command, in under 9 minutes on one NVIDIA GPU with
# 16 CPUs: the CUDA tests, the GPU benchmarks (short settings) and the main job's gpu profile.
#
# Usage (from anywhere in the clone; uses the clone's .venv when no virtual environment is active):
#   scripts/gpu_check.sh                     writes to $OUT, or to ./gpu_check/
# Output:
#   figures.json   every figure in one file: device, date, torch/CUDA/cuDNN versions, each step's
#                  status and time, every benchmark's --json, the main job's stage times (run.json)
#   figures.md     the same, readable
#   NAME.log       each step's output; NAME.json each benchmark's figures; pipeline/ the main job
#                  (removed at the start, so its stage times are those of this run)
#
# Each step runs under `timeout` with its share of the budget below (seconds: 534 at most, the
# grace periods and the final merge included); the main job gets the largest, 300 s. A step that fails or runs out of time is marked so
# in figures.json, the next steps still run, and the script exits 1 at the end. A benchmark killed
# by its limit keeps what it wrote: sample.py writes its JSON after each part, the main job its
# run.json after each stage.
#
# Dry run, to test the plumbing on a machine without a GPU:
#   GPU_CHECK_DRY_RUN=1 scripts/gpu_check.sh
# skips the CUDA check and runs every step on the CPU with tiny settings (the benchmarks' --quick
# or a few slices, the main job with --notrain on 2 volumes of 2 slices), each step with at least
# 150 s; figures.json comes out the same way, marked "dry_run": true. About 1.5 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
    . .venv/bin/activate
fi
out="${OUT:-gpu_check}"
dry="${GPU_CHECK_DRY_RUN:-0}"
mkdir -p "$out"
rm -rf "$out/pipeline" "$out/steps.tsv"
grace=3  # seconds between timeout's TERM and its KILL

if [ "$dry" = 1 ]; then
    echo "gpu_check: DRY RUN on the CPU with tiny settings (GPU_CHECK_DRY_RUN=1): not GPU figures"
    dev=cpu
else
    python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA device')" || exit 1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
    dev=cuda
fi

status=0
step() {  # name, limit in seconds, command...: run one step under its limit, keep its log and time
    local name=$1 limit=$2; shift 2
    [ "$dry" = 1 ] && [ "$limit" -lt 150 ] && limit=150
    echo "== $name (limit ${limit} s): $*"
    local start=$SECONDS
    timeout -k "$grace" "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$limit" >> "$out/steps.tsv"
    if [ "$rc" -ne 0 ]; then
        echo "== $name FAILED (exit $rc$([ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo ', time limit'))"
        status=1
    fi
}

if [ "$dry" = 1 ]; then
    quick=(--quick) espirit=(--slices=1 --repeats=1 --coils=4) cvae=(--batch_size=2 --steps=1 --amp=False --profiles=cpu)
    volumes=(--volumes=1 --slices=2 --workers=1) job=(--notrain --volumes 2 --slices 2 --workers 2)
else
    quick=(--repeats=2 --compile=False) espirit=(--slices=64) cvae=(--batch_size=64 --steps=5 --profiles=default)
    volumes=(--volumes=16 --slices=8 --workers=16) job=()
fi

# The CUDA tests: every test file that asks whether CUDA is there, its CUDA tests.
mapfile -t cuda_tests < <(grep -rl "cuda.is_available()" tests --include="test_*.py")
[ "${#cuda_tests[@]}" -gt 0 ] || cuda_tests=(tests/data/test_espirit.py)
step cuda_tests 20 python -m pytest -q -rs -k cuda "${cuda_tests[@]}"
step espirit 20 python scripts/bench/espirit.py --device=$dev --sigpy_slices=0 "${espirit[@]}" --json="$out/espirit.json"
step train_cvae 20 python scripts/bench/train_cvae.py --device=$dev "${cvae[@]}" --json="$out/train_cvae.json"
step flow 25 python scripts/bench/flow.py --device=$dev --steps=2 "${quick[@]}" --json="$out/flow.json"
step classifier 20 python scripts/bench/classifier.py --device=$dev --steps=5 "${quick[@]}" --json="$out/classifier.json"
if [ "$dry" = 1 ]; then
    step sample 50 python scripts/bench/sample.py --device=$dev --quick --json="$out/sample.json"
else
    step sample 50 python scripts/bench/sample.py --device=$dev --steps=2 --repeats=2 --json="$out/sample.json"
fi
step preprocess 45 python scripts/bench/preprocess.py --device=$dev --reference_slices=0 "${volumes[@]}" \
    --json="$out/preprocess.json"
step pipeline 300 python -m monai_cmri pipeline --profile gpu --out "$out/pipeline" "${job[@]}"

dry_flag=$([ "$dry" = 1 ] && echo --dry_run || echo --nodry_run)
timeout 10 python scripts/bench/collect.py "$out" "$dry_flag" || status=1
exit $status
