#!/usr/bin/env bash
# One call on the GPU machine: install, GPU tests and compute-sanitizer, then `trm-fast bench ARGS`.
# Usage (from the repository root, on the device): bash bench/device_run.sh COMMIT [BENCH ARGS...]
# SKIP_CHECKS=1 skips the GPU tests and compute-sanitizer; without BENCH ARGS nothing is benchmarked.
# Writes logs, bench.json and bench.png under $OUT (default ./out). Fails loudly if CUDA is present but
# the fused backend is not.
set -euo pipefail
commit=${1:?usage: bench/device_run.sh COMMIT [bench args]}; shift
out=${OUT:-out}; mkdir -p "$out"; out=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
py=python3

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $py -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  echo "commit $commit"; } | tee "$out/device.log"

echo "== install" | tee -a "$out/device.log"
bash bench/device_install.sh 2>&1 | tee -a "$out/device.log"
(cd /tmp && $py - <<'PY') 2>&1 | tee -a "$out/device.log"
import torch, trm_fast.backend as b
assert torch.cuda.is_available(), "no CUDA device"
reasons = [r for r in (b.native_status(), b.triton_status()) if r]
if reasons:
    raise SystemExit("fused backend unavailable on a CUDA machine: " + "; ".join(reasons))
print("fused backend available")
PY

if [ "${SKIP_CHECKS:-0}" != 1 ]; then
echo "== GPU tests" | tee -a "$out/device.log"
$py -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$out/gpu_tests.log" | tail -5 || true  # the bench still runs

echo "== compute-sanitizer" | tee -a "$out/device.log"
: > "$out/sanitizer.log"
for script in sanitize_add_rms_norm sanitize_triton; do  # the CUDA kernel, then every Triton kernel
    for tool in memcheck racecheck; do
        compute-sanitizer --tool "$tool" --error-exitcode 9 $py "bench/$script.py" >> "$out/sanitizer.log" 2>&1 \
            && echo "$script $tool: clean" | tee -a "$out/device.log" \
            || echo "$script $tool: FAILED (see sanitizer.log)" | tee -a "$out/device.log"
    done
done
tail -3 "$out/sanitizer.log"
fi

if [ $# -gt 0 ]; then
echo "== bench" | tee -a "$out/device.log"
# from outside the repository: `python -m` would import the source tree, which has no built extension
(cd /tmp && $py -m trm_fast.cli.main bench "$@" --commit "$commit" --json "$out/bench.json" --png "$out/bench.png") \
    2>&1 | tee "$out/bench.log"
fi
