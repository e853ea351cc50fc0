"""The MLP's backward through its down projection and SwiGLU in one kernel: the input gradient of the down
projection, dh = dy W, never leaves the chip; SwiGLU's backward runs on its tiles.

Math, per element (m, j), j < I (fp32 accumulation, then as the unfused backward rounds):
    dh = round(sum_k dy[m, k] W[k, j])                               (round: to dy's dtype, as cuBLAS writes dh)
    g, u = gate_up[m, j], gate_up[m, I + j];  s = sigmoid(g)          (fp32)
    dgate_up[m, j] = round(dh u s (1 + g (1 - s))),  dgate_up[m, I + j] = round(dh g s)
    h[m, j] = round(g s u)                                             (the forward's bits, for W's gradient)
the expressions of kernels/swiglu.py's backward, so the same bits wherever dh is. W is the down projection's
weight as nn.Linear stores it, (K, I) for an MLP of width K: row k of W is what dy's column k multiplies, so
the GEMM reads W as it lies (no transpose).

Why: the unfused backward writes dh (M, I) from cuBLAS and reads it back in SwiGLU's pass, which reads gate_up
and writes dgate_up and h: 12 I bytes a row in bf16 for the pass, 4 I more for dh's round trip. Fused, a call
moves gate_up in and dgate_up and h out, 10 I bytes a row, and the GEMM's 2 M K I FLOPs run under that
traffic. dgate_up may be gate_up itself (in place: each element is read before the same tile writes it).

Floor per call at sudoku_attn's batch 768 (M = 74,496, K = 512, I = 1536), bf16: 117 GFLOP (172 us at cuBLAS's
683 TFLOP/s measured on an H100) and 1.22 GB with dy's reads (404 us at 3.02 TB/s): memory-bound, against the
unfused pair's 172 + 455 us (cuBLAS's GEMM, then the pass's 1.37 GB). Measured on an H100: 614 us in its best
config against the pair's 658, and no faster in the compiled training step, so 'auto' leaves it out
(trm_fast.backend.AUTO_OPS). bench/NOTES.md, "SwiGLU's backward in the down projection's backward GEMM", has the
floor and the measurements.

The kernel is persistent (kernels/tma_gemm.py): CTAS programs per SM walk the tiles in grouped order, the
tensor memory accelerator loads dy's and W's blocks and gate's and up's tiles (zero past the edges) on Hopper
and stores the three output tiles (stores from registers, in the dot's layout, took Triton 3.6 to 255 registers
and spills a thread at every tile size, bench/kernel_resources.py). Shapes: dy (M, K), W (K, I), gate_up (M, 2I),
dgate_up (M, 2I) and h (M, I), each with unit stride along its last axis and rows 16-byte aligned, in one 16-bit
dtype or fp32 (IEEE products, as F.linear computes).
"""

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from . import tma_gemm


def _tiles():
    """(BLOCK_M, BLOCK_N, BLOCK_K, warps, stages, programs per SM, LOAD): the three configs that beat the pair it
    replaces, of 36 timed alone on an H100 (bench/down_swiglu_sweep.py; bench/NOTES.md, "SwiGLU's backward in the
    down projection's backward GEMM"). One fp32 accumulator per program and the epilogue's tiles in registers;
    several programs per SM, so that one's epilogue overlaps another's dots (kernels/tma_gemm.py). LOAD: how gate's
    and up's tiles come in (`_gate_and_up`)."""
    return [(64, 64, 64, 4, 3, 3, 1), (64, 128, 64, 4, 3, 2, 0), (128, 64, 64, 8, 3, 2, 0)]


def configs(tiles):
    """Autotuner configs from `_tiles`-like tuples (one small config under the CPU interpreter)."""
    made = tma_gemm.configs([t[:6] for t in tiles], pre_hook=_set_block_shapes)
    for config, tile in zip(made, tiles):
        config.kwargs["LOAD"] = tile[6]
    return made


def _set_block_shapes(nargs):
    """The pre-hook: each descriptor's block from the config's tile."""
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["dy_desc"].block_shape = [bm, bk]
    nargs["w_desc"].block_shape = [bk, bn]
    nargs["gu_desc"].block_shape = [bm, 2, bn]
    for name in ("gate_desc", "up_desc", "dgate_desc", "dup_desc", "h_desc"):
        nargs[name].block_shape = [bm, bn]


def shared_bytes(config, element_size: int) -> int:
    """A program's shared memory, about as Triton 3.6 allocates it for sm_90a (bench/kernel_resources.py; at most
    8 KiB over): the stages of dy's and W's blocks, and the epilogue's staging, one BLOCK_M x BLOCK_N tile where
    gate and up load apart and two where they load together, and one more for the flattened loop."""
    bm, bn, bk = config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], config.kwargs["BLOCK_K"]
    staged = bm * bn * (2 if config.kwargs["LOAD"] == 0 else 3)
    return (config.num_stages * (bm * bk + bk * bn) + staged) * element_size


def _prune(configs, named_args, **kwargs):
    """Tiles whose programs fit shared memory, no taller than the rows."""
    size = named_args["ELEMENT_SIZE"]
    fit = [c for c in configs if tma_gemm.fits_shared_bytes(shared_bytes(c, size), c.kwargs["CTAS"])]
    return tma_gemm.prune_rows(fit, named_args["M"])


@triton.jit
def _gate_and_up(gate_desc, up_desc, gu_desc, off_m, off_n, LOAD: tl.constexpr):
    """gate's and up's BLOCK_M x BLOCK_N tiles at (off_m, off_n) of their halves, in fp32: two loads (LOAD 0), or one
    of both through the (M, 2, I) view of gate_up (LOAD 1), which keeps twice the bytes in flight."""
    if LOAD == 0:
        return gate_desc.load([off_m, off_n]).to(tl.float32), up_desc.load([off_m, off_n]).to(tl.float32)
    g, u = tl.split(tl.permute(gu_desc.load([off_m, 0, off_n]), (0, 2, 1)))
    return g.to(tl.float32), u.to(tl.float32)


# gate_up_ptr: gate_up as a tensor, which the kernel does not read (its descriptors do), so that the autotuner
# restores it after each timing run: written in place, a second run would read the first one's dgate_up.
@triton.autotune(configs=configs(_tiles()), key=["M", "I", "K", "ELEMENT_SIZE"], restore_value=["gate_up_ptr"],
                 prune_configs_by={"early_config_prune": _prune}, do_bench=tma_gemm.bench)
@triton.jit
def _down_swiglu_backward_kernel(gate_up_ptr, dy_desc, w_desc, gate_desc, up_desc, gu_desc, dgate_desc, dup_desc,
                                 h_desc, M, I, K, ELEMENT_SIZE, INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                                 CTAS: tl.constexpr, LOAD: tl.constexpr):
    out_ty: tl.constexpr = h_desc.dtype
    # flattened into the K loop by Triton's pipeliner: the next tile's dy and W blocks load during this tile's
    # epilogue. The six fastest configs timed on an H100 all flattened it, each 7-9% faster than unflattened; it
    # lost where its staging took a program off the SM (bench/NOTES.md)
    for tile in tl.range(tl.program_id(0), tl.cdiv(M, BLOCK_M) * tl.cdiv(I, BLOCK_N), tl.num_programs(0),
                         flatten=True):
        pid_m, pid_n = tma_gemm.tile_coords(tile, M, I, BLOCK_M, BLOCK_N, GROUP_M)
        off_m, off_n = pid_m * BLOCK_M, pid_n * BLOCK_N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(0, tl.cdiv(K, BLOCK_K)):
            acc = tl.dot(dy_desc.load([off_m, k * BLOCK_K]), w_desc.load([k * BLOCK_K, off_n]), acc,
                         input_precision=INPUT_PRECISION)
        dh = acc.to(out_ty).to(tl.float32)  # dh as cuBLAS would have written it
        g, u = _gate_and_up(gate_desc, up_desc, gu_desc, off_m, off_n, LOAD)
        s = tl.sigmoid(g)
        dg = (dh * u * s * (1.0 + g * (1.0 - s))).to(out_ty)
        du = (dh * g * s).to(out_ty)
        # + dh * 0: h in dh's register layout. Without a tie to dh, Triton 3.6 computes g, u and the sigmoid a
        # second time in the loads' own layout for h alone: 255 registers and 0.8 KB of spill a thread at 128 x 64
        # tiles, against 198 and none (bench/kernel_resources.py). Adding a zero leaves h's bits as they were,
        # the forward's, wherever dh is finite; where it is not, dy or W is, and so is W's gradient.
        h = (g * s * u + dh * 0.0).to(out_ty)
        # all three computed before the first store: stores between them took 255 registers and spills again
        # (the descriptors clip each store at M and at I: each half of dgate_up is its own (M, I) view)
        dgate_desc.store([off_m, off_n], dg)
        dup_desc.store([off_m, off_n], du)
        h_desc.store([off_m, off_n], h)


def unsupported(dy: torch.Tensor, weight: torch.Tensor, gate_up: torch.Tensor, dgate_up: torch.Tensor | None = None,
                h: torch.Tensor | None = None) -> str | None:
    """Why the kernel cannot take these tensors (2-D: dy (M, K), weight (K, I), gate_up (M, 2I), and the outputs
    dgate_up (M, 2I) and h (M, I) where given), or None: the tensor memory accelerator's rules (unit stride along
    the last axis, row strides and base addresses 16-byte aligned, the up halves' too) and a Hopper or newer GPU.
    Read at run time: it looks at the data pointers."""
    if dy.device.type == "cuda" and torch.cuda.get_device_properties(dy.device).major < 9:
        return "the kernel loads through the tensor memory accelerator: a Hopper or newer GPU"
    size = dy.element_size()
    if gate_up.shape[-1] // 2 * size % 16:
        return f"the up half of gate_up must start 16-byte aligned: I = {gate_up.shape[-1] // 2} elements"
    named = (("dy", dy), ("weight", weight), ("gate_up", gate_up), ("dgate_up", dgate_up), ("h", h))
    for name, t in ((name, t) for name, t in named if t is not None):
        if t.ndim != 2 or t.stride(1) != 1 or t.stride(0) * size % 16 or t.data_ptr() % 16:
            return (f"{name} must be 2-D with unit stride along its last axis and 16-byte aligned rows and address "
                    f"(shape {tuple(t.shape)}, strides {t.stride()}{', address not' if t.data_ptr() % 16 else ''})")
    return None


def down_swiglu_backward(dy: torch.Tensor, weight: torch.Tensor, gate_up: torch.Tensor,
                         dgate_up: torch.Tensor | None = None, h: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(dgate_up (M, 2I), h (M, I)) from dy (M, K), the down projection's weight (K, I) and the forward's gate_up
    (M, 2I). `dgate_up` may be gate_up itself (written in place) or any (M, 2I) tensor; `h` any (M, I) tensor;
    new ones where not given. Raises ValueError naming the input the kernel cannot take (`unsupported`)."""
    m, k = dy.shape
    inner = weight.shape[1]
    if weight.shape[0] != k or gate_up.shape != (m, 2 * inner):
        raise ValueError(f"need dy (M, K), weight (K, I) and gate_up (M, 2I); got dy {tuple(dy.shape)}, weight "
                         f"{tuple(weight.shape)}, gate_up {tuple(gate_up.shape)}")
    if dgate_up is None:
        dgate_up = torch.empty_like(gate_up, memory_format=torch.contiguous_format)
    if h is None:
        h = gate_up.new_empty((m, inner))
    for name, t, shape in (("dgate_up", dgate_up, (m, 2 * inner)), ("h", h, (m, inner))):
        if t.shape != shape or t.dtype != dy.dtype:
            raise ValueError(f"{name} must be a {shape} tensor of {dy.dtype}, got {tuple(t.shape)} {t.dtype}")
    why = unsupported(dy, weight, gate_up, dgate_up, h)
    if why is not None:
        raise ValueError(why)
    if m == 0 or inner == 0:
        return dgate_up, h
    # the pre-hook sets each block shape from the tile config
    pairs = gate_up.as_strided((m, 2, inner), (gate_up.stride(0), inner, 1))  # row m: [gate | up]
    views = (dy, weight, gate_up[:, :inner], gate_up[:, inner:], pairs, dgate_up[:, :inner], dgate_up[:, inner:], h)
    descs = [TensorDescriptor.from_tensor(t, [1] * t.ndim) for t in views]
    # fp32 operands: true fp32 products, as F.linear gives by default (tl.dot would take TF32 on a GPU)
    precision = "ieee" if dy.dtype == torch.float32 else "tf32"
    launch = tma_gemm.grid(dy.device, tma_gemm.tiles(m, inner))
    _down_swiglu_backward_kernel[launch](gate_up, *descs, m, inner, k, dy.element_size(), INPUT_PRECISION=precision)
    return dgate_up, h
