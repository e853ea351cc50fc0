#!/usr/bin/env bash
# The GPU test suite in shards that each fit one device call (the whole of `-m gpu` runs past the 10-minute
# bound: cut at about 77% at 32f5ce9). Usage (repository root, on the device):
#   bash bench/gpu_tests.sh COMMIT SHARD SHARDS [PYTEST ARGS...]     e.g. bash bench/gpu_tests.sh abc1234 0 3
# Shard k of n runs every n-th test id from k of the collected tests marked `gpu` (MARK, a pytest marker
# expression; MARK="" collects every test, the device-agnostic ones too), so each shard gets its share of every
# file's slow parametrisations.
# TEST_TIMEOUT bounds the run (default 540 s): a cut shard says so and keeps what passed until then.
# Writes gpu_tests_SHARD.log (pytest's summary, the slowest 15) and gpu_tests_SHARD.xml (JUnit) under $OUT.
set -euo pipefail
commit=${1:?usage: bench/gpu_tests.sh COMMIT SHARD SHARDS [pytest args]}
shard=${2:?usage: bench/gpu_tests.sh COMMIT SHARD SHARDS [pytest args]}
shards=${3:?usage: bench/gpu_tests.sh COMMIT SHARD SHARDS [pytest args]}
shift 3
if ! [[ "$shard" =~ ^[0-9]+$ && "$shards" =~ ^[0-9]+$ ]] || [ "$shards" -lt 1 ] || [ "$shard" -ge "$shards" ]; then
    echo "bench/gpu_tests.sh: SHARD must be 0 to SHARDS - 1 and SHARDS at least 1, got SHARD=$shard SHARDS=$shards" >&2
    exit 2
fi
out=${OUT:-out}; mkdir -p "$out"; out=$(cd "$out" && pwd)
log="$out/gpu_tests_$shard.log"
source "$(dirname "$0")/device_common.sh"

mark=${MARK-gpu}
ids=$(mktemp)
python3 -m pytest --collect-only -q -p no:cacheprovider ${mark:+-m "$mark"} tests 2>/dev/null | grep "::" > "$ids" \
    || true
# an array, not words: some ids hold brackets and spaces
mapfile -t mine < <(awk -v k="$shard" -v n="$shards" '(NR - 1) % n == k' "$ids")
echo "shard $shard of $shards: ${#mine[@]} of $(wc -l < "$ids") tests" | tee -a "$log"
[ "${#mine[@]}" -gt 0 ] || exit 0
rc=0
timeout "${TEST_TIMEOUT:-540}" python3 -m pytest -q -p no:cacheprovider --durations=15 \
    --junitxml "$out/gpu_tests_$shard.xml" "$@" "${mine[@]}" >> "$log" 2>&1 || rc=$?
[ "$rc" = 124 ] && echo "shard $shard: cut at ${TEST_TIMEOUT:-540} s; what ran is above" | tee -a "$log"
tail -4 "$log"
