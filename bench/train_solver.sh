#!/usr/bin/env bash
# Train the shipped Sudoku solver (trm_fast/configs/sudoku_solver.yaml) in one call on the GPU machine.
# Usage (repository root, on the device): bash bench/train_solver.sh COMMIT [TRAIN_SECONDS]
# Builds the data set, trains for at most TRAIN_SECONDS (default 420; a checkpoint every 500 steps, so
# a run cut short keeps the last one), then writes to $OUT: the newest checkpoint's EMA weights as a
# small file (solver_weights.pt), the run's metrics.csv, eval_metrics.csv, metrics.png, and train.log.
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
python3 -m pip install --no-deps -q .whl/safetensors-*.whl 2>&1 | grep -v "as the 'root'" || true

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
timeout -s INT "$seconds" trm-fast train sudoku_solver checkpoint_path=run "${resume[@]}" >> "$log" 2>&1 || true
echo "train: $(( $(date +%s) - start )) s (limit $seconds)" | tee -a "$log"

python3 - "$out" <<'PY' 2>&1 | tee -a "$log"
import glob, re, sys, torch
ckpts = sorted(glob.glob("run/step_*.pt"), key=lambda p: int(re.findall(r"\d+", p)[-1]))
state = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
weights = {**state["model"], **state["ema"]}
torch.save({"step": state["step"], "arch": state["config"]["arch"], "metadata": state["metadata"],
            "weights": {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()}},
           sys.argv[1] + "/solver_weights.pt")
print("exported", ckpts[-1], "step", state["step"])
PY
cp run/metrics.csv run/eval_metrics.csv run/metrics.png run/config.yaml "$out"/ 2>/dev/null || true
tail -c 3000 "$log"
