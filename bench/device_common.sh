# Sourced by the device scripts (bench/fused_bench.sh, bench/train_bench.sh) after they set `commit` and
# `log`: the machine and versions at the head of the log, trm_fast installed from this checkout, and
# `bench ARGS` for `trm-fast bench` rows of this commit. Logs, JSON and PNGs go under $OUT.
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
repo=$PWD

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"  # compiles and launches
  echo "commit $commit"; } | tee "$log"
# SKIP_INSTALL=1: a second phase in the same device call, on the install of the first
[ "${SKIP_INSTALL:-0}" = 1 ] || bash "$(dirname "${BASH_SOURCE[0]}")/device_install.sh" 2>&1 | tee -a "$log"

bench() {  # from outside the repository: `python -m` there would import the source tree
    (cd /tmp && python3 -m trm_fast.cli.main bench "$@" --commit "$commit") 2>&1 | grep -v "it/s\]$" | tee -a "$log"
}
