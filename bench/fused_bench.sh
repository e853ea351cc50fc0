#!/usr/bin/env bash
# The fused kernels on the GPU machine (issue 16), one device call per phase, from the same checkout.
# Usage (repository root, on the device): bash bench/fused_bench.sh COMMIT PHASE
#   kernels  the micro-benchmarks of the fused kernels (bench/test_kernels.py -k "$KERNELS", default
#            "linear_ or rope_attention", JSON); every tile of the gate/up + SwiGLU kernel against cuBLAS at
#            sudoku_attn's and arc_attn's MLP (bench/gemm_tiles.py; GEMM_TILES=0 skips it); the engine's 16-step evaluation at batch
#            768 of $CONFIGS (default sudoku_attn) with its step on `auto`, once with each kernel set in
#            $AUTO_OPS (';'-separated; default: trm_fast.backend.AUTO_OPS, then it with linear_rope, with
#            linear_add_rms_norm, and with linear_rope and the persistent TMA attention), and on PyTorch's
#            ops (bench/engine_ops.py). Numbers first: about 8 minutes
#   tests    GPU tests of the fused kernels, the engine and the models (the ten slowest listed), then
#            compute-sanitizer's memcheck and racecheck on every Triton kernel (bench/sanitize_triton.py)
#   ncu      Nsight Compute on one call of each case in $NCU_CASES (';'-separated, default the two GEMM-epilogue
#            kernels at sudoku_attn's batch 768), trm_fast's kernel and the reference (bench/ncu_kernels.py;
#            $NCU_IMPLS picks, default "fused reference"); NCU_SOURCE=1 adds each kernel's SASS with its warp-stall
#            samples per instruction (ncu_<impl>_sass.csv: which instructions the warps wait on)
#   sm90     Hopper's CUTLASS kernels (csrc/sm90), in the steps named by $SM90_STEPS (default the five below; "none":
#            the install alone; "smoke" first: the residual kernel's tests within 100 s, or no step runs): tests (their
#            GPU tests), sanitize (compute-sanitizer on them, bench/sanitize_sm90.py), tiles (the gate/up + SwiGLU
#            GEMM alone and as the op against cuBLAS and the unfused pair, its training form, the RoPE GEMM, and
#            CUTLASS's plain GEMM in each mainloop shape beside cuBLAS's, bench/gemm_tiles.py --sm90-only, at each
#            batch,seq of $SM90_TILES, default sudoku_attn's and arc_attn's), kernels (QKV + RoPE against cuBLAS
#            + inductor's RoPE, bench/test_kernels.py), engine (the 16-step evaluation of sudoku_attn at batch 768 on
#            'auto' without the CUTLASS ops, then with each ';'-separated set of $SM90_SETS added; on $SM90_OPS,
#            default auto, add ",reference" for PyTorch's ops; SM90_KERNELS=N: each row with its N longest kernels
#            of one profiled solve). Needs .whl/nvidia_cutlass-*.whl carried
#   mlpt     MLP-t's token mix (kernels/token_mix.py): its GPU tests, compute-sanitizer on its two
#            kernels, each against its floor and the compiled official order (bench/token_mix.py, batch 768 and 1,
#            pointer then TMA kernel; then each pointer-kernel tile of $TOKEN_MIX_TILES alone, e.g. "64,64,4,1"),
#            then sudoku_mlpt's 16-step evaluation at batch 768 on 'auto' without and with `token_mix`, on
#            PyTorch's ops, and with the pointer kernel (bench/engine_ops.py). About 8 minutes; its tests stop
#            at 150 s (the whole file takes ~300 s on an H100: the `tests` phase runs it)
#   b1       batch 1: the whole-layer kernel (kernels/small_layer.py): it alone against the official layer compiled
#            (bench/small_layer.py, batch 1 and 8), its phases under each config (--sweep, batch 1), its GPU tests,
#            compute-sanitizer on it (persistent and phase by phase); then the engine's 16-step evaluation of
#            $B1_CONFIGS (default sudoku_attn) at batch 1 on 'auto' with the large batches' set, then with each
#            ';'-separated set of $B1_SETS added (default: the few-puzzle attention, then it and small_layer),
#            and on PyTorch's ops (bench/engine_ops.py); then `trm-fast profile` of the first config at batch 1,
#            its kernels.json brought back. $B1_STEPS picks steps (default all six: alone sweep tests sanitize
#            engine profile); `ncu` adds Nsight Compute on each phase (bench/small_layer.py --ncu), `profile_small`
#            the profile with small_layer in auto's set. About 9 minutes (SDPA held to FlashAttention's,
#            `engine_ops.py --sdpa flash`, changed nothing at batch 1: bench/NOTES.md)
#   infer    `trm-fast bench --mode infer` rows (engine, reference-compile, reference-eager) of $CONFIGS (default
#            the four paper configs) at their batch, then $B1_CONFIGS (default sudoku_attn and arc_attn) at
#            batch 1 (engine, reference-graphs); either set empty to skip it
#   where    where the engine's evaluation at batch 768 spends its time: `trm-fast profile` of $WHERE_CONFIG (default
#            sudoku_attn; its kernels by name, profile_b768/), then sudoku_attn on 'auto' with and without
#            `carried_norm`, each row with its 25 longest kernels (bench/engine_ops.py --kernels). Needs
#            .whl/nvidia_cutlass-*.whl carried; about 6 minutes
# Writes logs, JSON and PNGs under $OUT.
set -euo pipefail
commit=${1:?usage: bench/fused_bench.sh COMMIT kernels|tests|ncu|sm90|mlpt|b1|infer|where}
phase=${2:?usage: bench/fused_bench.sh COMMIT kernels|tests|ncu|sm90|mlpt|b1|infer|where}
out=${OUT:-out}; mkdir -p "$out"; out=$(cd "$out" && pwd)
log="$out/fused_$phase.log"
source "$(dirname "$0")/device_common.sh"

if [ "$phase" = kernels ]; then
    python3 -m pytest -q -p no:cacheprovider bench/test_kernels.py -k "${KERNELS:-linear_ or rope_attention}" \
        --benchmark-only --benchmark-columns=min,mean,max --benchmark-json "$out/microbench.json" 2>&1 \
        | tail -40 | tee -a "$log" || true
    for shape in $([ "${GEMM_TILES:-1}" = 0 ] || echo "768,97 192,916"); do
        shape=${shape/,/ }
        set -- $shape
        (cd /tmp && python3 "$repo/bench/gemm_tiles.py" --batch "$1" --seq "$2" --commit "$commit" \
            --json "$out/gemm_tiles.jsonl") 2>&1 | tee -a "$log" || true
    done
    auto_args=()
    base=add_rms_norm,swiglu,linear_swiglu
    defaults="$base;$base,linear_rope;$base,linear_add_rms_norm;$base,linear_rope,attention"
    IFS=';' read -ra sets <<< "${AUTO_OPS:-$defaults}"
    for set in "${sets[@]}"; do auto_args+=(--auto-ops "$set"); done
    for config in ${CONFIGS:-sudoku_attn}; do  # --attention-tma: only the sets with `attention` run it
        (cd /tmp && python3 "$repo/bench/engine_ops.py" "$config" 768 --ops auto,reference "${auto_args[@]}" \
            --attention-tma --out "$out/engine_ops.jsonl") 2>&1 | tee -a "$log"
    done
elif [ "$phase" = tests ]; then
    python3 -m pytest -q -m gpu -p no:cacheprovider --durations=10 tests/kernels/test_linear_swiglu.py \
        tests/kernels/test_linear_rope.py tests/kernels/test_attention.py tests/kernels/test_linear_add_rms_norm.py tests/kernels/test_token_mix.py \
        tests/engine tests/test_models.py 2>&1 | tee "$out/gpu_tests.log" | tail -16 | tee -a "$log" || true
    for tool in memcheck racecheck; do
        compute-sanitizer --tool "$tool" --error-exitcode 9 python3 bench/sanitize_triton.py \
            >> "$out/sanitizer_triton.log" 2>&1 && echo "$tool: clean" | tee -a "$log" \
            || echo "$tool: FAILED (see sanitizer_triton.log)" | tee -a "$log"
    done
elif [ "$phase" = ncu ]; then
    IFS=';' read -ra cases <<< "${NCU_CASES:-linear_rope forward;linear_swiglu forward}"
    for impl in ${NCU_IMPLS:-fused reference}; do
        source_args=(); [ "${NCU_SOURCE:-0}" = 0 ] || source_args=(--section SourceCounters -f -o "/tmp/ncu_$impl")
        (cd /tmp && ncu --profile-from-start off --section SpeedOfLight --section MemoryWorkloadAnalysis \
            --section ComputeWorkloadAnalysis --section Occupancy --section LaunchStats --section WarpStateStats \
            --section SchedulerStats "${source_args[@]}" python3 "$repo/bench/ncu_kernels.py" "$impl" "${cases[@]}") \
            2>&1 | tee -a "$out/ncu_$impl.txt" | tail -3
        if [ "${NCU_SOURCE:-0}" != 0 ]; then  # the report's text, then every kernel's SASS with its stall samples
            ncu --import "/tmp/ncu_$impl.ncu-rep" --print-summary none >> "$out/ncu_$impl.txt" 2>&1 || true
            ncu --import "/tmp/ncu_$impl.ncu-rep" --page source --print-source sass --csv \
                > "$out/ncu_${impl}_sass.csv" 2>&1 || true
        fi
    done
elif [ "$phase" = sm90 ]; then
    steps=" ${SM90_STEPS:-tests sanitize tiles kernels engine} "
    # smoke: the residual kernel's tests (every staged epilogue, csrc/sm90/gemm_sm90.cuh) within 100 s; where they
    # fail or hang, no other step runs, so that a deadlocked pipeline cannot eat the call
    if [[ $steps == *" smoke "* ]] && ! timeout 100 python3 -m pytest -q -x -m gpu -p no:cacheprovider \
            tests/kernels/test_gemm_residual_sm90.py > "$out/pytest_smoke.log" 2>&1; then
        echo "smoke: FAILED or timed out (see pytest_smoke.log); no other step ran" | tee -a "$log"
        steps=" "
    fi
    if [[ $steps == *" tests "* ]]; then
        timeout 200 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/kernels/test_gemm_swiglu_sm90.py \
            tests/kernels/test_linear_rope_sm90.py tests/kernels/test_gemm_plain_sm90.py \
            tests/kernels/test_gemm_residual_sm90.py \
            "tests/engine/test_engine_gpu.py::test_the_carried_norm_is_as_accurate_as_the_bfloat16_model" \
            > "$out/pytest_sm90.log" 2>&1 \
            || true
        tail -3 "$out/pytest_sm90.log" | tee -a "$log"
    fi
    for tool in $([[ $steps == *" sanitize "* ]] && echo memcheck racecheck); do
        timeout 120 compute-sanitizer --tool "$tool" --error-exitcode 9 python3 bench/sanitize_sm90.py \
            >> "$out/sanitizer_sm90.log" 2>&1 && echo "$tool: clean" | tee -a "$log" \
            || echo "$tool: FAILED (see sanitizer_sm90.log)" | tee -a "$log"
    done
    for shape in $([[ $steps == *" tiles "* ]] && echo "${SM90_TILES:-768,97 192,916}"); do
        set -- ${shape/,/ }
        (cd /tmp && timeout 120 python3 "$repo/bench/gemm_tiles.py" --batch "$1" --seq "$2" --sm90-only \
            --commit "$commit" --json "$out/gemm_tiles_sm90.jsonl") 2>&1 | tee -a "$log" || true
    done
    if [[ $steps == *" kernels "* ]]; then  # QKV + RoPE on CUTLASS against cuBLAS + inductor's RoPE
        timeout 150 python3 -m pytest -q -p no:cacheprovider bench/test_kernels.py -k "linear_rope_forward_sm90" \
            --benchmark-only --benchmark-columns=min,mean,max --benchmark-json "$out/microbench_sm90.json" 2>&1 \
            | tail -16 | tee -a "$log" || true
    fi
    if [[ $steps == *" engine "* ]]; then  # the engine on 'auto' without the CUTLASS ops, then with each
        base=add_rms_norm,swiglu,linear_swiglu
        sets=(--auto-ops "$base")
        IFS=';' read -ra extra <<< "${SM90_SETS:-linear_swiglu_sm90;linear_rope_sm90;linear_swiglu_sm90,linear_rope_sm90}"
        for set in "${extra[@]}"; do sets+=(--auto-ops "$base,$set"); done
        (cd /tmp && python3 "$repo/bench/engine_ops.py" sudoku_attn 768 --ops "${SM90_OPS:-auto}" "${sets[@]}" \
            --kernels "${SM90_KERNELS:-0}" --out "$out/engine_ops.jsonl") 2>&1 | tee -a "$log"
    fi
elif [ "$phase" = mlpt ]; then
    timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/kernels/test_token_mix.py \
        > "$out/pytest_mlpt.log" 2>&1 || true
    tail -3 "$out/pytest_mlpt.log" | tee -a "$log"
    for tool in memcheck racecheck; do
        timeout 120 compute-sanitizer --tool "$tool" --error-exitcode 9 python3 bench/sanitize_triton.py token_mix \
            >> "$out/sanitizer_mlpt.log" 2>&1 && echo "$tool: clean" | tee -a "$log" \
            || echo "$tool: FAILED (see sanitizer_mlpt.log)" | tee -a "$log"
    done
    for kernel in "" --tma; do
        for batch in 768 1; do
            (cd /tmp && python3 "$repo/bench/token_mix.py" --batch "$batch" $kernel --json "$out/token_mix.jsonl") \
                2>&1 | tee -a "$log" || true
        done
    done
    for tile in ${TOKEN_MIX_TILES:-}; do  # one process each: a tile that faults takes its CUDA context down
        (cd /tmp && timeout 60 python3 "$repo/bench/token_mix.py" --tile "$tile" --json "$out/token_mix.jsonl") 2>&1 \
            | tail -1 | tee -a "$log" || true
    done
    base=add_rms_norm,swiglu,linear_swiglu
    (cd /tmp && python3 "$repo/bench/engine_ops.py" sudoku_mlpt 768 --ops auto,reference --auto-ops "$base" \
        --auto-ops "$base,token_mix" --out "$out/engine_ops.jsonl") 2>&1 | tee -a "$log"
    (cd /tmp && python3 "$repo/bench/engine_ops.py" sudoku_mlpt 768 --ops auto --auto-ops "$base,token_mix" \
        --token-mix-pointer --out "$out/engine_ops.jsonl") 2>&1 | tee -a "$log"
elif [ "$phase" = b1 ]; then
    steps=" ${B1_STEPS:-alone sweep tests sanitize engine profile} "
    # the kernel alone first: a spin barrier that never opens (programs not all resident) shows here as a
    # timeout, and the persistent form then stays out of the steps after it
    hangs=0
    if [[ $steps == *" alone "* ]]; then
        (cd /tmp && timeout 150 python3 "$repo/bench/small_layer.py" --batch 1,8 --json "$out/small_layer.jsonl") \
            2>&1 | tee -a "$log" || hangs=1
    fi
    if [[ $steps == *" sweep "* && $hangs = 0 ]]; then
        (cd /tmp && timeout 240 python3 "$repo/bench/small_layer.py" --batch 1 --sweep \
            --json "$out/small_layer_sweep.jsonl") 2>&1 | cut -c1-240 | tee -a "$log" || true
    fi
    [ "$hangs" = 0 ] || echo "small_layer: failed or timed out; the persistent form is left out below" | tee -a "$log"
    pick=(); [ "$hangs" = 0 ] || pick=(-k "not True and not chain")  # the six-launch form only
    if [[ $steps == *" tests "* ]]; then
        timeout 240 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/kernels/test_small_layer.py \
            "${pick[@]}" > "$out/pytest_small_layer.log" 2>&1 || true
        tail -3 "$out/pytest_small_layer.log" | tee -a "$log"
    fi
    # a spin barrier: a tool that ran programs one at a time would hang it
    for tool in $([[ $steps == *" sanitize "* && $hangs = 0 ]] && echo memcheck racecheck); do
        timeout 90 compute-sanitizer --tool "$tool" --error-exitcode 9 python3 bench/sanitize_triton.py small_layer \
            >> "$out/sanitizer_small_layer.log" 2>&1 && echo "$tool: clean" | tee -a "$log" \
            || echo "$tool: FAILED or timed out (see sanitizer_small_layer.log)" | tee -a "$log"
    done
    base=add_rms_norm,swiglu,linear_swiglu
    sets=(--auto-ops "$base")
    few=attention_few_puzzles
    sets_default=$few$([ "$hangs" = 1 ] || echo ";$few,small_layer")
    IFS=';' read -ra extra <<< "${B1_SETS:-$sets_default}"
    for set in "${extra[@]}"; do sets+=(--auto-ops "$base,$set"); done
    if [[ $steps == *" ncu "* ]]; then  # each phase, the persistent launch, the official layer: one call each
        (cd /tmp && timeout 240 ncu --profile-from-start off --set detailed --section WarpStateStats \
            --section SchedulerStats python3 "$repo/bench/small_layer.py" --batch 1 --ncu) \
            > "$out/ncu_small_layer.txt" 2>&1 || true
        grep -E "^  [^ ].*\(|Duration|Memory Throughput|L2 Cache Throughput" "$out/ncu_small_layer.txt" \
            | head -60 | tee -a "$log"
    fi
    for config in $([[ $steps == *" engine "* ]] && echo "${B1_CONFIGS:-sudoku_attn}"); do
        (cd /tmp && python3 "$repo/bench/engine_ops.py" "$config" 1 --ops auto,reference "${sets[@]}" \
            --out "$out/engine_ops_b1.jsonl") 2>&1 | tee -a "$log"
    done
    if [[ $steps == *" profile "* ]]; then
        set -- ${B1_CONFIGS:-sudoku_attn}
        (cd /tmp && trm-fast profile "$1" --mode infer --compile --batch 1 --warmup 1 --steps 1 \
            --out "$out/profile_b1") 2>&1 | tail -30 | tee -a "$log"
    fi
    if [[ $steps == *" profile_small "* ]]; then  # the same with the whole-layer kernel in auto's set
        set -- ${B1_CONFIGS:-sudoku_attn}
        (cd /tmp && python3 -c "import sys; from trm_fast import backend
backend.AUTO_OPS = set(backend.AUTO_OPS) | {'attention_few_puzzles', 'small_layer'}
from trm_fast.cli.main import main; sys.exit(main(sys.argv[1:]))" profile "$1" --mode infer --compile --batch 1 \
            --warmup 1 --steps 1 --out "$out/profile_b1_small") 2>&1 | tail -30 | tee -a "$log"
    fi
elif [ "$phase" = infer ]; then
    # one call may not hold them all (10 minutes): CONFIGS and B1_CONFIGS pick, an empty one skips
    configs=${CONFIGS-sudoku_attn sudoku_hrm sudoku_mlpt arc_attn}; b1_configs=${B1_CONFIGS-sudoku_attn arc_attn}
    if [ -n "$configs" ]; then
        bench $configs --mode infer --backend engine,reference-compile,reference-eager --warmup 1 --reps 3 \
            --json "$out/bench_infer.json" --png "$out/bench_infer.png"
    fi
    if [ -n "$b1_configs" ]; then
        bench $b1_configs --mode infer --batch 1 --backend engine,reference-graphs --warmup 2 --reps 5 \
            --json "$out/bench_infer_b1.json" --no-png
    fi
elif [ "$phase" = where ]; then
    # the profile first (its kernels by name, trace dropped: large, and the table holds what it says), then the
    # carried chain's sets side by side, each bounded so that the first result comes back whatever the second does
    (cd /tmp && timeout 150 trm-fast profile "${WHERE_CONFIG:-sudoku_attn}" --mode infer --compile --batch 768 \
        --warmup 1 --steps 1 --out "$out/profile_b768") 2>&1 | tail -30 | tee -a "$log" || true
    rm -f "$out/profile_b768/trace.json.gz"
    base=add_rms_norm,swiglu,linear_swiglu,linear_swiglu_sm90,linear_rope_sm90
    (cd /tmp && timeout 240 python3 "$repo/bench/engine_ops.py" sudoku_attn 768 --ops auto --auto-ops "$base" \
        --auto-ops "$base,carried_norm" --reps 3 --kernels 25 --out "$out/engine_ops_kernels.jsonl") 2>&1 \
        | tee -a "$log" || true
else
    echo "unknown phase $phase: kernels, tests, ncu, sm90, mlpt, b1, infer or where" >&2; exit 2
fi
