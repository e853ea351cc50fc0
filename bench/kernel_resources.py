"""Registers, spills and shared memory of every tile config of trm_fast's autotuned Triton kernels, compiled for
a GPU that need not be here (default sm_90a, the H200's): which configs overflow shared memory, which
spill, and how many programs of each an SM can hold, before any device time is spent.

    python bench/kernel_resources.py                      # every kernel, bf16, all configs
    python bench/kernel_resources.py rope_attention_tma --dtype fp32 --first 2
    python bench/kernel_resources.py small_layer small_layer_tma --set PHASE=3 --sass

--sass adds what the SASS holds: its instructions, the longest loop's body (instructions from a backward branch
to its target), and the count of a few that tell how a kernel feeds its tensor cores: HGMMA (wgmma), LDGSTS
(cp.async), UTMALDG (TMA loads) and MEMBAR (at sm_90, the proxy fence Triton puts before a wgmma that reads what
cp.async wrote; a TMA load needs none). --set overrides a constexpr (PHASE=3: the small layer's phase D alone).

The compile is Triton's own for that target (no GPU, no driver: the CPU machine and CI can run it); the
resources are read from the cubin with the cuobjdump that Triton's wheel ships. Run it with the device's
Triton (a wheel unpacked on PYTHONPATH does) to see what the device will compile. Registers are per thread;
"spill" is the local memory (stack) a thread uses; programs per SM are what the registers (64 K per SM) and
the shared memory (228 KiB per SM, 1 KiB kept per program) allow together, capped at 32. The Triton
version here may differ from the device's (its compiler allocates differently): figures to compare configs
with, not the device's exact numbers.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

# sudoku_attn's layer at batch 1 as kernels/small_layer.py runs it (its descriptors' blocks follow BM, BN, BK, HD)
_SMALL_LAYER = {"H": 8, "D": 512, "I": 1536, "HD": 64, "BS": 128, "USE_ROPE": True, "PRECISION": "tf32", "PHASE": -1,
                "SPLIT": 8, "BM": 64, "BN": 64, "BK": 64, "BQ": 64, "BR": 1, "BD": 512, "WORK": True,
                "EQUAL_HALVES": True}
# name: (kernel module, kernel, constexprs besides the config's, descriptor blocks from all the constexprs)
KERNELS = {
    "linear_swiglu_tma": ("linear_swiglu", "_linear_swiglu_tma_kernel", {"INPUT_PRECISION": "tf32"},
                          lambda m: {"x_desc": (m["BLOCK_M"], m["BLOCK_K"]), "w_desc": (m["BLOCK_N"], m["BLOCK_K"]),
                                     "y_desc": (m["BLOCK_M"], m["BLOCK_N"])}),
    "linear_swiglu_pointer": ("linear_swiglu", "_linear_swiglu_kernel", {"INPUT_PRECISION": "tf32", "EVEN_K": True},
                              None),
    "linear_rope": ("linear_rope", "_linear_rope_kernel",
                    {"INPUT_PRECISION": "tf32", "HALF_DIM": 32, "EQUAL_HALVES": True},
                    lambda m: {"x_desc": (m["BLOCK_M"], m["BLOCK_K"]), "w_desc": (m["BLOCK_N"], m["BLOCK_K"]),
                               "y_desc": (m["BLOCK_M"], 2 * m["BLOCK_N"])}),
    "rope_attention": ("attention", "_rope_attention_fwd_kernel",
                       {"HEAD_DIM": 64, "USE_ROPE": True, "EQUAL_HALVES": True, "DOT_PRECISION": "tf32"}, None),
    "rope_attention_tma": ("attention", "_rope_attention_tma_kernel",
                           {"HEAD_DIM": 64, "USE_ROPE": True, "EQUAL_HALVES": True, "DOT_PRECISION": "tf32",
                            "BLOCK": 128},
                           lambda m: {"half_desc": (128, 32), "v_desc": (128, 64)}),
    "linear_add_rms_norm": ("linear_add_rms_norm", "_linear_add_rms_norm_kernel",
                            {"INPUT_PRECISION": "tf32", "BLOCK_N": 256, "BLOCK_K": 64},
                            lambda m: {"x_desc": (m["BLOCK_M"], 64), "w_desc": (256, 64),
                                       "r_desc": (m["BLOCK_M"], 256), "y_desc": (m["BLOCK_M"], 256)}),
    "token_mix": ("token_mix", "_token_mix_kernel", {"INPUT_PRECISION": "tf32", "BLOCK_S": 128}, None),
    "token_mix_tma": ("token_mix", "_token_mix_tma_kernel", {"INPUT_PRECISION": "tf32", "BLOCK_S": 128},
                      lambda m: {"wgu_desc": (m["BLOCK_I"], 128), "wd_desc": (128, m["BLOCK_I"]),
                                 "h_desc": (1, 128, m["BLOCK_D"]), "y_desc": (1, 128, m["BLOCK_D"])}),
    "attention_backward": ("attention_backward", "_attention_backward_kernel",
                           {"D": 64, "BLOCK": 128, "ROPE": True, "EQUAL_HALVES": True, "IEEE": False}, None),
    "down_swiglu_backward": ("down_swiglu_backward", "_down_swiglu_backward_kernel", {"INPUT_PRECISION": "tf32"},
                             lambda m: {"dy_desc": (m["BLOCK_M"], m["BLOCK_K"]), "w_desc": (m["BLOCK_K"], m["BLOCK_N"]),
                                        "gu_desc": (m["BLOCK_M"], 2, m["BLOCK_N"]),
                                        **{f"{t}_desc": (m["BLOCK_M"], m["BLOCK_N"])
                                           for t in ("gate", "up", "dgate", "dup", "h")}}),
    # not autotuned: its module's LAUNCH config, the persistent form at sudoku_attn's batch 1
    "small_layer": ("small_layer", "_small_layer_kernel", {**_SMALL_LAYER, "TMA": False, **dict.fromkeys(
        ("h_desc", "wqkv_desc", "attn_desc", "wo_desc", "s1_desc", "wgu_desc", "a_desc", "wd_desc"))}, None),
    "small_layer_tma": ("small_layer", "_small_layer_kernel", {**_SMALL_LAYER, "TMA": True},
                        lambda m: {**dict.fromkeys(("h_desc", "attn_desc", "s1_desc", "a_desc", "wd_desc"),
                                                   (m["BM"], m["BK"])),
                                   "wqkv_desc": (m["HD"] // 2, m["BK"]), "wo_desc": (m["BN"], m["BK"]),
                                   "wgu_desc": (m["BN"], m["BK"])}),
}
SM_REGISTERS, SM_SHARED, PROGRAM_RESERVE = 65536, 233472, 1024


def signature(fn, dtype: str, constexprs: dict, blocks: dict) -> dict:
    """Triton's signature for a compile: by argument name, as trm_fast's kernels name them (`*_desc` a tensor
    descriptor, `cos_ptr`/`sin_ptr` fp32 tables and the other fp32 pointers named below, other `*_ptr`
    activations, `qk_scale`, `scale` and `eps` floats, the rest ints)."""
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_desc"):
            sig[name] = f"tensordesc<{dtype}[{','.join(map(str, blocks[name]))}]>"
        elif name.endswith("_ptr"):
            fp32 = ("cos_ptr", "sin_ptr", "rstd_ptr", "ss_ptr", "part_ptr", "lse_ptr")
            sig[name] = "*fp32" if name in fp32 else "*i32" if name == "sync_ptr" else f"*{dtype}"
        else:
            sig[name] = "fp32" if name in ("qk_scale", "scale", "eps") else "i32"
    return sig


def resources(kernel, config, dtype: str, fixed: dict, blocks, arch: int, sass: bool = False) -> dict:
    """Compile one config for sm_<arch> and read what it takes; with `sass`, what its SASS holds (sass_counts)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = kernel
    while not isinstance(fn, triton.runtime.jit.JITFunction):  # under @triton.autotune or @triton.heuristics
        fn = fn.fn
    constexprs = {**fixed, **config.kwargs}
    sig = signature(fn, dtype, constexprs, blocks(constexprs) if blocks else {})
    # pointers 16-byte aligned, as a launch on torch's tensors specialises them: without it no load is wider
    # than an element and no K loop is pipelined, so the registers and shared memory read would not be the run's
    aligned = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(fn.arg_names) if sig[name].startswith("*")}
    compiled = triton.compile(ASTSource(fn, sig, constexprs=constexprs, attrs=aligned),
                              target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": config.num_warps, "num_stages": config.num_stages})
    cuobjdump = os.path.join(os.path.dirname(triton.knobs.nvidia.ptxas.path), "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        usage = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True,
                               check=True).stdout
        listing = subprocess.run([cuobjdump, "-sass", f.name], capture_output=True, text=True,
                                 check=True).stdout if sass else ""
    regs, stack = (int(re.search(rf"{key}:(\d+)", usage).group(1)) for key in ("REG", "STACK"))
    shared = compiled.metadata.shared
    threads = 32 * config.num_warps
    programs = min(SM_REGISTERS // max(1, regs * threads), SM_SHARED // (shared + PROGRAM_RESERVE), 32)
    found = {"registers": regs, "spill_bytes": stack, "shared_bytes": shared, "programs_per_sm": programs}
    return {**found, **sass_counts(listing)} if sass else found


SASS_OPS = ("HGMMA", "LDGSTS", "UTMALDG", "MEMBAR")


def sass_counts(listing: str) -> dict:
    """From cuobjdump -sass: the instructions, the longest loop body and the count of each of SASS_OPS."""
    code = [(int(address, 16), text) for address, text in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", listing)]
    loops = [(address - int(target, 16)) // 16 + 1 for address, text in code
             for target in re.findall(r"\bBRA\b.*?0x([0-9a-f]+)", text) if int(target, 16) < address]
    ops = [re.sub(r"^@!?U?P\w+\s+", "", text).split(".")[0].split()[0] for _, text in code]
    return {"instructions": len(code), "longest_loop": max(loops, default=0),
            **{op: ops.count(op) for op in SASS_OPS}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kernels", nargs="*", help=f"any of {', '.join(KERNELS)} (default: all)")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: Hopper)")
    parser.add_argument("--first", type=int, help="only the first N configs of each kernel")
    parser.add_argument("--sass", action="store_true", help="also count what the SASS holds (see above)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one of the kernel's constexprs (an int, or the text as given)")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key] = int(value) if value.lstrip("-").isdigit() else value
    os.environ.pop("TRITON_INTERPRET", None)  # before the kernels load: a real compile and the real tile lists
    unknown = [k for k in args.kernels if k not in KERNELS]
    if unknown:
        parser.error(f"unknown kernel(s) {', '.join(unknown)}: choose from {', '.join(KERNELS)}")
    import importlib

    import triton

    print(f"# Triton {triton.__version__}, sm_{args.arch}, {args.dtype}", flush=True)

    for name in args.kernels or KERNELS:
        module, attr, fixed, blocks = KERNELS[name]
        fixed = {**fixed, **overrides}
        loaded = importlib.import_module(f"trm_fast.kernels.{module}")
        kernel = getattr(loaded, attr)
        configs = kernel.configs if hasattr(kernel, "configs") else [triton.Config({}, **loaded.LAUNCH)]
        for config in configs[:args.first]:
            tile = " ".join(f"{k}={v}" for k, v in config.kwargs.items()) + f" warps={config.num_warps} " \
                f"stages={config.num_stages}"
            try:
                r = resources(kernel, config, args.dtype, fixed, blocks, args.arch, args.sass)
            except Exception as error:  # a config the compiler refuses: say so, go on
                print(f"{name:<22} {tile:<62} failed: {type(error).__name__}: {str(error).splitlines()[0][:60]}")
                continue
            sass = "".join(f" {r[key]:>5} {key}" for key in ("instructions", "longest_loop", *SASS_OPS)) \
                if args.sass else ""
            print(f"{name:<22} {tile:<62} {r['registers']:>3} regs {r['spill_bytes']:>5} B spill "
                  f"{r['shared_bytes'] / 1024:>6.1f} KiB shared {r['programs_per_sm']:>2} per SM{sass}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
