"""From torch.profiler events to one record per kernel: its recursion stage, time, and the FLOPs and bytes
of the op that launched it, then the table grouped by stage.

On a GPU a kernel is a device kernel, attributed to the innermost op that launched it; on a CPU it is an
op's own (self) CPU time. A backward kernel takes the stage of the forward op whose autograd node ran it
(matched by sequence number), prefixed `backward`.
FLOPs are counted for matmuls and attention as bench/NOTES.md counts them, and as one per output element
for everything else; bytes are estimated from the op's tensor shapes (inputs read once, the output
written once), so GB/s is a lower bound of the traffic where an op re-reads its inputs.
"""

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

from .stages import PREFIX, stage

_DTYPE_BYTES = {"float": 4, "c10::BFloat16": 2, "c10::Half": 2, "double": 8, "long int": 8, "int": 4,
                "short int": 2, "signed char": 1, "unsigned char": 1, "bool": 1, "c10::Float8_e4m3fn": 1}
# output elements per element of the largest input, where not one
_OUTPUT_RATIO = {"trm_fast::swiglu": 0.5, "aten::sum": 0.0, "aten::mean": 0.0}
# ops whose arguments include their outputs (inductor's and Triton's launches): bytes are the arguments
_ARGS_ARE_OUTPUTS = re.compile(r"^(triton_|triton__|_triton)")


@dataclass
class Kernel:
    name: str
    op: str
    stage: tuple
    us: float
    flops: float = 0.0
    bytes: float = 0.0
    counted_flops: bool = False  # a matmul or attention FLOP count, not the one-per-element estimate


@dataclass
class Group:
    us: float = 0.0
    calls: int = 0
    flops: float = 0.0
    bytes: float = 0.0
    counted_flops: bool = False
    category: str = ""
    kernels: dict = field(default_factory=lambda: defaultdict(Group))

    def add(self, k: Kernel):
        self.us += k.us
        self.calls += 1
        self.flops += k.flops
        self.bytes += k.bytes
        self.counted_flops |= k.counted_flops


def _numel(shape) -> int:
    return math.prod(shape) if shape else 1


def _tensors(evt, default_bytes: int):
    """(shape, bytes per element) of the tensors an op took; torch < 2.13 records no dtypes, and then
    every tensor is taken to be of the model's activation dtype."""
    shapes = evt.input_shapes or []
    dtypes = getattr(evt, "input_dtypes", None) or [None] * len(shapes)
    out = []
    for shape, dtype in zip(shapes, dtypes):
        if not (isinstance(shape, (list, tuple)) and shape and all(isinstance(x, int) for x in shape)):
            continue
        size = default_bytes if dtype is None else _DTYPE_BYTES.get(dtype)
        if size:
            out.append((shape, size))
    return out


_MATMUL_OPERANDS = {"aten::mm": (0, 1), "aten::bmm": (0, 1), "aten::addmm": (1, 2), "aten::baddbmm": (1, 2)}
_BIAS = ("aten::addmm", "aten::baddbmm")


def op_cost(evt, default_bytes: int = 2, heads=None):
    """(FLOPs, bytes, counted) of one op call from its recorded input shapes."""
    name = evt.name
    # autograd nodes and range markers record their arguments too, but move nothing themselves
    if not (name.startswith(("aten::", "trm_fast::")) or _ARGS_ARE_OUTPUTS.match(name)):
        return 0.0, 0.0, False
    tensors = _tensors(evt, default_bytes)
    if not tensors:
        return 0.0, 0.0, False
    read = sum(_numel(shape) * size for shape, size in tensors)
    if _ARGS_ARE_OUTPUTS.match(name):
        return float(max(_numel(shape) for shape, _ in tensors)), float(read), False
    elt = tensors[0][1]
    operands = _MATMUL_OPERANDS.get(name)
    if operands is not None and len(tensors) > max(operands):
        # inductor calls these with out=: the last tensor is then the output, not an operand
        (a, sa), (b, sb) = tensors[operands[0]], tensors[operands[1]]
        m, k, n = _numel(a[:-1]), a[-1], b[-1]
        moved = _numel(a) * sa + _numel(b) * sb + m * n * elt + (_numel(tensors[0][0]) * elt if name in _BIAS else 0)
        return 2.0 * m * k * n, float(moved), True
    if name in ("trm_fast::linear_swiglu", "trm_fast::linear_rope", "trm_fast::linear_add_rms_norm") \
            and len(tensors) >= 2:
        # x (..., K) times the weight (N, K) as stored; SwiGLU writes N / 2 columns, RoPE and the add + norm
        # (which also reads the residual, counted in `read`) all N
        (x, _), (w, _) = tensors[0], tensors[1]
        m, k, n = _numel(x[:-1]), x[-1], w[0]
        out_elements = m * (n // 2 if name.endswith("swiglu") else n)
        return 2.0 * m * k * n, float(read + out_elements * elt), True
    if name == "trm_fast::rope_attention" and len(tensors[0][0]) == 4:
        # one qkv (B, S, 3H, D) in (and the RoPE tables, when given), (B, S, H * D) out
        b, s, three_h, d = tensors[0][0]
        out_elements = b * s * (three_h // 3) * d
        return 4.0 * out_elements * s, float(read + out_elements * elt), True
    if "attention" in name and len(tensors) >= 3:
        q, k = tensors[0][0], tensors[1][0]
        # (B, H, S, D) or (B, S, H, D) depending on the op: the head axis is the one of `heads`
        if heads is not None and len(q) == 4:
            keys = k[2] if q[1] == heads else k[1]
        else:
            keys = k[-2] if "scaled_dot_product" in name else k[1]
        flops = 4.0 * _numel(q) * keys * (2.5 if "backward" in name else 1.0)
        q_bytes = _numel(q) * elt
        return flops, float(read + (3 if "backward" in name else 1) * q_bytes), True
    largest = max(_numel(shape) for shape, _ in tensors)
    out = _OUTPUT_RATIO.get(name, 1.0) * largest
    return float(max(out, 1)), float(read + out * elt), False


def _ranges(evt):
    """Names of the trm: ranges around an event, outermost first."""
    names = []
    node = evt
    while node is not None:
        if node.name.startswith(PREFIX):
            names.append(node.name[len(PREFIX):])
        node = node.cpu_parent
    return names[::-1]


def _backward_seq(evt):
    node = evt
    while node is not None:
        if node.name.startswith("autograd::engine::evaluate_function") and node.sequence_nr >= 0:
            return node.fwd_thread, node.sequence_nr
        node = node.cpu_parent
    return None


# events the profiler also hangs a kernel on, besides the op that launched it (CUDA runtime and driver
# calls, CUPTI's own bookkeeping, and the stalls of a host that runs ahead of a full launch queue, as the
# engine's does): counting them would count the kernel twice
_NOT_AN_OP = re.compile(r"^(cuda[A-Z]|cu[A-Z]|Activity Buffer Request|Lazy Function Loading|Command Buffer Full)")


def collect(events, on_gpu: bool, default_bytes: int = 2, heads=None):
    """Kernel records from `prof.events()`; `default_bytes` per element where the profiler records no dtypes,
    `heads` (the model's num_heads) to tell attention's head axis from its sequence axis."""
    forward = {}  # (thread, sequence number) -> stage of the forward op that made the autograd node
    for evt in events:
        if evt.sequence_nr >= 0 and not evt.name.startswith("autograd::"):
            path = _ranges(evt)
            if path:
                forward.setdefault((evt.thread, evt.sequence_nr), path)
    records = []
    for evt in events:
        if on_gpu:
            launches = [] if _NOT_AN_OP.match(evt.name) else [(k.name, k.duration) for k in evt.kernels]
        elif evt.device_type.name == "CPU" and not evt.name.startswith(PREFIX) and evt.self_cpu_time_total > 0:
            launches = [(evt.name, evt.self_cpu_time_total)]
        else:
            launches = []
        if not launches:
            continue
        path = _ranges(evt)
        back = _backward_seq(evt)
        if back is not None:
            fwd = forward.get(back)
            st = ("backward",) + tuple(s for s in stage(fwd) if s != "forward") if fwd else ("backward", "other")
        else:
            st = stage(path) or ("outside the model",)
        flops, nbytes, counted = op_cost(evt, default_bytes, heads)
        total = sum(us for _, us in launches) or 1.0
        for name, us in launches:  # an op's work split over its kernels by time
            share = us / total
            records.append(Kernel(name, evt.name, st, us, flops * share, nbytes * share, counted))
    return records


def short_name(name: str, width: int = 58) -> str:
    """A kernel name a person can read: no `void `, no template arguments or parameter lists."""
    name = re.sub(r"^void ", "", name)
    depth, out = 0, []
    for ch in name:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    text = "".join(out).strip() or name
    return text if len(text) <= width else text[: width - 3] + "..."


CATEGORIES = [  # (category, pattern on kernel or op name), first match wins
    ("trm_fast kernels",
     re.compile(r"trm_fast::|add_rms_norm|swiglu_(fwd|bwd)|rope_attention_(fwd|tma)|rows_(fwd|bwd)"
                r"|strided_(fwd|bwd)|_linear_(swiglu|rope|add_rms_norm)")),
    ("attention", re.compile(r"flash|fmha|attention|cudnn", re.I)),
    ("GEMM", re.compile(r"gemm|cutlass|xmma|nvjet|cublas|sm90_|aten::(add|b)?mm$|aten::baddbmm$", re.I)),
    ("inductor (Triton)", re.compile(r"^triton")),
    ("optimizer", re.compile(r"_foreach|adam|multi_tensor", re.I)),
]


def category(k: Kernel) -> str:
    for cat, pattern in CATEGORIES:
        if pattern.search(k.name) or pattern.search(k.op):
            return cat
    return "other (elementwise, copies, reductions)"


def group(records, depth: int = 4):
    """{stage (cut to `depth` levels): Group with .kernels {short kernel name: Group}}."""
    stages = defaultdict(Group)
    for k in records:
        g = stages[k.stage[:depth]]
        g.add(k)
        g.kernels[short_name(k.name)].add(k)
    return stages


def _rates(g: Group):
    seconds = g.us * 1e-6
    tflops = g.flops / seconds / 1e12 if g.counted_flops and seconds > 0 else None
    gbs = g.bytes / seconds / 1e9 if g.bytes and seconds > 0 else None
    return tflops, gbs


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _row(label: str, width: int, g: Group, steps: int, total: float, rates: bool = True) -> str:
    """One table line: time per unit, share of all kernel time, calls per unit, then TFLOP/s and GB/s."""
    text = f"{label:<{width}} {g.us / steps / 1e3:>9.3f} {100 * g.us / total:>5.1f}% {g.calls // steps:>6}"
    if not rates:
        return text
    tflops, gbs = _rates(g)
    return f"{text} {_fmt(tflops):>8} {_fmt(gbs):>7}"


def _header(label: str, width: int, unit: str) -> str:
    return f"{label:<{width}} {'ms/' + unit:>9} {'share':>6} {'calls':>6} {'TFLOP/s':>8} {'GB/s':>7}"


def format_table(records, steps: int, depth: int = 4, top: int = 5, unit: str = "step") -> str:
    """Per stage (largest first): its time per `unit`, share, calls; then its `top` kernels."""
    total = sum(k.us for k in records) or 1.0
    header = _header("stage / kernel", 64, unit)
    lines = [header, "-" * len(header)]
    for st, g in sorted(group(records, depth).items(), key=lambda kv: -kv[1].us):
        lines.append(_row(" > ".join(st), 64, g, steps, total))
        kernels = sorted(g.kernels.items(), key=lambda kv: -kv[1].us)
        for name, kg in kernels[:top]:
            lines.append("    " + _row(name, 60, kg, steps, total))
        if len(kernels) > top:
            rest = Group(us=sum(kg.us for _, kg in kernels[top:]), calls=sum(kg.calls for _, kg in kernels[top:]))
            lines.append("    " + _row(f"... {len(kernels) - top} more kernels", 60, rest, steps, total, rates=False))
    return "\n".join(lines)


def format_categories(records, steps: int, unit: str = "step") -> str:
    """Time per kind of kernel: where the remaining cost is."""
    total = sum(k.us for k in records) or 1.0
    cats = defaultdict(Group)
    for k in records:
        cats[category(k)].add(k)
    lines = [_header("kind of kernel", 44, unit)]
    lines += [_row(cat, 44, g, steps, total) for cat, g in sorted(cats.items(), key=lambda kv: -kv[1].us)]
    return "\n".join(lines)


def by_kernel(records):
    """{short kernel name: Group} over all stages (the roofline's points)."""
    out = defaultdict(Group)
    for k in records:
        g = out[short_name(k.name)]
        g.add(k)
        g.category = category(k)
    return out


def aggregate(records, steps: int):
    """Per (stage, kernel): what kernels.json stores, per unit of work."""
    out = defaultdict(Group)
    for k in records:
        g = out[(" > ".join(k.stage), k.name, k.op)]
        g.add(k)
        g.category = category(k)
    return [dict(stage=st, kernel=name, op=op, category=g.category, us=g.us / steps, calls=g.calls / steps,
                 flops=g.flops / steps, bytes=g.bytes / steps) for (st, name, op), g in
            sorted(out.items(), key=lambda kv: -kv[1].us)]
