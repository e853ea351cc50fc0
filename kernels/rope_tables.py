"""RoPE's cos and sin tables as the fused kernels read them.

Every rotate-half RoPE table has equal halves: angles = cat(f, f) (trm_fast's RotaryEmbedding and the
official code's alike), so cos[:, :D/2] == cos[:, D/2:]. A kernel that knows it reads one half and holds two
fp32 table tiles instead of four; on sm_90a that is what takes the QKV + RoPE kernel's tiles out of spilling
(bench/NOTES.md). Tables of any other kind still run, on the four-tile path.
"""

import weakref

import torch

# (address, shape and version of cos and sin) -> (weak references to the tensors that own their memory,
# whether both have equal halves)
_HALVES_SEEN: dict = {}


def _owner(t: torch.Tensor) -> torch.Tensor:
    """The tensor whose memory t views (itself if none): a module's table buffer, where a compiled graph hands
    the op a fresh view of it on every call."""
    return t if t._base is None else t._base


def _version(t: torch.Tensor) -> int:
    """The tensor's in-place write counter (inference tensors keep none: they count as never written)."""
    return -1 if t.is_inference() else t._version


def equal_halves(cos: torch.Tensor, sin: torch.Tensor) -> bool:
    """Whether both (S, D) tables have equal halves. The answer is kept per table while it lives and is not
    written to; during a CUDA graph capture a table never seen before is taken as unequal (the comparison
    would wait on the device), which is slower, never wrong."""
    key = (cos.data_ptr(), sin.data_ptr(), tuple(cos.shape), tuple(sin.shape), _version(cos), _version(sin))
    seen = _HALVES_SEEN.get(key)
    if seen is not None and seen[0]() is _owner(cos) and seen[1]() is _owner(sin):
        return seen[2]
    if cos.is_cuda and torch.cuda.is_current_stream_capturing():
        return False
    half = cos.shape[-1] // 2
    equal = bool(torch.equal(cos[:, :half], cos[:, half:]) and torch.equal(sin[:, :half], sin[:, half:]))
    if len(_HALVES_SEEN) > 64:  # tables are few and long-lived; anything else is test churn
        _HALVES_SEEN.clear()
    _HALVES_SEEN[key] = (weakref.ref(_owner(cos)), weakref.ref(_owner(sin)), equal)
    return equal
