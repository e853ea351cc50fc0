"""Name every level of the recursion for the profiler and for Nsight tools, without touching the model.

Forward hooks on the model's modules open and close a range per level; each range is a torch.profiler
record_function (so kernels can be attributed to it) and, on a GPU, an NVTX range (for nsys and ncu):

    trm:forward | trm:backward | trm:optimizer          parts of a training step (the harness marks them)
      trm:act_step                                       one ACT supervision step (the harness marks it)
        trm:core | trm:q_target                          the recursion; the Q-continue target's extra pass
          trm:H_cycle 2/3                                one H cycle: L_cycles + 1 calls of the levels
            trm:L_cycle 4 no_grad | trm:y_update grad    TRM's z <- f(z, x + y) and y <- f(y, z)
            trm:L_level grad | trm:H_level grad          HRM's two modules
              trm:layer 1                                one post-norm block
                trm:attention | trm:mlp | trm:mlp_t      the block's token mixing and MLP
          trm:embedding | trm:heads                      input embedding; lm_head and q_head

A stage is that path without indices (`forward > no-grad cycles > z updates (L cycles) > attention`), so the
same work in every cycle and layer adds up in one line. The MLP's stage holds its down projection and the
residual add + RMSNorm after it (one op takes them); kernels of a layer outside its attention and MLP are the
attention's output projection with its add + RMSNorm (one op too), or MLP-t's add + RMSNorm.
"""

import contextlib

import torch

PREFIX = "trm:"


class Marker:
    """Opens and closes named ranges: record_function for torch.profiler, NVTX on a GPU."""

    def __init__(self, nvtx: bool):
        self.nvtx = nvtx
        self._open = []

    def push(self, name: str):
        rf = torch.autograd.profiler.record_function(PREFIX + name)
        rf.__enter__()
        self._open.append(rf)
        if self.nvtx:
            torch.cuda.nvtx.range_push(PREFIX + name)

    def pop(self):
        if self.nvtx:
            torch.cuda.nvtx.range_pop()
        self._open.pop().__exit__(None, None, None)

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.push(name)
        try:
            yield
        finally:
            self.pop()


def annotate(step, core, cfg, marker: Marker):
    """Install the hooks on a TRM or HRM core; `step` is the module whose call is one ACT step (the model,
    or the engine's step). Returns the handles (call .remove() on each to undo)."""
    per_cycle = cfg.L_cycles + 1  # calls of the levels per H cycle, the same for TRM and HRM
    state = {"core_calls": 0, "level_calls": 0}
    handles = []

    def ranged(module, name_of, after=None):
        def pre(mod, args):
            marker.push(name_of())

        def post(mod, args, out):
            marker.pop()
            if after:
                after()
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    def act_step(mod, args):
        state["core_calls"] = 0
    handles.append(step.register_forward_pre_hook(act_step))

    def core_name():  # a second pass in one ACT step computes the Q-continue target
        state["core_calls"] += 1
        state["level_calls"] = 0
        return "core" if state["core_calls"] == 1 else "q_target"
    ranged(core, core_name)

    def level_name(kind):
        def name():
            h, j = divmod(state["level_calls"], per_cycle)
            if j == 0:  # an H cycle spans per_cycle calls of the levels
                marker.push(f"H_cycle {h + 1}/{cfg.H_cycles}")
            if kind == "trm":
                kind_name = f"L_cycle {j + 1}" if j < cfg.L_cycles else "y_update"
            else:
                kind_name = kind
            return f"{kind_name} {'grad' if torch.is_grad_enabled() else 'no_grad'}"
        return name

    def level_done():
        state["level_calls"] += 1
        if state["level_calls"] % per_cycle == 0:
            marker.pop()

    levels = [(core.L_level, "trm")] if not hasattr(core, "H_level") else \
        [(core.L_level, "L_level"), (core.H_level, "H_level")]
    for module, kind in levels:
        ranged(module, level_name(kind), after=level_done)
        for k, block in enumerate(module.layers):
            ranged(block, lambda k=k: f"layer {k}")
            if block.use_mlp_t:
                ranged(block.mlp_t, lambda: "mlp_t")
            else:
                ranged(block.self_attn, lambda: "attention")
            ranged(block.mlp, lambda: "mlp")
    for name in ("embed_tokens", "puzzle_emb", "embed_pos"):
        if hasattr(core, name):
            ranged(getattr(core, name), lambda: "embedding")
    for name in ("lm_head", "q_head"):
        ranged(getattr(core, name), lambda: "heads")
    return handles


def stage(path):
    """The stage of a kernel from the names of the ranges around it, outermost first (no prefix):
    indices dropped, so every cycle and layer doing the same work adds up in one line."""
    parts = []
    for name in path:
        word, *rest = name.split(" ")
        if word in ("L_cycle", "y_update", "L_level", "H_level"):
            parts.append("grad cycle" if rest[-1] == "grad" else "no-grad cycles")
            parts.append({"L_cycle": "z updates (L cycles)", "y_update": "y update"}.get(word, word.replace("_", " ")))
        elif word == "q_target":
            parts.append("Q-continue target")
        elif word in ("forward", "backward", "optimizer", "attention", "mlp", "mlp_t", "embedding", "heads"):
            parts.append(word)
    leaf = path[-1].split(" ")[0] if path else ""
    if leaf == "layer":
        parts.append("projection + add + RMSNorm")
    elif leaf in ("L_cycle", "y_update", "L_level", "H_level"):
        parts.append("input injection")
    return tuple(parts)
