"""What the persistent TMA GEMM-epilogue kernels share (linear_swiglu, linear_rope): y = epilogue(x W^T) for a
row-major x (M, K) and a weight (N_total, K) as nn.Linear stores it.

CTAS programs per SM (a tile parameter) walk the output tiles in grouped order; the tensor memory accelerator
(Hopper and newer) loads every block, the tile sizes reaching the descriptors through the autotuner's pre-hook.
Two programs of one warpgroup each on an SM stand in for the warp-specialised ping-pong of cuBLAS's Hopper
kernels, which Triton's `warp_specialize` does not generate on Hopper: while one program runs its epilogue
and refills its pipeline (K = 512 is 8 steps of 64, so both recur every 8 steps) the other's dots run. On
an H200 that took the gate/up kernel from 474 us (128 x 128 tiles, 8 warps, alone on the SM) to 427 us
(128 x 64, 4 warps, two per SM) at sudoku_attn's batch 768, where cuBLAS's GEMM alone takes 342 us
(bench/gemm_tiles.py; bench/results/2026-11-29_h200_7ef693d_gemm_tiles.jsonl). Flattening the
tile loop into the K loop (`tl.range(..., flatten=True)`, as Triton's persistent matmul tutorial does, so
that the next tile's loads overlap this tile's epilogue) made the gate/up kernel slower on an H200: 602 us
against 543 us at sudoku_attn's batch 768 (bench/results/2026-11-29_h200_8e8edbf_microbench.json against
..._4fd08a9_microbench.json); the loops stay nested.
"""

import ctypes
import functools
import threading

import torch
import triton
import triton.language as tl

from ..backend import interpreting


@triton.jit
def tile_coords(tile, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(row tile, column tile) of tile number `tile` in grouped order: GROUP_M row tiles sweep the columns
    together, so their x tiles stay in L2 while the weight tiles stream past."""
    tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    group = tile // (GROUP_M * tiles_n)
    first_m = group * GROUP_M
    group_rows = min(tiles_m - first_m, GROUP_M)
    return first_m + (tile % (GROUP_M * tiles_n)) % group_rows, (tile % (GROUP_M * tiles_n)) // group_rows


@triton.jit
def two_blocks(x_desc, w_desc, off_m, off_n, second, K, INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
               BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """The persistent kernels' main loop: the fp32 accumulators of x's BLOCK_M rows from off_m times two
    BLOCK_N blocks of weight rows, from off_n and from second + off_n (gate and up; a column block and its
    rotation partners), both dots on one x tile per K step."""
    acc_a = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_b = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        x = x_desc.load([off_m, k * BLOCK_K])
        acc_a = tl.dot(x, w_desc.load([off_n, k * BLOCK_K]).T, acc_a, input_precision=INPUT_PRECISION)
        acc_b = tl.dot(x, w_desc.load([second + off_n, k * BLOCK_K]).T, acc_b, input_precision=INPUT_PRECISION)
    return acc_a, acc_b


def configs(tiles, pre_hook):
    """Autotuner configs from (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages) tiles, or with programs per SM as a
    sixth entry (CTAS, for the persistent kernels); one small config under the CPU interpreter (blocks of 32,
    so that the tests cross several tiles and K steps; autotuning would run every config through numpy)."""
    if interpreting():
        tiles = [(32, 32, 32, 4, 1, 1)[:len(tiles[0])]]
    made = []
    for bm, bn, bk, w, s, *ctas in tiles:
        meta = {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 4 if interpreting() else 8}
        made.append(triton.Config(meta | ({"CTAS": ctas[0]} if ctas else {}), num_warps=w, num_stages=s,
                                  pre_hook=pre_hook))
    return made


def set_block_shapes(nargs):
    """The persistent kernels' pre-hook: each descriptor's block from the config's tile (x_desc: BLOCK_M x
    BLOCK_K; w_desc: BLOCK_N x BLOCK_K; y_desc, where the kernel stores through one: BLOCK_M x BLOCK_N)."""
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["x_desc"].block_shape = [bm, bk]
    nargs["w_desc"].block_shape = [bn, bk]
    if "y_desc" in nargs:
        nargs["y_desc"].block_shape = [bm, bn]


def persistent_tiles():
    """The tiles the persistent kernels tune over, (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages, programs per SM);
    each program holds two BLOCK_M x BLOCK_N fp32 accumulators (gate and up; a column block and its rotation
    partners). Two programs per SM only with one warpgroup each: two of 8 warps would leave 128 registers a
    thread, all of them taken by two 128 x 128 accumulators."""
    return [(128, 128, 64, 8, 3, 1), (128, 128, 64, 8, 4, 1), (128, 64, 64, 4, 4, 1), (128, 64, 64, 8, 4, 1),
            (64, 128, 64, 4, 4, 1), (64, 64, 64, 4, 4, 1), (64, 64, 32, 4, 3, 1),
            (128, 64, 64, 4, 3, 2), (128, 64, 64, 4, 2, 2), (128, 64, 32, 4, 4, 2), (64, 128, 64, 4, 2, 2),
            (64, 64, 64, 4, 3, 2)]


def persistent_configs():
    """`persistent_tiles` as autotuner configs, with the pre-hook that sizes x_desc, w_desc and y_desc."""
    return configs(persistent_tiles(), pre_hook=set_block_shapes)


def prune_persistent(configs, named_args, out_blocks: int = 1, **kwargs):
    """The persistent kernels' tiles that fit shared memory (two weight blocks per K step, `out_blocks` output
    blocks staged for the store; the element size comes as the kernel argument ELEMENT_SIZE, which is also in
    their tuning key: the autotuner keys on the dtypes of tensor arguments only, and descriptors are not
    tensors), no taller than the rows."""
    fit = [c for c in configs if fits_shared_memory(c, named_args["ELEMENT_SIZE"], b_blocks=2, out_blocks=out_blocks)]
    return prune_rows(fit, named_args["M"])


@functools.lru_cache(maxsize=None)
def _shared_memory(device: int) -> int:
    return triton.runtime.driver.active.utils.get_device_properties(device)["max_shared_mem"]


def fits_shared_memory(config, element_size: int, b_blocks: int, out_blocks: int = 1) -> bool:
    """Whether a config's pipeline fits the SM's shared memory, CTAS programs of it where the config says so:
    `num_stages` copies of the x block and of `b_blocks` weight blocks, and `out_blocks` output blocks staged
    for the TMA store. (Triton's autotuner skips a config that fails to compile, but one that compiles and
    then cannot launch would be chosen and fail: at fp32, 128 x 128 tiles in 3 stages need 288 KiB where an
    H200 SM has 227.)"""
    bm, bn, bk = config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], config.kwargs["BLOCK_K"]
    need = (config.num_stages * (bm * bk + b_blocks * bn * bk) + out_blocks * bm * bn) * element_size
    return fits_shared_bytes(need, config.kwargs.get("CTAS", 1))


def fits_shared_bytes(need: int, programs: int = 1) -> bool:
    """Whether `programs` programs of `need` bytes of shared memory each fit one SM of this GPU: one may have
    227 KiB on Hopper, and the SM keeps 1 KiB per resident program on top. Always under the interpreter."""
    if interpreting():
        return True
    return programs * (need + 1024) <= _shared_memory(torch.cuda.current_device()) + 1024


def prune_rows(configs, rows: int):
    """Tiles no taller than the rows there are (a 256-row tile on 97 rows computes 159 rows of padding)."""
    cap = max(16, triton.next_power_of_2(rows))
    return [c for c in configs if c.kwargs["BLOCK_M"] <= cap] or configs[-1:]


def bench(kernel_call, quantiles):
    """Triton's timer with shorter windows than its default (25 ms warm-up, 100 ms of repeats per config):
    every new row count (the engine's narrow tail, each batch size) tunes again, inside a first solve."""
    return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)


def _sms(device: torch.device) -> int:
    """The SMs to fill (three under the CPU interpreter, so that each program walks several tiles), less
    PyTorch's SM carveout where one is set (torch._C._set_sm_carveout_experimental, as cuBLAS and inductor
    honour it: SMs left to kernels of other streams)."""
    if device.type != "cuda":
        return 3
    carveout = getattr(torch._C, "_get_sm_carveout_experimental", lambda: None)()
    return _device_sms(device) - (carveout or 0)


@functools.lru_cache(maxsize=None)
def _device_sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def grid(device: torch.device, work):
    """The persistent launch: the config's CTAS programs per SM, no more programs than the units of work its
    loop walks (`work(meta)`: `tiles` for a GEMM's output); each kernel strides that loop by tl.num_programs(0).
    Called just before the launch, it makes sure a CUDA context is current for the descriptors (`ensure_context`)."""
    ensure_context(device)
    return lambda meta: (min(_sms(device) * meta["CTAS"], work(meta)),)


def tiles(rows: int, cols: int):
    """The output tiles of a (rows, cols) GEMM output under a config's BLOCK_M x BLOCK_N, as `grid` takes them."""
    return lambda meta: triton.cdiv(rows, meta["BLOCK_M"]) * triton.cdiv(cols, meta["BLOCK_N"])


def ensure_context(device: torch.device):
    """Make `device`'s primary CUDA context current on this thread where none is. Triton 3.6 builds the tensor maps
    of descriptor arguments before its launcher makes a context current, so a TMA kernel launched first thing on a
    thread that has made no CUDA call yet (autograd's backward thread) failed with 'Failed to create tensor map
    descriptor: invalid device context'. PyTorch's own device guard does not help there: it skips cudaSetDevice
    when the thread's device index already matches. One driver call on a thread's first TMA launch, then none (a
    context once current stays so: PyTorch only uses primary contexts); nothing on a CPU. Every TMA kernel's launch
    asks for it: through `grid`, or itself where it has a grid of its own (token_mix)."""
    if device.type != "cuda" or getattr(_thread, "has_context", False):
        return
    driver = _libcuda()
    context = ctypes.c_void_p()
    _check(driver.cuCtxGetCurrent(ctypes.byref(context)), "cuCtxGetCurrent")
    if context.value is None:
        handle = ctypes.c_int()
        index = device.index if device.index is not None else torch.cuda.current_device()
        _check(driver.cuDeviceGet(ctypes.byref(handle), index), "cuDeviceGet")
        _check(driver.cuDevicePrimaryCtxRetain(ctypes.byref(context), handle), "cuDevicePrimaryCtxRetain")
        _check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    _thread.has_context = True


_thread = threading.local()  # per thread: whether ensure_context found or made a current context


@functools.lru_cache(maxsize=None)
def _libcuda():
    return ctypes.CDLL("libcuda.so.1")


def _check(status: int, call: str):
    if status != 0:
        raise RuntimeError(f"CUDA driver call {call} failed with status {status}")


def row_major(x: torch.Tensor) -> bool:
    """Whether x (B, R, K) is the row-major matrix (B R, K) the TMA kernels load, strides alone: unit stride
    along K and rows that flatten to one stride; and, on a GPU, whether it is Hopper or newer. No data
    pointer is read, so torch.compile traces it (`tma_rows` adds the alignment check at run time)."""
    b, r, _ = x.shape
    if x.stride(2) != 1 or (b > 1 and r > 1 and x.stride(0) != r * x.stride(1)):
        return False
    return x.device.type != "cuda" or torch.cuda.get_device_properties(x.device).major >= 9


def tma_rows(x: torch.Tensor, *others: torch.Tensor) -> torch.Tensor | None:
    """x (B, R, K) as the (M, K) matrix the TMA kernels load, or None where they cannot: `row_major`, and
    every row stride and base address 16-byte aligned (the accelerator's rule), x's and the `others'`
    (2-D, unit stride on their last axis)."""
    if not row_major(x):
        return None
    b, r, k = x.shape
    rows = x.as_strided((b * r, k), (x.stride(1) if r > 1 else x.stride(0), 1))
    size = x.element_size()
    aligned = all(t.stride(0) * size % 16 == 0 and t.data_ptr() % 16 == 0 for t in (rows, *others))
    return rows if aligned else None
