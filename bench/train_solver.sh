#!/usr/bin/env bash
# Train the shipped Sudoku solver (trm_fast/configs/sudoku_solver.yaml) in one call on the GPU machine.
# Usage (repository root, on the device): bash bench/train_solver.sh COMMIT [TRAIN_SECONDS]
# Builds the data set, trains for at most TRAIN_SECONDS (default 420; a checkpoint every 500 steps, and
# one where the time limit stops it), then writes to $OUT: the newest checkpoint as a model file
# (sudoku.safetensors, its EMA weights in bf16), the run's metrics.csv, eval_metrics.csv, metrics.png, and
# train.log. The shipped solver's halt threshold was then tuned with bench/early_exit.py --tune.
set -euo pipefail
commit=${1:?usage: bench/train_solver.sh COMMIT [TRAIN_SECONDS]}
seconds=${2:-420}
out=${OUT:-out}; mkdir -p "$out"; out=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
work=/tmp/solver; mkdir -p "$work"
log="$out/train.log"

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  echo "commit $commit"; } | tee "$log"
# the CUDA extension is not built: the compiled training step runs inductor's kernels
TRM_FAST_BUILD_CUDA=0 python3 -m pip install --no-build-isolation --no-deps -q . 2>&1 | grep -v "as the 'root'" || true

cd "$work"
start=$(date +%s)
if [ ! -f data/sudoku-gen32/test/dataset.json ]; then
    trm-fast data sudoku --out data/sudoku-gen32 --generate 50000 --test-size 2000 --givens 32 --num-aug 31 \
        --seed 0 --force 2>&1 | grep -v "it/s\]$" | tee -a "$log"
fi
echo "data: $(( $(date +%s) - start )) s" | tee -a "$log"

start=$(date +%s)
resume=()  # a warm machine still holds the last call's run: continue it, or drop one without a checkpoint
if compgen -G "run/step_*.pt" > /dev/null; then resume=(--resume); else rm -rf run; fi
timeout -s TERM "$seconds" trm-fast train sudoku_solver checkpoint_path=run "${resume[@]}" >> "$log" 2>&1 || true
echo "train: $(( $(date +%s) - start )) s (limit $seconds)" | tee -a "$log"

latest=$(ls run/step_*.pt | sort -t_ -k2 -n | tail -1)
trm-fast export "$latest" "$out/sudoku.safetensors" 2>&1 | tee -a "$log"
cp run/metrics.csv run/eval_metrics.csv run/metrics.png run/config.yaml "$out"/ 2>/dev/null || true
tail -c 3000 "$log"
