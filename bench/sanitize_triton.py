"""Run every Triton kernel of trm_fast once per tile shape at a small odd size, for compute-sanitizer:

    compute-sanitizer --tool memcheck  python bench/sanitize_triton.py
    compute-sanitizer --tool racecheck python bench/sanitize_triton.py [KERNEL ...]

KERNEL (linear_swiglu, linear_add_rms_norm, linear_rope, attention, attention_backward, down_swiglu_backward,
swiglu, rope, token_mix, small_layer) picks some; default all.

The autotuned kernels get each of a few representative configs in turn (their tile list cut to that one
config, so the autotuner launches it once and times nothing: under the tools a timing loop would take
minutes), among them the two-programs-per-SM tile of the persistent GEMMs. Shapes are small and not
multiples of any tile (M = 3 x 37 rows, S 37 and 130), so every masked and clipped edge runs. PyTorch's
caching allocator is off, so that memcheck sees each tensor's own bounds. The references run on the CPU in
fp32, so that the only kernels the tools see are trm_fast's and PyTorch's elementwise ones (racecheck reports
hazards inside cuBLAS's and cuDNN's warp-specialised kernels, which are not ours to judge). Exits 1 if a
result is off from the reference (bf16 rounding apart).
"""

import os
import sys

os.environ.setdefault("PYTORCH_NO_CUDA_MEMORY_CACHING", "1")  # before torch allocates anything

import torch  # noqa: E402
import triton  # noqa: E402


def _pinned(kernel, pick, limit=3):
    """Launch `kernel` (an autotuner) with each of the first `limit` configs that `pick` accepts, one at a time."""
    every = list(kernel.configs)
    try:
        for config in [c for c in every if pick(c)][:limit]:
            kernel.configs = [config]
            kernel.cache.clear()
            yield config
    finally:
        kernel.configs = every
        kernel.cache.clear()


def _on_cpu(fn, *args):
    """fn's result on the CPU in fp32, for GPU tensor arguments (other arguments as they are)."""
    return fn(*(a.detach().cpu().float() if isinstance(a, torch.Tensor) else a for a in args))


def _close(name, got, want) -> bool:
    got = got.cpu().float()
    ok = torch.allclose(got, want.float(), atol=3e-2, rtol=3e-2)
    print(f"{name}: {'ok' if ok else 'WRONG, max error %.3g' % (got - want.float()).abs().max().item()}",
          flush=True)
    return ok


SECTIONS = ("linear_swiglu", "linear_add_rms_norm", "linear_rope", "attention", "attention_backward",
            "down_swiglu_backward", "swiglu", "rope", "token_mix", "small_layer")


def main(sections) -> int:
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"bench/sanitize_triton.py: unknown kernel {sorted(unknown)}; choose from {SECTIONS}")
    if not torch.cuda.is_available():
        raise SystemExit("bench/sanitize_triton.py needs a CUDA device; none is visible")
    sections = set(sections or SECTIONS)
    from trm_fast.kernels import attention, linear_rope, linear_swiglu, rope, swiglu
    from trm_fast.models.layers import RotaryEmbedding
    from trm_fast.ops.attention import rope_attention_reference
    from trm_fast.ops.linear_swiglu import linear_swiglu_reference
    from trm_fast.ops.rope import rope_reference
    from trm_fast.ops.swiglu import swiglu_reference

    torch.manual_seed(0)
    dt, dev = torch.bfloat16, "cuda"
    ok = True
    b, s, k, n = 3, 37, 512, 1536
    x = torch.randn(b, s, k, dtype=dt, device=dev)
    w = torch.randn(2 * n, k, dtype=dt, device=dev) * k**-0.5
    want = _on_cpu(linear_swiglu_reference, x, w) if "linear_swiglu" in sections else None
    # (BLOCK_M, BLOCK_N, BLOCK_K, stages, programs per SM): the two best tiles on an H200, and a small one
    tiles = {(128, 128, 64, 3, 1), (128, 64, 64, 3, 2), (64, 64, 32, 3, 1)}
    persistent = lambda c: (*(c.kwargs[key] for key in ("BLOCK_M", "BLOCK_N", "BLOCK_K")), c.num_stages,  # noqa: E731
                            c.kwargs["CTAS"]) in tiles
    for c in _pinned(linear_swiglu._linear_swiglu_tma_kernel, persistent) if "linear_swiglu" in sections else ():
        ok &= _close(f"linear_swiglu TMA {c}", linear_swiglu.linear_swiglu(x, w, tma=True), want)
    pointer = lambda c: c.kwargs["BLOCK_M"] in (128, 16)  # noqa: E731
    for c in _pinned(linear_swiglu._linear_swiglu_kernel, pointer, limit=2) if "linear_swiglu" in sections else ():
        ok &= _close(f"linear_swiglu pointer {c}", linear_swiglu.linear_swiglu(x, w, tma=False), want)

    from trm_fast.kernels.linear_add_rms_norm import _linear_add_rms_norm_kernel, linear_add_rms_norm
    from trm_fast.ops.linear_add_rms_norm import linear_add_rms_norm_reference

    # the down projection (K 1536), the o projection (K 512)
    for down in (x.new_empty(b, s, n).normal_(), x) if "linear_add_rms_norm" in sections else ():
        wd = torch.randn(k, down.shape[-1], dtype=dt, device=dev) * down.shape[-1] ** -0.5
        residual = torch.randn(b, s, k, dtype=dt, device=dev)
        want = _on_cpu(linear_add_rms_norm_reference, down, wd, residual, 1e-5)
        for c in _pinned(_linear_add_rms_norm_kernel, lambda c: True, limit=4):
            ok &= _close(f"linear_add_rms_norm K {down.shape[-1]} {c}", linear_add_rms_norm(down, wd, residual, 1e-5),
                         want)

    heads, d = 8, 64
    wq = torch.randn(3 * heads * d, k, dtype=dt, device=dev) * k**-0.5
    cos, sin = RotaryEmbedding(d, s, 10000.0)()
    q, kk, v = _on_cpu(torch.nn.functional.linear, x, wq).view(b, s, 3 * heads, d).split(heads, dim=2)
    want = torch.cat((*rope_reference(q, kk, cos, sin), v), dim=2)
    cos, sin = cos.to(dev), sin.to(dev)
    for c in _pinned(linear_rope._linear_rope_kernel, persistent) if "linear_rope" in sections else ():
        ok &= _close(f"linear_rope {c}", linear_rope.linear_rope(x, wq, cos, sin, heads), want)

    for seq in (37, 130) if "attention" in sections else ():  # one key block; several, the last one partial
        qkv = torch.randn(2, seq, 3 * heads, d, dtype=dt, device=dev)
        cs, sn = RotaryEmbedding(d, seq, 10000.0)()
        want = _on_cpu(rope_attention_reference, qkv, cs, sn, heads)
        cs, sn = cs.to(dev), sn.to(dev)
        pick = (lambda c: c.kwargs["BLOCK_N"] == 64 and c.kwargs["HEADS"] in (1, 4)) if seq == 37 else \
            (lambda c: c.kwargs["BLOCK_M"] == 64 and c.kwargs["BLOCK_N"] == 64 and c.num_stages == 2)
        for c in _pinned(attention._rope_attention_fwd_kernel, pick):
            ok &= _close(f"rope_attention S {seq} {c}", attention.rope_attention_fwd(qkv, cs, sn, heads), want)
        if seq <= 128:  # the persistent TMA kernel takes up to one block of 128 positions
            for c in _pinned(attention._rope_attention_tma_kernel, lambda c: c.num_warps == 8):
                ok &= _close(f"rope_attention TMA S {seq} {c}",
                             attention.rope_attention_fwd(qkv, cs, sn, heads, tma=True), want)

    if "down_swiglu_backward" in sections:  # every config, M = 3 x 37 rows, I = 1536 (a partial column tile at 136)
        from trm_fast.kernels import down_swiglu_backward as dsb

        for inner in (n, 136):
            dy = torch.randn(b * s, k, dtype=dt, device=dev)
            wd = torch.randn(k, inner, dtype=dt, device=dev) * k**-0.5
            gate_up = torch.randn(b * s, 2 * inner, dtype=dt, device=dev)
            g, u = gate_up.cpu().float().chunk(2, dim=-1)
            dh = (dy.cpu().float() @ wd.cpu().float()).to(dt).float()
            sig = torch.sigmoid(g)
            want = torch.cat([dh * u * sig * (1 + g * (1 - sig)), dh * g * sig, g * sig * u], dim=-1)
            for c in _pinned(dsb._down_swiglu_backward_kernel, lambda c: True, limit=len(dsb._tiles())):
                # every config whose one program fits this GPU's shared memory (no pruning asked: one config)
                if not dsb.tma_gemm.fits_shared_bytes(dsb.shared_bytes(c, 2)):
                    continue
                dgate_up, h = dsb.down_swiglu_backward(dy, wd, gate_up)
                ok &= _close(f"down_swiglu_backward I {inner} {c}", torch.cat([dgate_up, h], dim=-1), want)

    if "attention_backward" in sections:  # the backward kernel, S 37 and 128 (no padding), each config
        from trm_fast.kernels import attention_backward
        from trm_fast.ops.recomputed_attention import _attention_forward, _heads, _packed_grads

        for seq in (37, 128):
            qkv = torch.randn(2, seq, 3 * heads, d, dtype=dt, device=dev)
            dout = torch.randn(2, seq, heads * d, dtype=dt, device=dev)
            cs, sn = (t.to(dev) for t in RotaryEmbedding(d, seq, 10000.0)())
            out, lse = _attention_forward(*_heads(qkv, heads))
            out = out.transpose(1, 2).reshape(2, seq, -1)
            # the unfused pair in fp32 on the device (its packing pass is a Triton kernel too)
            want = _packed_grads(dout.float(), qkv.float(), out.float(), lse, cs, sn, heads, False).cpu()
            kernel = attention_backward._attention_backward_kernel
            for c in _pinned(kernel, lambda c: True, limit=len(kernel.configs)):
                got = attention_backward.attention_backward_packed(dout, qkv, out, lse, cs, sn, heads)
                ok &= _close(f"attention_backward S {seq} {c}", got, want)

    if "swiglu" in sections:
        gate_up = torch.randn(b * s, 2 * n, dtype=dt, device=dev)
        h_want = _on_cpu(swiglu_reference, gate_up)
        ok &= _close("swiglu forward", swiglu.swiglu_fwd(gate_up), h_want)
        dh = torch.randn(b * s, n, dtype=dt, device=dev)
        g = gate_up.detach().cpu().float().requires_grad_(True)
        (want,) = torch.autograd.grad(swiglu_reference(g), g, dh.cpu().float())
        ok &= _close("swiglu backward", swiglu.swiglu_bwd(dh, gate_up), want)
        h = torch.empty(b * s, n, dtype=dt, device=dev)  # the backward that writes h again (ops.swiglu_linear)
        ok &= _close("swiglu backward with h", swiglu.swiglu_bwd(dh, gate_up, h_out=h), want)
        ok &= _close("swiglu backward's h", h, h_want)
        # in place, as ops.recomputed_mlp calls it: dgate_up over gate_up, h over dh
        ok &= _close("swiglu backward in place", swiglu.swiglu_bwd(dh, gate_up, out=gate_up, h_out=dh), want)
        ok &= _close("swiglu backward in place, h", dh, h_want)

    if "rope" in sections:  # RoPE's in-place pass over q and k (ops.recomputed_attention), forward and back
        qkv = torch.randn(b, s, 3 * heads, d, dtype=dt, device=dev)
        cs, sn = RotaryEmbedding(d, s, 10000.0)()
        leaf = qkv.detach().cpu().float().requires_grad_(True)
        q, kk = rope_reference(leaf[:, :, :heads], leaf[:, :, heads:2 * heads], cs, sn)
        want = torch.cat((q, kk, leaf[:, :, 2 * heads:]), dim=2).detach()
        cotangents = (leaf[:, :, :heads].detach(), leaf[:, :, heads:2 * heads].detach())  # qkv's own q and k
        (back,) = torch.autograd.grad((q, kk), leaf, cotangents)
        back[:, :, 2 * heads:] = leaf[:, :, 2 * heads:].detach()
        cs, sn = cs.to(dev), sn.to(dev)
        ok &= _close("rope forward", rope.rope_qk_(qkv.clone(), cs, sn, heads), want)
        ok &= _close("rope backward", rope.rope_qk_(qkv.clone(), cs, sn, heads, backward=True), back)
        grads = [part.transpose(1, 2) for part in qkv.split(heads, dim=2)]  # the attention's (B, H, S, D) views
        ok &= _close("rope pack backward", rope.rope_pack_backward(*grads, cs, sn), back)

    if "token_mix" in sections:  # MLP-t's kernel at 37 positions (a partial block of positions)
        from trm_fast.kernels import token_mix
        from trm_fast.ops.token_mix import token_mix_reference

        h = torch.randn(b, s, k, dtype=dt, device=dev)
        w_gu, w_down = (torch.randn(*shape, dtype=dt, device=dev) * shape[1]**-0.5 for shape in ((1024, s), (s, 512)))
        want = _on_cpu(token_mix_reference, h, w_gu, w_down, 1e-5)
        for c in _pinned(token_mix._token_mix_kernel, lambda c: True, limit=6):
            ok &= _close(f"token_mix {c}", token_mix.token_mix(h, w_gu, w_down, 1e-5, tma=False)[0], want)
        for c in _pinned(token_mix._token_mix_tma_kernel, lambda c: True, limit=5):
            ok &= _close(f"token_mix TMA {c}", token_mix.token_mix(h, w_gu, w_down, 1e-5, tma=True)[0], want)
    if "small_layer" in sections:  # the whole layer, persistent (grid barriers) and as six launches, 3 x 37 rows;
        # phase E split along K (the default at these rows) and not; the GEMM phases' tiles by TMA
        from trm_fast.kernels import small_layer
        from trm_fast.ops.small_layer import small_layer_reference

        h = torch.randn(b, s, k, dtype=dt, device=dev)
        weights = [torch.randn(rows, cols, dtype=dt, device=dev) * cols**-0.5
                   for rows, cols in ((3 * k, k), (k, k), (2 * n, k), (k, n))]
        cs, sn = (t.to(dev) for t in RotaryEmbedding(k // 8, s, 10000.0)())
        want = _on_cpu(small_layer_reference, h, *weights, cs, sn, 8, 1e-5)
        for persistent, config in ((True, None), (False, None), (True, {"SPLIT": 1, "BR": 16}), (True, {"TMA": True})):
            got = small_layer.small_layer(h, *weights, cs, sn, 8, 1e-5, persistent, config)
            ok &= _close(f"small_layer persistent={persistent} {config or 'default'}", got, want)
    torch.cuda.synchronize()
    print("triton", triton.__version__, "all results match" if ok else "SOME RESULTS ARE WRONG", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
