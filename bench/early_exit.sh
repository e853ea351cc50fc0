#!/usr/bin/env bash
# Early exit of the shipped solver on the GPU machine, in one call: the engine's GPU tests, then
# bench/early_exit.py on held-out puzzles of the solver's generator (32 givens; the test stream of seed 0,
# which never feeds a training set), with and without the narrow tail.
# Usage (repository root, on the device): bash bench/early_exit.sh COMMIT [PUZZLES]
# PUZZLES (default 20000): the long stream; the first 2,000 of it are the training build's test split.
# Writes to $OUT: early_exit.jsonl (every row), early_exit_2000.png and early_exit_PUZZLES.png, the log.
set -euo pipefail
commit=${1:?usage: bench/early_exit.sh COMMIT [PUZZLES]}
puzzles=${2:-20000}
out=${OUT:-out}; mkdir -p "$out"; out=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
log="$out/early_exit.log"
model=$PWD/trm_fast/pretrained/sudoku.safetensors
script=$PWD/bench/early_exit.py

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  echo "commit $commit"; } | tee "$log"
# the engine runs PyTorch's ops compiled (ENGINE_OPS): the CUDA extension is not needed
TRM_FAST_BUILD_CUDA=0 python3 -m pip install --no-build-isolation --no-deps -q . 2>&1 | grep -v "as the 'root'" || true
python3 -m pytest -q -m gpu -p no:cacheprovider tests/engine tests/test_optim.py 2>&1 | tail -15 | tee -a "$log" || true

cd /tmp
for n in 2000 "$puzzles"; do
    [ -f "heldout$n/test/dataset.json" ] || trm-fast data sudoku --out "heldout$n" --generate 1 --test-size "$n" \
        --givens 32 --seed 0 --force 2>&1 | grep -v "it/s\]$" | tail -1 | tee -a "$log"
done
python3 "$script" "$model" heldout2000 --batch 768,1 --batch1-puzzles 100 --threshold 1 --narrow-tail \
    --commit "$commit" --json "$out/early_exit.jsonl" --png "$out/early_exit_2000.png" 2>&1 | tee -a "$log"
python3 "$script" "$model" "heldout$puzzles" --batch 768 --threshold 1 --narrow-tail --commit "$commit" \
    --json "$out/early_exit.jsonl" --png "$out/early_exit_$puzzles.png" 2>&1 | tee -a "$log"
