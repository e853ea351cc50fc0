#!/usr/bin/env bash
# Installs this checkout on the GPU machine (no network there): first the CUTLASS headers' wheel where the
# call carried one in .whl/ (pip download --no-deps nvidia-cutlass -d .whl here; git ignores the folder), so
# that the build compiles Hopper's kernels of csrc/sm90, then trm_fast itself without build isolation.
# Prints what pip says, less its warning about running as root. Sourced or run from the repository root.
shopt -s nullglob
wheels=(.whl/nvidia_cutlass-*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
    python3 -m pip install --no-deps -q "${wheels[@]}" 2>&1 | grep -v "as the 'root'"
fi
python3 -m pip install --no-build-isolation --no-deps -q . 2>&1 | grep -v "as the 'root'"
cd /tmp && python3 - <<'PY'  # the installed trm_fast, not the source tree's
import json, pathlib, trm_fast
info = json.loads((pathlib.Path(trm_fast.__file__).parent / "_build_info.json").read_text())
print("built:", {key: info.get(key) for key in ("cuda_extension", "reason", "cutlass", "cutlass_reason")})
PY
true
