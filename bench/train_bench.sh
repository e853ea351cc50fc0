#!/usr/bin/env bash
# Training on the GPU machine: the bench's train rows and the trainer itself, from the same checkout.
# Usage (repository root, on the device): bash bench/train_bench.sh COMMIT PHASE
#   speed   `trm-fast bench sudoku_attn --mode train` (engine, reference-compile,
#           reference-eager, then engine with --recompute); `trm-fast train sudoku_att` on generated Sudoku
#           at the same batch (768), with and without arch.recompute: its own steps/s and peak memory
#   curves  GPU tests of training; `trm-fast train sudoku_solver` for ~300 steps twice from the same seed
#           and data: the trainer's default (compiled, auto ops) and the reference (eager, reference ops),
#           overlaid by bench/train_curves.py; then recompute's memory and bench row
#   trainer GPU tests of training; the bench's engine train row of sudoku_attn and the trainer's steps/s at
#           the same batch (20 steps profiled), then with cuda_graph=true; bench/train_memory.py (what a
#           step holds, eager and compiled, +-recompute)
#   gap     the bench's engine train row of sudoku_attn, then the trainer's steps/s at the same batch, plain
#           and with cuda_graph=true (no tests, no profile: the trainer against the bench, quickly), the GPU's clocks
#           sampled beside (gpu_clocks_gap.csv); GAP_ROW=0 skips the row (the trainer's two runs alone)
#   fit     bench/train_fit.py: the largest sudoku_attn and arc_attn batch whose training step fits 24 and
#           80 GiB, reference ops against the trainer's, with and without recompute
#   mlpt    sudoku_mlpt: the bench's train rows (engine, reference-compile, reference-eager, then engine with
#           --recompute); `trm-fast train sudoku_mlp` on generated Sudoku at the same batch (768), with and
#           without arch.recompute: its own steps/s and peak memory
#   configs the bench's train rows of sudoku_mlpt, sudoku_hrm and arc_attn (or of $CONFIGS), then their engine
#           rows with --recompute
#   recompute GPU tests of the ops that keep a sublayer's input alone (trm_fast.ops.recomputed_*) and of the
#           trainer's gradients with recompute; bench/train_memory.py on the compiled sudoku_attn step with and
#           without recompute
#   attention-backward trm_fast's attention backward (kernels/attention_backward.py): its micro-benchmarks against
#           cuDNN's backward + the packing pass (bench/test_kernels.py, the chosen configs logged), its GPU tests,
#           compute-sanitizer memcheck on it (bench/sanitize_triton.py); each step bounded, numbers first
#   rows    the bench's three train rows of sudoku_attn alone (the first of the speed phase's steps)
#   recompute-mlp sudoku_attn's engine and reference-compile train rows, then engine with --recompute mlp;
#           bench/train_memory.py on the compiled step with and without arch recompute mlp, timed in turns
#   trainer-steps `trm-fast train sudoku_att` on generated Sudoku at the bench's batch (768): its own steps/s and
#           peak memory (the speed phase's trainer run alone; after `rows` in one call, the issue's pair)
#   attention-backward-step the compiled sudoku_attn step at batch 768 on 'auto' without and with
#           `attention_backward` (bench/train_memory.py: time and memory)
#   profile `trm-fast profile sudoku_attn --mode train --compile`: the compiled training step's kernels
#   down-swiglu-backward the MLP's backward through the down projection and SwiGLU in one kernel
#           (kernels/down_swiglu_backward.py): its configs timed alone against cuBLAS's dh + SwiGLU's backward
#           (bench/down_swiglu_sweep.py), its GPU tests, the compiled sudoku_attn step on 'auto' without and with it
#           (bench/train_memory.py); MICRO=1 adds its micro-benchmarks (bench/test_kernels.py, the autotuner's
#           choice logged), MEMCHECK=1 compute-sanitizer memcheck on every config; each step bounded
#   kept-mlp Hopper's CUTLASS gate/up GEMM in training (needs .whl/nvidia_cutlass-*.whl carried): the GPU tests of
#           its kernels and of kept_mlp, the training pair against the kernel that writes gate_up and h
#           (bench/gemm_tiles.py --sm90-only), then the compiled sudoku_attn step at b768 on 'auto' without either
#           CUTLASS op, with linear_swiglu_sm90 (the no-grad cycles), and with kept_mlp too, timed in turns
#           (bench/train_memory.py --interleave)
#   recompute-speed the bench's sudoku_attn train rows (engine, reference-compile), then engine with
#           --recompute; the trainer's steps/s at the same batch, then with arch.recompute, plain and with
#           cuda_graph
# Writes logs, JSON and PNGs under $OUT.
set -euo pipefail
commit=${1:?usage: bench/train_bench.sh COMMIT PHASE (the phases: the head of this file)}
phase=${2:?usage: bench/train_bench.sh COMMIT PHASE (the phases: the head of this file)}
out=${OUT:-out}; mkdir -p "$out"; out=$(cd "$out" && pwd)
log="$out/train_$phase.log"
source "$(dirname "$0")/device_common.sh"
data() {  # $1: directory, $2: puzzles (with 7 augmentations each)
    [ -f "$1/train/dataset.json" ] || trm-fast data sudoku --out "$1" --generate "$2" --test-size 100 --givens 32 \
        --num-aug 7 --seed 0 --force 2>&1 | tail -1 | tee -a "$log"
}
train() {  # $1: run directory, $2: config, then overrides and options; keeps the summary lines
    rm -rf "$1"
    trm-fast train "$2" checkpoint_path="$1" eval_interval=null "${@:3}" 2>&1 | grep -v "step/s\|s/step" | tail -4 | tee -a "$log"
}
rows() {  # the bench's three train rows of sudoku_attn, into bench.json and bench.png
    bench sudoku_attn --mode train --backend engine,reference-compile,reference-eager --json "$out/bench.json" \
        --png "$out/bench.png"
}

trainer_row() {  # `trm-fast train sudoku_att` at the bench's batch (768) on generated Sudoku: its own steps/s
    data /tmp/gen20k 20000  # 26 steps per epoch at batch 768
    echo "== trainer, sudoku_att at batch 768 (the bench's engine row)" | tee -a "$log"
    train /tmp/run_att sudoku_att "data_paths=[/tmp/gen20k]" epochs=4
}

microbench() {  # $1: bench/test_kernels.py's -k expression, $2: seconds; the autotuner's choices logged
    TRITON_PRINT_AUTOTUNING=1 timeout "$2" python3 -m pytest -q -s -p no:cacheprovider "$repo/bench/test_kernels.py" \
        -k "$1" --benchmark-only --benchmark-columns=min,mean,max --benchmark-json "$out/microbench.json" 2>&1 \
        | grep -v "^$\|^Autotuning kernel" | tail -40 | tee -a "$log" || true
}

memcheck() {  # $1: seconds, then bench/sanitize_triton.py's sections; the log sanitizer_<sections>.log
    local name
    name=$(IFS=_; echo "${*:2}")
    timeout "$1" compute-sanitizer --tool memcheck --error-exitcode 9 \
        python3 "$repo/bench/sanitize_triton.py" "${@:2}" > "$out/sanitizer_$name.log" 2>&1 && echo "memcheck: clean" | tee -a "$log" \
        || echo "memcheck: FAILED or cut (see sanitizer_$name.log)" | tee -a "$log"
}

auto_step() {  # $1: an op of AUTO_OPS, $2: seconds; the compiled sudoku_attn step at b768 on 'auto' without it and with
    # it, timed in turns (5 rounds)
    local without
    without=$(cd /tmp && python3 -c "from trm_fast import backend
print(','.join(sorted(backend.AUTO_OPS - {'$1'})))")
    (cd /tmp && timeout "$2" python3 "$repo/bench/train_memory.py" sudoku_attn --variants compile \
        --auto-ops "$without" --auto-ops "$without,$1" --interleave 5 --commit "$commit" \
        --json "$out/memory.jsonl") 2>&1 | sed '/"kept"/d' | tee -a "$log" || true
}

cd /tmp
if [ "$phase" = speed ]; then
    rows
    bench sudoku_attn --mode train --backend engine --recompute --json "$out/bench.json" --no-png
    trainer_row
    echo "== trainer, the same with arch.recompute=true" | tee -a "$log"
    train /tmp/run_att_rc sudoku_att "data_paths=[/tmp/gen20k]" epochs=4 arch.recompute=true
elif [ "$phase" = trainer ]; then
    (cd "$repo" && python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_recompute.py tests/test_optim.py \
        tests/engine/test_engine_gpu.py tests/train/test_graphed_step.py tests/train/test_trainer_gradients.py 2>&1 | tail -4) | tee -a "$log" || true
    bench sudoku_attn --mode train --backend engine --json "$out/bench_trainer.json" --no-png
    data /tmp/gen20k 20000
    echo "== trainer, sudoku_att at batch 768 (the bench's engine row), 20 steps profiled" | tee -a "$log"
    train /tmp/run_att sudoku_att "data_paths=[/tmp/gen20k]" epochs=4 --profile-steps 20
    cp /tmp/run_att/profile/steps.txt "$out/trainer_profile.txt" || true
    echo "== trainer, the same with cuda_graph=true" | tee -a "$log"
    train /tmp/run_att_graph sudoku_att "data_paths=[/tmp/gen20k]" epochs=4 cuda_graph=true
    python3 "$repo/bench/train_memory.py" sudoku_attn --commit "$commit" --json "$out/memory.jsonl" 2>&1 | tee -a "$log"
elif [ "$phase" = gap ]; then
    # the GPU's clocks, power and throttle reasons every half second beside: a slow row from the clocks shows there
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,\
clocks_event_reasons.active --format=csv -lms 500 > "$out/gpu_clocks_gap.csv" 2>&1 &
    sampler=$!
    [ "${GAP_ROW:-1}" = 0 ] || bench sudoku_attn --mode train --backend engine --json "$out/bench_gap.json" --no-png
    trainer_row
    echo "== trainer, the same with cuda_graph=true" | tee -a "$log"
    train /tmp/run_att_graph sudoku_att "data_paths=[/tmp/gen20k]" epochs=4 cuda_graph=true
    kill "$sampler" 2>/dev/null || true
elif [ "$phase" = curves ]; then
    data /tmp/gen20k 20000
    echo "== sudoku_solver, 312 steps: the trainer's default, then eager reference ops" | tee -a "$log"
    train /tmp/curve_engine sudoku_solver "data_paths=[/tmp/gen20k]" epochs=12
    train /tmp/curve_reference sudoku_solver "data_paths=[/tmp/gen20k]" epochs=12 compile=false arch.backend=reference
    python3 "$repo/bench/train_curves.py" "trainer default (compiled, auto ops)=/tmp/curve_engine" \
        "reference (eager, reference ops)=/tmp/curve_reference" --png "$out/curves.png" --json "$out/curves.json" \
        --title "sudoku_solver recipe, generated Sudoku (32 givens), seed 0, commit $commit" | tee -a "$log"
    cp /tmp/curve_engine/metrics.csv "$out/curve_engine_metrics.csv"
    cp /tmp/curve_reference/metrics.csv "$out/curve_reference_metrics.csv"
    # recompute compiled block by block (engine/training.py): what a step holds, then its bench row
    python3 "$repo/bench/train_memory.py" sudoku_attn --variants compile+recompute --commit "$commit" \
        --json "$out/memory.jsonl" 2>&1 | tee -a "$log"
    bench sudoku_attn --mode train --backend engine --recompute --json "$out/bench_recompute.json" --no-png
elif [ "$phase" = fit ]; then
    python3 "$repo/bench/train_fit.py" sudoku_attn arc_attn --gib 24,80 --commit "$commit" --json "$out/fit.jsonl" \
        2>&1 | tee -a "$log"
elif [ "$phase" = configs ]; then
    read -ra configs <<< "${CONFIGS:-sudoku_mlpt sudoku_hrm arc_attn}"  # one call may not fit all three
    bench "${configs[@]}" --mode train --backend engine,reference-compile,reference-eager \
        --json "$out/bench_configs.json" --png "$out/bench_configs.png"
    bench "${configs[@]}" --mode train --backend engine --recompute --json "$out/bench_configs.json" --no-png
elif [ "$phase" = mlpt ]; then
    bench sudoku_mlpt --mode train --backend engine,reference-compile,reference-eager --json "$out/bench_mlpt.json" \
        --png "$out/bench_mlpt.png"
    bench sudoku_mlpt --mode train --backend engine --recompute --json "$out/bench_mlpt.json" --no-png
    data /tmp/gen20k 20000
    echo "== trainer, sudoku_mlp at batch 768 (the bench's engine row)" | tee -a "$log"
    train /tmp/run_mlp sudoku_mlp "data_paths=[/tmp/gen20k]" epochs=4
    echo "== trainer, the same with arch.recompute=true (the bench's engine+recompute row)" | tee -a "$log"
    train /tmp/run_mlp_rc sudoku_mlp "data_paths=[/tmp/gen20k]" epochs=4 arch.recompute=true
elif [ "$phase" = recompute ]; then
    (cd "$repo" && timeout 240 python3 -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_rope.py \
        tests/kernels/test_recomputed_mlp.py tests/kernels/test_recomputed_attention.py tests/test_recompute.py \
        tests/train/test_trainer_gradients.py -k "not (test_trainer_step_gradients and not recompute)" --tb=short \
        > "$out/pytest_recompute.log" 2>&1; tail -3 "$out/pytest_recompute.log") | tee -a "$log" || true
    python3 "$repo/bench/train_memory.py" sudoku_attn --variants compile,compile+recompute --commit "$commit" \
        --json "$out/memory.jsonl" 2>&1 | sed '/"kept"/d' | tee -a "$log"
elif [ "$phase" = attention-backward ]; then
    cd "$repo"  # the test files' paths
    # TRITON_PRINT_AUTOTUNING: the log names each kernel's chosen config
    microbench attention_backward 200
    # the kernel's GPU tests and the device-agnostic ones (no -m gpu: those carry no marker)
    # (bf16 and the kept op alone: each of the kernel's forms compiles per shape; the fp16 and recomputed cases
    # run the same kernel)
    timeout "${TEST_TIMEOUT:-150}" python3 -m pytest -q -p no:cacheprovider tests/kernels/test_recomputed_attention.py \
        --tb=short -k "(fused_backward and bf16 and kept) or writes_every or opcheck" \
        > "$out/pytest_attention_backward.log" 2>&1 || true
    tail -3 "$out/pytest_attention_backward.log" | tee -a "$log"
    memcheck 180 attention_backward
elif [ "$phase" = rows ]; then
    rows
elif [ "$phase" = recompute-mlp ]; then
    # the bench's rows with the partial recompute beside the default, then both steps' memory timed in turns
    bench sudoku_attn --mode train --backend engine,reference-compile --json "$out/bench_recompute_mlp.json" --no-png
    bench sudoku_attn --mode train --backend engine --recompute mlp --json "$out/bench_recompute_mlp.json" --no-png
    (cd /tmp && timeout 240 python3 "$repo/bench/train_memory.py" sudoku_attn --variants compile,compile+recompute=mlp \
        --interleave 5 --commit "$commit" --json "$out/memory_recompute_mlp.jsonl") 2>&1 | sed '/"kept"/d' \
        | tee -a "$log" || true
elif [ "$phase" = trainer-steps ]; then
    trainer_row
elif [ "$phase" = attention-backward-step ]; then
    auto_step attention_backward 200
elif [ "$phase" = down-swiglu-backward ]; then
    cd "$repo"  # the test files' paths
    timeout "${SWEEP_TIMEOUT:-90}" python3 bench/down_swiglu_sweep.py --commit "$commit" --json "$out/sweep.jsonl" \
        2>&1 | tail -12 | tee -a "$log" || true
    if [ "${MICRO:-0}" = 1 ]; then
        microbench down_swiglu 150
    fi
    timeout "${TEST_TIMEOUT:-120}" python3 -m pytest -q -p no:cacheprovider tests/kernels/test_down_swiglu_backward.py \
        tests/kernels/test_swiglu_linear.py tests/kernels/test_recomputed_mlp.py --tb=short \
        -k "down_swiglu or fused_backward or opcheck" > "$out/pytest_down_swiglu_backward.log" 2>&1 || true
    tail -3 "$out/pytest_down_swiglu_backward.log" | tee -a "$log"
    auto_step "down_swiglu_backward" "${STEP_TIMEOUT:-200}"
    if [ "${MEMCHECK:-0}" = 1 ]; then
        memcheck 150 down_swiglu_backward
    fi
elif [ "$phase" = kept-mlp ]; then
    (cd "$repo" && timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short \
        tests/kernels/test_gemm_swiglu_sm90.py tests/kernels/test_recomputed_mlp.py > "$out/pytest_kept_mlp.log" 2>&1) \
        || true
    tail -3 "$out/pytest_kept_mlp.log" | tee -a "$log"
    timeout 90 python3 "$repo/bench/gemm_tiles.py" --sm90-only --commit "$commit" --json "$out/gemm_tiles_sm90.jsonl" \
        2>&1 | tee -a "$log" || true
    base=$(python3 -c "from trm_fast import backend
print(','.join(sorted(backend.AUTO_OPS - {'linear_swiglu_sm90', 'kept_mlp'})))")
    timeout "${STEP_TIMEOUT:-330}" python3 "$repo/bench/train_memory.py" sudoku_attn --variants compile \
        --auto-ops "$base" --auto-ops "$base,linear_swiglu_sm90" --auto-ops "$base,linear_swiglu_sm90,kept_mlp" \
        --interleave 5 --commit "$commit" --json "$out/memory.jsonl" 2>&1 | sed '/"kept"/d' | tee -a "$log" || true
elif [ "$phase" = profile ]; then
    (cd /tmp && timeout 300 python3 -m trm_fast.cli.main profile sudoku_attn --mode train --compile --steps 3 \
        --out /tmp/profile_train) 2>&1 | grep -v "it/s\]$" | tail -60 | tee -a "$log" || true
    cp /tmp/profile_train/profile.txt "$out/profile_train.txt" || true
    cp /tmp/profile_train/kernels.json "$out/profile_train.kernels.json" || true
elif [ "$phase" = recompute-speed ]; then
    bench sudoku_attn --mode train --backend engine,reference-compile --json "$out/bench_recompute.json" --no-png
    bench sudoku_attn --mode train --backend engine --recompute --json "$out/bench_recompute.json" --no-png
    trainer_row
    echo "== trainer, sudoku_att at batch 768 with arch.recompute=true (the bench's engine+recompute row)" | tee -a "$log"
    train /tmp/run_rc sudoku_att "data_paths=[/tmp/gen20k]" epochs=4 arch.recompute=true
    echo "== trainer, the same with cuda_graph=true" | tee -a "$log"
    train /tmp/run_rc_graph sudoku_att "data_paths=[/tmp/gen20k]" epochs=4 arch.recompute=true cuda_graph=true
else
    echo "unknown phase $phase: speed, trainer, gap, fit, curves, configs, mlpt, recompute, attention-backward," \
        "attention-backward-step, down-swiglu-backward, kept-mlp, profile, rows, recompute-mlp, trainer-steps or" \
        "recompute-speed" >&2; exit 2
fi
