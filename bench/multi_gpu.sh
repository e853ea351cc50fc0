#!/usr/bin/env bash
# Multi-GPU training through torchrun and NCCL, in one call on a machine with PROCESSES GPUs (nvidia-h200-x2).
# Usage (repository root, on the device): bash bench/multi_gpu.sh COMMIT [PROCESSES] [CONFIG] [EPOCHS]
# Defaults: 2 processes, the paper's sudoku_att recipe at its global batch of 768, 4 epochs of 20,000
# generated Sudoku (104 steps). Runs, on the same data, seed and global batch, exploration off:
#   1. one process on one GPU;  2. torchrun with PROCESSES processes (a checkpoint every 50 steps);
#   3. the torchrun run's step-50 checkpoint resumed by one process (it must continue the same run);
#   4. one process at one rank's share of the global batch, one epoch (the ideal the scaling is read against).
# Then bench/multi_gpu.py compares the first 50 losses and the steps/s (the trainer's own summary lines).
# Writes multi_gpu.json, multi_gpu.log and the first three runs' metrics.csv under $OUT. Environment: DATA_PUZZLES
# (generated puzzles, default 20000), TRAIN_ARGS (more config overrides for every run). An epoch is
# DATA_PUZZLES / 768 steps (the recipe counts puzzle groups): EPOCHS must make more than 50 steps.
set -euo pipefail
commit=${1:?usage: bench/multi_gpu.sh COMMIT [PROCESSES] [CONFIG] [EPOCHS]}
processes=${2:-2}; config=${3:-sudoku_att}; epochs=${4:-4}
out=${OUT:-out}; mkdir -p "$out"; out=$(cd "$out" && pwd)
# NVLink multicast stays off (the device's KINDS.md says why), also for every process torchrun starts
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore OMP_NUM_THREADS=4
repo=$PWD
log="$out/multi_gpu.log"

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi"
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  echo "commit $commit, $processes processes, $config, $epochs epochs"; } | tee "$log"
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    bash bench/device_install.sh 2>&1 | tee -a "$log"
fi

cd /tmp
puzzles=${DATA_PUZZLES:-20000}  # fewer for a smoke test on a CPU (bench/multi_gpu.py runs there too)
steps=$(( puzzles * epochs / ${GLOBAL_BATCH:-768} ))  # the recipe's epoch: one pass over the puzzle groups
if [ "$steps" -le 50 ] && [ "${ALLOW_SHORT:-0}" != 1 ]; then
    echo "multi_gpu.sh: $puzzles puzzles x $epochs epochs make $steps steps at batch ${GLOBAL_BATCH:-768}; the" \
         "comparison and the step-50 resume need more than 50 (ALLOW_SHORT=1 for a smoke test)" | tee -a "$log" >&2
    exit 2
fi
[ -f "gen$puzzles/train/dataset.json" ] || trm-fast data sudoku --out "gen$puzzles" --generate "$puzzles" --test-size 100 \
    --givens 32 --num-aug 7 --seed 0 --force 2>&1 | tail -1 | tee -a "$log"
common=("data_paths=[/tmp/gen$puzzles]" "epochs=$epochs" eval_interval=null arch.halt_exploration_prob=0
        checkpoint_every_steps=50)
read -ra extra <<< "${TRAIN_ARGS:-}"  # more config overrides for every run, e.g. TRAIN_ARGS=compile=false
common+=("${extra[@]}")
run() {  # $1: name, then the launcher; the trainer's summary lines go to the log and to $1.log
    local name=$1; shift
    rm -rf "/tmp/mg_$name"
    echo "== $name: $*" | tee -a "$log"
    "$@" 2>&1 | grep -v "step/s\]\|s/step\]" | tail -6 | tee "/tmp/mg_$name.log" | tee -a "$log"
}
run one trm-fast train "$config" checkpoint_path=/tmp/mg_one "${common[@]}"
run many torchrun --standalone --nproc-per-node "$processes" --no-python trm-fast train "$config" \
    checkpoint_path=/tmp/mg_many "${common[@]}"
run resumed trm-fast train "$config" checkpoint_path=/tmp/mg_resumed "${common[@]}" \
    --resume-from /tmp/mg_many/step_50.pt

python3 "$repo/bench/multi_gpu.py" --one /tmp/mg_one --many /tmp/mg_many --processes "$processes" \
    --one-log /tmp/mg_one.log --many-log /tmp/mg_many.log --config "$config" --commit "$commit" \
    --json "$out/multi_gpu.json" | tee -a "$log"
python3 - "$out/multi_gpu.json" <<'PY' | tee -a "$log"
# the resumed run against the torchrun run it continues, steps 51 on
import json, sys
from trm_fast.train.logger import read_train_rows
rows = lambda d: {int(r["step"]): float(r["lm_loss"]) for r in read_train_rows(f"/tmp/{d}")}
many, resumed = rows("mg_many"), rows("mg_resumed")
common = sorted(set(many) & set(resumed))
worst = max(abs(many[s] - resumed[s]) / abs(many[s]) for s in common)
report = json.load(open(sys.argv[1]))
report.update(resumed_on_one_from_step=50, resumed_steps_compared=len(common), resumed_max_rel_loss_difference=worst)
json.dump(report, open(sys.argv[1], "w"), indent=1)
print(f"resumed on one process from step 50: {len(common)} steps, largest relative loss difference {worst:.2e}")
PY
for name in one many resumed; do cp "/tmp/mg_$name/metrics.csv" "$out/${name}_metrics.csv"; done

# 4. one process at one rank's share of the batch (global / PROCESSES), one epoch: what a rank's work costs
# alone, so that the scaling's loss splits into the share's own time and what running together adds
run share trm-fast train "$config" checkpoint_path=/tmp/mg_share "${common[@]}" epochs=1 \
    global_batch_size=$(( ${GLOBAL_BATCH:-768} / processes ))
python3 - "$out/multi_gpu.json" /tmp/mg_share.log "$repo/bench" <<'PY' | tee -a "$log"
import json, sys
sys.path.insert(0, sys.argv[3])
from multi_gpu import steps_per_s
report = json.load(open(sys.argv[1]))
speed, _ = steps_per_s(sys.argv[2])
report.update(ms_per_step_share_alone=1e3 / speed, share_alone_over_many=1e3 / speed / report["ms_per_step_many"])
json.dump(report, open(sys.argv[1], "w"), indent=1)
print(f"one rank's share alone: {1e3 / speed:.1f} ms per step, {report['share_alone_over_many']:.2f} of the "
      f"{report['ms_per_step_many']:.1f} ms torchrun step")
PY
