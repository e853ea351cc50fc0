"""Small configs and batches shared by the tests, and the command line run as a user runs it."""

import os
import re
import resource
import subprocess
import sys
import tempfile
import zlib

import pytest
import torch
import trm_fast
from trm_fast.models import CastedSparseEmbedding


def tiny_config(**overrides):
    """A TRM/HRM config small enough for a CPU test: every field the official dict carries."""
    cfg = dict(batch_size=3, seq_len=7, puzzle_emb_ndim=16, num_puzzle_identifiers=4, vocab_size=11,
               H_cycles=2, L_cycles=2, H_layers=1, L_layers=2, hidden_size=16, expansion=2, num_heads=2,
               pos_encodings="rope", halt_max_steps=4, halt_exploration_prob=0.1, puzzle_emb_len=0,
               forward_dtype="float32", causal=False)
    cfg.update(overrides)
    return cfg


def make_batch(cfg, seed=0, batch_size=None):
    g = torch.Generator().manual_seed(seed)
    b = batch_size or cfg["batch_size"]
    return dict(
        inputs=torch.randint(0, cfg["vocab_size"], (b, cfg["seq_len"]), generator=g, dtype=torch.int32),
        labels=torch.randint(0, cfg["vocab_size"], (b, cfg["seq_len"]), generator=g, dtype=torch.int32),
        puzzle_identifiers=torch.randint(0, cfg["num_puzzle_identifiers"], (b,), generator=g, dtype=torch.int32),
    )


def official_loop(model, batch):
    """The drop-in model's evaluation loop, as the official evaluate() drives it: the outputs of each of the
    halt_max_steps steps."""
    outs = []
    with torch.no_grad():
        carry = model.initial_carry(batch)
        for _ in range(model.config.halt_max_steps):
            carry, out = model(carry=carry, batch=batch)
            outs.append(out)
    return outs


def halting_margins(model, outs) -> torch.Tensor:
    """(M, n): after each step, how far each puzzle is from the model's halting rule (> 0: it says halt)."""
    return torch.stack([o["q_halt_logits"] - (o["q_continue_logits"] if model.learns_q_continue else 0)
                        for o in outs])


def spread_halting(model, batch):
    """Give `model` a Q head that makes the puzzles of `batch` halt at different steps: about a third at
    step 1, about a fifth never."""
    n = batch["inputs"].shape[0]
    with torch.no_grad():
        model.inner.q_head.weight.normal_(0, 1)
        model.inner.q_head.bias.zero_()
        margin = halting_margins(model, official_loop(model, batch)).cpu()
        first, never = margin[0].sort().values, margin.max(0).values.sort().values
        model.inner.q_head.bias[0] = -float(first[2 * n // 3] + never[n // 5]) / 2  # shifts every margin


def embedding_with_grad(ids, grads, table):
    """A sparse embedding after a backward pass that gave its batch rows the gradient `grads`."""
    emb = CastedSparseEmbedding(table.shape[0], table.shape[1], len(ids), init_std=0, cast_to=torch.float32).train()
    emb.weights.copy_(table)
    out = emb(torch.tensor(ids, dtype=torch.int32))
    (out * grads).sum().backward()  # d out = grads
    return emb


def sign_sgd_rank_step(rank, world, port, ids, grads, table, out):
    """One rank of a 2-process SignSGD step (gloo); here so that spawned processes can import it."""
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    half = len(ids) // world
    emb = embedding_with_grad(ids[rank * half:(rank + 1) * half], grads[rank * half:(rank + 1) * half], table)
    trm_fast.SignSGD(emb.buffers(), lr=0.25, weight_decay=0.5).step()
    out[rank] = emb.weights.clone()
    dist.destroy_process_group()


def run_cli(*args, env=None, timeout=300, stdin=None, file_size_limit=None):
    """`python -m trm_fast.cli.main ARGS` in a fresh process (`stdin`: text fed to it); the CompletedProcess.
    `file_size_limit`: bytes the process may write to one file (RLIMIT_FSIZE; Python ignores SIGXFSZ, so a
    write past it fails with EFBIG, as on a full disk)."""
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("OMP_NUM_THREADS", "1")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    # cwd outside the repository: `python -m` puts the cwd first on sys.path, and the source tree lacks
    # the built extension and trm_fast.kernels
    return subprocess.run([sys.executable, "-m", "trm_fast.cli.main", *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=tempfile.gettempdir(), input=stdin,
                          preexec_fn=limit if file_size_limit else None)


def error_line(stderr: str, command: str) -> str:
    """The one line `trm-fast COMMAND: error: ...` of `stderr` (progress bars aside), checked to be the
    only line of the command's own and to come without a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in re.split(r"[\r\n]+", stderr) if line.startswith("trm-fast")]
    assert len(lines) == 1 and lines[0].startswith(f"trm-fast {command}: error: "), stderr
    return lines[0]


def case_seed(case) -> int:
    """A seed of the test case's own (its parameters' repr), the same in every process: hash() of a string
    changes with PYTHONHASHSEED, so a case's inputs, and whether a tight shape passed, changed from run to run."""
    return zlib.crc32(repr(case).encode()) % 2**31


def rounding_atol(torch_err, truth, dtype):
    """The tolerance of a kernel against the fp64 truth: a few times PyTorch's own error in `dtype`
    (`torch_err`), plus one unit in the last place of the largest output, since a kernel that rounds its fp32
    result once may land on the neighbour of what PyTorch's roundings give; with few outputs PyTorch's own
    error can be far under an ulp (a 16-output fp16 case of the gate/up kernel failed by one ulp)."""
    return 3 * torch_err + torch.finfo(dtype).eps * truth.abs().max().item() + 1e-4


def assert_close_at_worst(actual, expected, atol, rtol, what):
    """allclose, and on failure where the worst element is, what it is and what it should be."""
    err = (actual.double() - expected.double()).abs()
    worst = err.argmax()
    idx = tuple(int(i) for i in torch.unravel_index(worst, err.shape))
    assert torch.allclose(actual.double(), expected.double(), atol=atol, rtol=rtol), (
        f"{what}: max error {err.max().item():.3e} at {idx}: got {actual[idx].item()}, want {expected[idx].item()}")


def output_and_grads(fn, inputs, dy):
    """(fn(*inputs), then the gradient of each input) for the output's gradient dy, on fresh leaves."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = fn(*leaves)
    return (y, *torch.autograd.grad(y, leaves, dy))


def assert_within_torch_error(names, got, truth, torch_, what):
    """Each of an op's outputs (`got`, named by `names`) against the fp64 `truth`: the same shape, the dtype of
    PyTorch's own result in the op's dtype (`torch_`), and within three times that result's error plus 1e-4."""
    for name, g, t, p in zip(names, got, truth, torch_):
        assert g.shape == t.shape and g.dtype == p.dtype
        torch_err = (p.double() - t).abs().max().item()
        assert_close_at_worst(g, t, atol=3 * torch_err + 1e-4, rtol=0, what=f"{name} {what}")


def assert_kernel_and_op_match(out, op, truth, torch_err, what):
    """A kernel's output (written into a poisoned tensor) and its custom op's, each within three times PyTorch's
    own error in that dtype against the fp64 truth, plus 1e-4; the op's output contiguous, as `out` is shaped."""
    assert_close_at_worst(out, truth, atol=3 * torch_err + 1e-4, rtol=0, what=what)
    assert op.shape == out.shape and op.dtype == out.dtype and op.is_contiguous()
    assert_close_at_worst(op, truth, atol=3 * torch_err + 1e-4, rtol=0, what=f"op {what}")


# TRM with attention, TRM with MLP-t, HRM: the three model kinds, small enough for a CPU
TRAINING_VARIANTS = [(trm_fast.TRM, dict()), (trm_fast.TRM, dict(pos_encodings="none", mlp_t=True)),
                     (trm_fast.HRM, dict(H_layers=2))]
TRAINING_VARIANT_IDS = ["trm-attn", "trm-mlpt", "hrm"]


def training_grads(cls, overrides, recompute, device="cpu", compile=False, steps=2, backend=None,
                   nudge=False):
    """Gradients after `steps` ACT training steps from seed 0 (the first resets every row, a later one has
    halted rows too), and the bytes autograd kept for the last backward. `recompute`: arch recompute's value.
    `backend`: the model's ops (None: the config's default). `nudge`: every weight but the halting head's moved by
    about one fp32 ulp first, so that the difference from the same call without it is what fp32's rounding alone
    makes of these gradients (`rounding_sensitivity`)."""
    cfg = tiny_config(hidden_size=32, num_heads=4, seq_len=9, batch_size=6, L_cycles=3, recompute=recompute,
                      **overrides, **({"backend": backend} if backend else {}))
    torch.manual_seed(0)
    with torch.device(device):
        model = cls(cfg).train()
    if nudge:  # not the halting head: HRM's two Q logits start tied (zero weight, equal bias), a nudge unties them
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if ".q_head." not in name:
                    p.mul_(1 + 2**-23 * torch.randn(p.shape, generator=gen).to(p.device))
    head = trm_fast.ACTLossHead(model, "stablemax_cross_entropy")
    forward = trm_fast.engine.training_forward(head, device, compile)
    batch = {k: v.to(device) for k, v in make_batch(cfg).items()}
    carry, saved = head.initial_carry(batch), []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            carry, loss, *_ = forward(return_keys=[], carry=carry, batch=batch)
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    grads["puzzle_emb.local_weights"] = model.puzzle_emb.local_weights.grad.clone()
    return grads, sum(saved)


def rounding_sensitivity(cls, overrides, device="cpu"):
    """Per parameter, the largest change fp32's rounding alone makes in `training_grads`: the gradients with every
    weight moved by about one ulp against those without. A compiled step sums in other orders, which moves the
    gradients by as much; MLP-t's tiny config amplifies it 50 times more than the attention variant's (its norm runs
    over 9 positions: 1.0e-4 against 2.0e-6 on the CPU), so a fixed tolerance is either loose or wrong for one."""
    plain, _ = training_grads(cls, overrides, False, device=device)
    nudged, _ = training_grads(cls, overrides, False, device=device, nudge=True)
    return plain, {name: (nudged[name] - plain[name]).abs().max().item() for name in plain}


def _sm90_missing():
    """Why the CUTLASS kernels (csrc/sm90) cannot run here, or None."""
    if not torch.cuda.is_available():
        return "no GPU"
    if torch.cuda.get_device_capability() != (9, 0):
        return f"{torch.cuda.get_device_name()} is not a Hopper GPU"
    return trm_fast.backend.sm90_status()


def sm90_gpu(fn):
    """Marks a test of the CUTLASS kernels: `gpu`, and skipped with the reason where the GPU or the build lacks
    them."""
    why = _sm90_missing()
    reason = f"needs a Hopper GPU and trm_fast._C built with CUTLASS ({why})"
    fn = pytest.mark.skipif(why is not None, reason=reason)(fn)
    return pytest.mark.gpu(fn)


def sm90_configs(count_name):
    """Every shape config of a CUTLASS kernel, as the build reports them (trm_fast._C.<count_name>); [0] where
    the tests skip."""
    if _sm90_missing() is not None:
        return [0]
    from trm_fast import _C

    return list(range(getattr(_C, count_name)))
