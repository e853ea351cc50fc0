"""The backend switch: config key, then TRM_FAST_BACKEND, then auto; fused errors name the reason."""

import warnings

import pytest
import torch
import trm_fast
from helpers import tiny_config
from trm_fast import backend


def test_resolution_order(monkeypatch):
    monkeypatch.setenv("TRM_FAST_BACKEND", "reference")
    assert trm_fast.TRM(tiny_config()).config.backend == "reference"  # env over auto
    monkeypatch.setenv("TRM_FAST_BACKEND", "auto")
    assert trm_fast.TRM(tiny_config(backend="reference")).config.backend == "reference"  # config key over env
    monkeypatch.delenv("TRM_FAST_BACKEND")
    assert trm_fast.TRM(tiny_config()).config.backend == "auto"


def test_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv("TRM_FAST_BACKEND", "cuda")
    with pytest.raises(ValueError, match="environment variable TRM_FAST_BACKEND must be one of 'auto', 'reference', "
                                         "'fused', got 'cuda'"):
        trm_fast.TRM(tiny_config())


def test_fused_without_the_extension_says_why(monkeypatch):
    monkeypatch.setitem(backend._status, "native", "the CUDA extension trm_fast._C was not built: nvcc was not found")
    with pytest.raises(backend.FusedUnavailableError, match="backend 'fused' \\(config field 'backend'\\) cannot run: "
                                                            "the CUDA extension trm_fast._C was not built: nvcc"):
        trm_fast.TRM(tiny_config(backend="fused"))
    assert trm_fast.TRM(tiny_config(backend="auto")).config.backend == "auto"  # auto still builds


def test_use_fused(monkeypatch):
    monkeypatch.setattr(backend, "AUTO_OPS", {"op", "op_once"})
    asked = []

    def why_not():
        asked.append(1)
        return "a reason"

    assert backend.use_fused("reference", "op", why_not) is False and not asked  # never asks
    assert backend.use_fused("auto", "op", lambda: None) is True
    with pytest.raises(backend.FusedUnavailableError, match="backend 'fused': op cannot run here: a reason"):
        backend.use_fused("fused", "op", why_not)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backend.use_fused("auto", "op_once", why_not) is False
        assert backend.use_fused("auto", "op_once", why_not) is False
    assert [str(w.message) for w in caught] == ["trm_fast: op_once falls back to the reference: a reason"]
    asked.clear()
    assert backend.use_fused("auto", "slower_op", why_not) is False and not asked  # outside AUTO_OPS: never asks
    assert backend.use_fused("fused", "slower_op", lambda: None) is True


def test_importing_trm_fast_never_needs_the_extension():
    status = backend.native_status()
    assert status is None or "trm_fast._C" in status


def test_auto_leaves_elementwise_ops_to_inductor_in_compiled_no_grad_forwards(monkeypatch):
    # inside torch.compile, with autograd not recording, 'auto' must not even ask whether a kernel can run
    from trm_fast import backend, ops

    asked = []
    monkeypatch.setattr(backend, "use_fused", lambda *args: asked.append(args[1]) or False)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    x, delta, gate_up = torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 8)
    with torch.no_grad():
        ops.add_rms_norm(x, delta, 1e-5, backend="auto")
        ops.swiglu(gate_up, backend="auto")
    assert asked == []
    ops.add_rms_norm(x.requires_grad_(), delta, 1e-5, backend="auto")  # recording: the kernels keep their backward
    ops.swiglu(gate_up.requires_grad_(), backend="auto")
    assert asked == ["add_rms_norm", "swiglu"]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    with torch.no_grad():
        ops.swiglu(gate_up, backend="auto")  # eager: the kernels run where they can
    assert asked[-1] == "swiglu"
